# The two set-up commands on a fresh machine are `make demo` and `make test`;
# each creates the virtual environment it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: all venv test test-slow demo bench clean

all: test

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

# A bounded sample of every test, slow fault and soak scenarios excluded.
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Everything, including the long fault, partition and soak scenarios.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m "" -o addopts="-p no:cacheprovider" $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/raftstore demo

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
