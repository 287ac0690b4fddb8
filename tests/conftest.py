"""Shared fixtures: a temporary cluster of real daemons, torn down whatever happens."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Each pytest-xdist worker takes daemon ports from a block of its own (see free_port), so that two
# workers never pick the same port between choosing it and the daemon binding it.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and _worker[2:].isdigit():
    _low = 20000 + 1500 * (int(_worker[2:]) % 8)
    os.environ.setdefault("RAFTSTORE_PORT_RANGE", f"{_low}-{_low + 1500}")

from raftstore.tools._local_cluster import Cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest):
    c = Cluster(tmp_path)
    yield c
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(c.logs())
    c.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
