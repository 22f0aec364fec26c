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

.PHONY: install lock demo test lint browser bench clean

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
test: install lint browser
	$(BIN)/pytest -q -n 2 --dist worksteal

# tests/test_dashboard.py drives Debian's headless Chromium through its chromedriver: installed
# here when it can be (root, with apt-get; the package lists refreshed only if the first try
# fails), else those tests skip naming what is missing. This step never fails `make test`.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver for the dashboard's browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } || \
	    echo "could not install chromium and chromium-driver: the browser tests will skip"; \
	  else \
	    echo "no /usr/bin/chromium or /usr/bin/chromedriver, and no root with apt-get to install" \
	      "them: the dashboard's browser tests will skip"; \
	  fi; \
	fi

bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
