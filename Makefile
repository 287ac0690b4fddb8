# The two set-up commands on a fresh machine are `make demo` and `make test`;
# each creates the virtual environment it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: all venv typecheck test test-slow demo bench bench-scale clean

all: test

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

# Four test processes on two cores: the integration tests spend most of their time waiting on daemons
# (1,125 tests: 579 s with three processes, 518 s with four, here).
JOBS ?= 4

# mypy over the installed package raftstore (its keyring and cli too): strict on raftstore.keyring, the
# defaults elsewhere (setup.cfg [mypy]). keyring/ and cli/ install as raftstore.keyring and raftstore.cli
# through an import hook mypy does not follow, so it reads a tree of links laid out as the installed
# package; its messages are mapped back to the files in this repository.
TYPECHECK := $(VENV)/typecheck
typecheck: $(STAMP)
	rm -rf $(TYPECHECK)/raftstore
	mkdir -p $(TYPECHECK)/raftstore
	ln -s $(CURDIR)/raftstore/* $(TYPECHECK)/raftstore/
	ln -s $(CURDIR)/keyring $(TYPECHECK)/raftstore/keyring
	ln -s $(CURDIR)/cli $(TYPECHECK)/raftstore/cli
	cd $(TYPECHECK) && $(abspath $(PY)) -m mypy --config-file $(CURDIR)/setup.cfg -p raftstore > mypy.out; \
		status=$$?; sed -e 's|^raftstore/keyring/|keyring/|' -e 's|^raftstore/cli/|cli/|' mypy.out; exit $$status

# Type checks, then a bounded sample of every test (fault scenarios run a few seconds each).
test: $(STAMP) typecheck
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile $(PYTEST_ARGS)

# Everything, longer: fault scenarios for 30 s each with 5 managers where they
# allow it, with the kill-all and five-manager partition scenarios that make test leaves out (the seed is
# printed; RAFTSTORE_FAULT_SEED=N replays one), a no-quorum write through a follower, more fuzzing,
# 500 raftsim seeds per scenario instead of 20, 20 demote/promote rounds instead of
# one, three promote-during-demote races instead of one, and the soak tests.
test-slow: $(STAMP) typecheck
	RAFTSTORE_SLOW_FAULTS=1 RAFTSTORE_FUZZ_EXAMPLES=200 \
		$(PY) -m pytest -q -n $(JOBS) --dist loadfile -m "" -o addopts="-p no:cacheprovider" $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/raftstore demo

# raftstore against etcd (native gRPC and JSON gateway) and pysyncobj (tuned and as shipped), in one run,
# with a small scale run (0.1 GB). etcd comes from PATH: `apt-get install -y etcd-server` (Debian/Ubuntu);
# without it the run measures everything else and says so. Its gRPC client is in the `bench` extra.
# Results: benchmarks/RESULTS.md.
bench: $(STAMP)
	$(PY) -m benchmarks

# Issue 15's scale benchmark: 3 managers filled with 10 KiB values to 0.5, 1 and 2 GB of live data (16 clients),
# then restart + unlock + first read and a 4th manager's join, at each size; etcd the same when on PATH (as above).
# Writes benchmarks/scale.json, scale.png and the Scale section of RESULTS.md. Roughly 20-30 minutes here and
# 15-25 GB of free disk under $$TMPDIR (estimated: three copies of the store, their logs and snapshots).
# SCALE_SIZES=0.05,0.1 for a short run.
SCALE_SIZES ?= 0.5,1,2
bench-scale: $(STAMP)
	$(PY) -m benchmarks.scale --sizes $(SCALE_SIZES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
