# `make demo` and `make test` do everything on a fresh machine: venv, install, run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1
export OMP_WAIT_POLICY := PASSIVE

LOCK := requirements.lock
# the folder holding the torch CPU wheel that constraints.txt pins (pip finds it there through
# its find-links setting; uv, which `make lock` uses, has to be told)
TORCH_WHEELS ?= /opt/wheels
LOCK_TOOLS := $(VENV)/lock-tools

.PHONY: install lock demo test lint bench clean

install: $(STAMP)

# Every version, transitive ones included, comes from the lock and is checked against its
# hashes, so a fresh clone gets the versions the tests passed with (and replays audit
# against the same software); loopctl itself goes in on top, without resolving anything.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m loopctl.strategies.fused_kernel
	touch $(STAMP)

# Regenerates the lock from pyproject.toml (every extra) and constraints.txt, keeping the
# versions already locked where they still fit; `make lock UPGRADE=--upgrade` moves them on.
lock:
	test -x $(LOCK_TOOLS)/bin/uv || ($(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install --quiet uv)
	$(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --all-extras -c constraints.txt \
	    --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    --find-links $(TORCH_WHEELS) --no-emit-package loopctl \
	    --custom-compile-command "make lock" --quiet $(UPGRADE) -o $(LOCK)
	# no CUDA runtime (nvidia-ml-py3, CHGNet's pure-Python NVML binding, is not one)
	! grep -Ei '^(nvidia-|triton)' $(LOCK) | grep -v '^nvidia-ml-py3=='

demo: install
	$(BIN)/loopctl demo

lint: install
	$(BIN)/ruff check loopctl tests bench docs
	$(BIN)/ruff format --check loopctl tests bench docs
	$(BIN)/mypy

# two workers: most tests wait on processes, sockets and files, and the two cores
# would otherwise sit half idle (the suite took 431 s on one, 209 s on two)
test: install lint
	$(BIN)/pytest -q -n 2 --dist worksteal

bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
