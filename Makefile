# The two commands of the README:
#   make run    set up a virtual environment and run the service on its embedded defaults
#   make test   set up, then run the whole suite: ruff, mypy --strict, pytest (integration too)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck pytest system-packages bench bench-quick cluster cluster-test clean

run: $(VENV)/.runtime
	$(BIN)/python -m service

test: system-packages $(VENV)/.test lint typecheck pytest

lint: $(VENV)/.test
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

# The benchmarks are typed against their peers (uvicorn, sse-starlette), so the bench extra too.
typecheck: $(VENV)/.bench
	$(BIN)/mypy --strict service tests bench

pytest: $(VENV)/.test
	$(BIN)/pytest

# Benchmarks are measurements, not tests: they run here, never in CI. `make bench` writes
# docs/benchmarks.md (the machine, the date, the command, then a table per benchmark);
# `make bench-quick` runs a small version of each, in under 3 minutes.
bench: system-packages $(VENV)/.bench
	$(BIN)/python -m bench.run_all

bench-quick: system-packages $(VENV)/.bench
	$(BIN)/python -m bench.run_all --quick

# Three nodes on one PostgreSQL (a throwaway cluster in /tmp) on ports 8081-8083, for a person to
# try: prints the URLs and tokens; Ctrl-C stops them all and removes the folders.
cluster: system-packages $(VENV)/.test
	$(BIN)/python -m tests.support.cluster

# The cluster test's full round (tests/cluster: each fault five times, 20-second runs, figures
# printed); `make test` runs its short round (each fault once).
cluster-test: system-packages $(VENV)/.test
	$(BIN)/pytest tests/cluster --cluster-round=full -s

system-packages:
	@sh tests/system-packages.sh

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "Python 3.11 or newer is needed as '$(PYTHON)' (set PYTHON=... to use another)"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	  else echo "missing Debian package: python3-venv (sudo apt-get install python3-venv)"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.runtime

$(VENV)/.bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	@touch $@ $(VENV)/.test $(VENV)/.runtime

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
