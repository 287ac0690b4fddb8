"""``raftstore events`` worth watching (issue 16): filters, time, actor, --until, json lines, --since edges."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from raftstore import NotFound
from raftstore.tools._local_cluster import RAFTSTORE, Cluster, wait_until
from raftstore.state._state_machine import StateMachine

pytestmark = pytest.mark.integration


def _events(node, *args: str) -> list[dict]:
    out = node.run("events", "--no-follow", "--format", "json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_events_filter_by_table_and_prefix_with_time_actor_and_until(cluster: Cluster) -> None:
    m1, m2 = cluster.add("m1"), cluster.add("m2")
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    ids = {m1.name: m1.info()["node_id"], m2.name: m2.info()["node_id"]}
    m1.run("kv", "put", "app/one", "1")
    m2.run("kv", "put", "app/two", "2")
    m1.run("kv", "put", "other/x", "3")
    m2.run("secret", "create", "app-secret", "-", input="s3cret")
    m1.run("kv", "rm", "app/one")

    kv_app = _events(m1, "--since", "0", "--table", "kv", "--prefix", "app/")
    assert [(e["action"], e["name"]) for e in kv_app] == [("create", "app/one"), ("create", "app/two"),
                                                          ("delete", "app/one")]
    assert [e["actor"] for e in kv_app] == [ids["m1"], ids["m2"], ids["m1"]]  # the proposing manager
    assert all(e["time"].startswith("20") and e["time"].endswith("Z") for e in kv_app), kv_app
    assert [e["table"] for e in _events(m2, "--since", "0", "--prefix", "app")] == ["kv", "kv", "secrets", "kv"]
    secrets = _events(m1, "--since", "0", "--table", "secrets")
    assert [(e["name"], e["actor"]) for e in secrets] == [("app-secret", ids["m2"])]
    assert "s3cret" not in m1.run("events", "--since", "0", "--no-follow", "--format", "json").stdout

    first, last = kv_app[0]["version"], kv_app[1]["version"]
    window = _events(m1, "--since", str(first - 1), "--until", str(last), "--table", "kv")
    assert [e["version"] for e in window] == [first, last]
    text = m1.run("events", "--since", str(first - 1), "--until", str(first), "--no-follow").stdout.split()
    assert text[1:] == [str(first), "create", "kv", "app/one", "by", ids["m1"]] and text[0].endswith("Z")
    # --until with follow ends once that version is applied, even when no event after it ever comes
    followed = m1.run("events", "--since", str(first - 1), "--until", str(last), "--format", "json", timeout=30)
    assert [json.loads(line)["version"] for line in followed.stdout.splitlines()] == [first, last]

    bad = m1.run("events", "--table", "nope", check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_since_in_the_future_waits_or_is_refused(cluster: Cluster) -> None:
    m1 = cluster.add("m1")
    cluster.init(m1)
    head = m1.info()["raft"]["applied_index"]
    ahead = head + 20
    refused = m1.run("events", "--since", str(ahead), "--no-follow", check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Error: version {ahead} is in the future: the newest version is "), refused.stderr

    watcher = subprocess.Popen(RAFTSTORE + ["-H", m1.host, "events", "--since", str(ahead), "--prefix", "w/",
                                            "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=os.environ.copy())
    try:
        assert watcher.poll() is None  # it waits rather than printing nothing and exiting 0
        written = 0
        while written < 60:
            m1.run("kv", "put", f"w/{written}", "v")
            written += 1
            if m1.info()["raft"]["applied_index"] > ahead:
                break
        line = watcher.stdout.readline()  # the first event after --since; bounded by the writes above
        event = json.loads(line)
        assert event["version"] > ahead and event["name"].startswith("w/")
    finally:
        watcher.kill()
        watcher.communicate(timeout=10)


def test_since_below_the_compacted_history_names_the_oldest_version(tmp_path: Path) -> None:
    sm = StateMachine(event_history=3)
    for index in range(2, 8):
        sm.apply_batch(index, 1, [(os.urandom(16), "2026-01-01T00:00:00Z", [{"op": "put", "key": f"k{index}",
                                                                             "value": b"v"}], "node-a")])
    assert [e.version for e in sm.events_since(4)] == [5, 6, 7]
    with pytest.raises(NotFound) as error:
        sm.events_since(2)
    assert str(error.value) == ("version 2 has been compacted; the oldest version still available is 5 "
                                "(--since 4 or later)")
    event = sm.events_since(6)[0]
    assert (event.actor, event.time) == ("node-a", "2026-01-01T00:00:00Z")
    sm.apply_batch(8, 1, [(os.urandom(16), "t", [{"op": "put", "key": "old", "value": b"v"}])])  # an old entry
    assert sm.events_since(7)[0].actor is None
