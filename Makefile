# clawgate: `make test` runs everything this machine can run (as root: the real-sudo suite too).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
TESTS ?= tests
BENCH_ARGS ?=

.PHONY: test lint demo bench install clean

$(VENV)/.ready: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: $(VENV)/.ready lint
	$(PY) -m pytest -q $(PYTEST_ARGS) $(TESTS)

lint: $(VENV)/.ready
	$(VENV)/bin/shellcheck -x install.sh bin/clawgate launchd/load-job completion/clawgate.bash $(wildcard tests/*.sh tests/fakes/*.sh .ci/run)
	$(PY) -m compileall -q bin lib > /dev/null
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/mypy

demo:
	bash tests/demo.sh

bench: $(VENV)/.ready
	$(PY) bench/bench.py $(BENCH_ARGS)

install:
	bash install.sh

clean:
	rm -rf $(VENV) .pytest_cache
