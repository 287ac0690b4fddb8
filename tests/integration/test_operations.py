"""What an operator watches: Prometheus metrics, structured logs, and logs that leak nothing."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftstore.tools._local_cluster import RAFTSTORE, Cluster, Node, free_port, wait_until
from raftstore.tools._demo import run_demo

pytestmark = pytest.mark.integration

SERIES = [
    "raftstore_raft_term", "raftstore_raft_commit_index", "raftstore_raft_applied_index", "raftstore_raft_is_leader",
    "raftstore_raft_leader_changes_total", "raftstore_raft_peers_connected",
    "raftstore_proposals_committed_total",
    "raftstore_proposal_commit_duration_seconds_count", "raftstore_disk_fsync_duration_seconds_count",
    "raftstore_seal_duration_seconds_count",
    "raftstore_snapshot_save_duration_seconds_count", "raftstore_snapshot_size_bytes",
    "raftstore_raft_tick_duration_seconds_count", "raftstore_raft_tick_longest_seconds",
    "raftstore_certificate_expiry_seconds", "raftstore_locked", "raftstore_autolock",
    "raftstore_ca_rotation_in_progress", "process_resident_memory_bytes", "process_open_fds",
]


def _metrics_text(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return response.read().decode()


def scrape(address: str) -> dict[str, float]:
    """Every sample, named ``name`` or ``name{label=value,...}``."""
    samples = {}
    for family in text_string_to_metric_families(_metrics_text(address)):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def _with_metrics(cluster: Cluster, name: str) -> tuple[Node, str]:
    address = f"127.0.0.1:{free_port()}"
    return cluster.add(name, extra=["--metrics-addr", address]), address


def test_metrics_of_a_three_manager_cluster_exist_and_move(cluster: Cluster) -> None:
    (m1, a1), (m2, a2), (m3, a3) = (_with_metrics(cluster, n) for n in ("m1", "m2", "m3"))
    addresses = {m1.name: a1, m2.name: a2, m3.name: a3}
    cluster.init(m1, "--autolock")
    cluster.join(m2, m1, "manager")
    cluster.join(m3, m1, "manager")
    assert m1.info()["metrics_addr"] == a1
    assert f"Metrics: http://{a1}/metrics" in m1.run("info").stdout
    wait_until(lambda: all(scrape(a)["raftstore_raft_peers_connected"] == 2 for a in addresses.values()),
               timeout=30, what="every manager connected to both others")
    before = {name: scrape(a) for name, a in addresses.items()}

    key, value, secret = "metrics/private-record-name", "value-nobody-may-scrape", "s3cret-payload-for-metrics"
    for i in range(10):
        (m1, m2, m3)[i % 3].run("kv", "put", f"{key}-{i}", value)
    m2.run("secret", "create", "private-secret-name", "-", input=secret)
    m1.run("kv", "cas", f"{key}-0", "new", "--version", "1", check=False)  # out of sequence: a failed proposal

    def settled() -> dict[str, dict[str, float]] | None:
        now = {name: scrape(a) for name, a in addresses.items()}
        leaders = sum(s["raftstore_raft_is_leader"] for s in now.values())
        indices = {s["raftstore_raft_applied_index"] for s in now.values()}
        return now if leaders == 1 and len(indices) == 1 else None

    after = wait_until(settled, timeout=30, what="one leader, every manager applied the same index")
    for name, samples in after.items():
        missing = [s for s in SERIES if s not in samples]
        assert not missing, f"{name} lacks {missing}"
        assert samples["raftstore_raft_commit_index"] >= before[name]["raftstore_raft_commit_index"] + 11, name
        assert samples["raftstore_disk_fsync_duration_seconds_count"] > before[name][
            "raftstore_disk_fsync_duration_seconds_count"], name
        assert samples["raftstore_proposals_committed_total"] > before[name]["raftstore_proposals_committed_total"]
        assert samples["raftstore_seal_duration_seconds_count"] > before[name]["raftstore_seal_duration_seconds_count"]
        assert samples["raftstore_locked"] == 0 and samples["raftstore_autolock"] == 1
        assert samples["raftstore_ca_rotation_in_progress"] == 0
        assert 0 < samples["raftstore_certificate_expiry_seconds"] <= 90 * 24 * 3600
        assert samples["raftstore_raft_term"] >= 1
    assert after["m1"]["raftstore_proposals_failed_total{reason=UpdateOutOfSequence}"] >= 1
    assert sum(after[n]["raftstore_raft_leader_changes_total"] for n in after) >= 3  # everyone saw one leader
    for address in addresses.values():
        text = _metrics_text(address)
        for private in (key, value, secret, "private-secret-name", "SWMTKN-", "SWMKEY-"):
            assert private not in text


def test_a_metrics_address_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(RAFTSTORE + ["daemon", "--data-dir", str(tmp_path / "n"), "--metrics-addr",
                                             f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: cannot serve metrics on 127.0.0.1:{port}")
    assert not (tmp_path / "n" / "raftstore.sock").exists()
    bad = subprocess.run(RAFTSTORE + ["daemon", "--data-dir", str(tmp_path / "n"), "--metrics-addr", "nowhere"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.strip() == "Error: invalid address 'nowhere': expected HOST:PORT"


def test_json_logs_are_one_event_a_line_with_node_and_term_on_raft_events(cluster: Cluster) -> None:
    json_logs = ["--log-format", "json"]
    m1, m2 = cluster.add("m1", extra=json_logs), cluster.add("m2", extra=json_logs)
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    m2.run("kv", "put", "k", "v")
    wait_until(lambda: "raft connection to" in m2.log() and "raft: leader is now" in m2.log(), what="raft events")
    for node in (m1, m2):
        node_id = node.info()["node_id"]
        events = [json.loads(line) for line in node.log().splitlines()]
        assert all(set(e) >= {"time", "level", "logger", "node_id", "term", "msg"} for e in events)
        raft_events = [e for e in events if e["msg"].startswith(("raft:", "raft connection", "manager "))]
        assert len(raft_events) >= 3
        for event in raft_events:
            assert event["node_id"] == node_id and isinstance(event["term"], int), event


def _tokens_and_keys(texts: list[str]) -> set[str]:
    """Every join token and unlock key in the texts, and the secret part of each on its own."""
    found: set[str] = set()
    for text in texts:
        for match in re.findall(r"SWM(?:TKN|KEY)-1-[A-Za-z0-9+/=_-]+", text):
            found.add(match)
            found.add(match.rsplit("-", 1)[-1] if match.startswith("SWMTKN") else match[len("SWMKEY-1-"):])
    return found


def test_the_logs_of_a_demo_run_hold_no_token_unlock_key_or_secret(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    written: list[str] = []
    run = Node.run

    def recording_run(self: Node, *args: str, input: Any = None, **kwargs: Any) -> Any:
        result = run(self, *args, input=input, **kwargs)
        seen.extend([result.stdout, result.stderr])
        if input is not None:
            written.append(input.decode() if isinstance(input, bytes) else input)
        if args[:2] == ("kv", "put"):
            written.append(args[3])
        return result

    monkeypatch.setattr(Node, "run", recording_run)
    out = io.StringIO()
    workdir = tmp_path / "demo"
    assert run_demo(keep=True, out=out, workdir=workdir), out.getvalue()

    private = _tokens_and_keys(seen + written)
    private |= {text.strip() for text in written if len(text.strip()) >= 6}
    assert any(p.startswith("SWMTKN-1-") for p in private) and any(p.startswith("SWMKEY-1-") for p in private)
    assert "hunter2" in private
    logs = sorted(workdir.glob("*.log"))
    assert len(logs) == 4
    for log in logs:
        text = log.read_text()
        assert "certificate renewed" in text or "worker" in text  # the logs are real, not empty
        leaked = sorted(p for p in private if p in text)
        assert not leaked, f"{log.name} contains {leaked}"
    keys = [p for p in private if p.startswith("SWMKEY-1-") and "AAAA" not in p]
    assert keys and not any(k in out.getvalue() for k in keys), "the demo prints unlock keys masked"


def _get(url: str) -> tuple[int, dict[str, Any] | str]:
    """Status and body (JSON when it is JSON) of one GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body, kind = response.status, response.read().decode(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        status, body, kind = error.code, error.read().decode(), error.headers["Content-Type"]
    return status, json.loads(body) if kind == "application/json" else body


def test_healthz_is_503_while_locked_and_200_once_unlocked_and_other_paths_are_404(cluster: Cluster) -> None:
    m1, address = _with_metrics(cluster, "m1")
    status, body = _get(f"http://{address}/healthz")
    assert (status, body["healthy"], body["reason"]) == (503, False, "inactive"), body
    cluster.init(m1, "--autolock")
    key = m1.run("unlock-key", "-q").stdout.strip()
    status, body = _get(f"http://{address}/healthz")
    assert status == 200 and body["healthy"] and body["role"] == "manager" and body["is_leader"], body
    assert body["leader"] == body["node_id"] and body["reason"] is None

    m1.stop()
    m1.start(["--metrics-addr", address])
    status, body = _get(f"http://{address}/healthz")
    assert (status, body["reason"]) == (503, "locked"), body
    assert "unlock key" in body["message"] and "SWMKEY" not in json.dumps(body)
    m1.run("unlock", input=key + "\n")
    status, body = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(_get(f"http://{address}/healthz")),
                              timeout=20, what="healthy once unlocked and leader again")
    assert body["healthy"] and body["node_id"] == m1.info()["node_id"]

    for path in ("/nonexistent", "/", "/metrics/extra", "/healthz/x"):
        assert _get(f"http://{address}{path}")[0] == 404, path
    assert "raftstore_raft_term" in scrape(address)


def test_healthz_of_a_manager_without_leader_and_of_a_worker(cluster: Cluster) -> None:
    m1 = cluster.add("m1")
    m2, a2 = _with_metrics(cluster, "m2")
    w1, aw = _with_metrics(cluster, "w1")
    cluster.init(m1)
    cluster.join(m2, m1, "manager")
    cluster.join(w1, m1, "worker")
    assert _get(f"http://{a2}/healthz")[0] == 200
    wait_until(lambda: _get(f"http://{aw}/healthz")[0] == 200, timeout=20, what="a worker in touch with a manager")
    assert _get(f"http://{aw}/healthz")[1]["role"] == "worker"
    m1.kill()  # two managers, one left: no quorum, no leader
    status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(_get(f"http://{a2}/healthz")),
                              timeout=30, what="m2 unhealthy without a leader")
    assert body["reason"] == "no_leader", body
