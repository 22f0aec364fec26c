# `make demo` and `make test` do everything on a fresh machine: venv, install, run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m loopctl.strategies.fused_kernel
	touch $(STAMP)

demo: install
	$(BIN)/loopctl demo

lint: install
	$(BIN)/ruff check loopctl drivers tests bench
	$(BIN)/ruff format --check loopctl drivers tests bench
	$(BIN)/mypy

# two workers: most tests wait on processes, sockets and files, and the two cores
# would otherwise sit half idle (the suite took 431 s on one, 209 s on two)
test: install lint
	$(BIN)/pytest -q -n 2 --dist worksteal

bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
