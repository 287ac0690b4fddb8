"""raftstore.Client's failover, retries and watches, against scripted control sockets.

Each fake daemon answers from a function and records every request, so the
tests see what the client sent where: the request id reused on a retry, no
request after an answer that a retry cannot change, the watch's resumption.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from raftstore import (
    Client,
    Compacted,
    Compare,
    Delete,
    Event,
    InvalidArgument,
    LockedError,
    NoQuorum,
    NotFound,
    NotLeader,
    PermissionDenied,
    Put,
    RaftstoreError,
    Timeout,
    Unavailable,
    UpdateOutOfSequence,
)
from raftstore._client_endpoints import Attempts
from raftstore.net._frames import error_reply, read_frame, write_frame


@dataclass
class Reply:
    """What a fake daemon does with one request."""

    result: Any = None
    error: RaftstoreError | None = None
    drop: bool = False  # close the connection without an answer (a manager killed mid-request)
    items: list[Any] | None = None  # a stream's items, then ``end`` (or ``error``, or ``drop``)


Script = Callable[[str, dict[str, Any]], Reply]


@dataclass
class FakeDaemon:
    path: Path
    script: Script
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        self._sock.listen(16)
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"unix://{self.path}"

    def methods(self) -> list[str]:
        return [m for m, _ in self.requests]

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    request = read_frame(conn)
                except (OSError, ConnectionError, RaftstoreError):
                    return
                method, params = request["method"], request.get("params") or {}
                self.requests.append((method, params))
                reply = self.script(method, params)
                if reply.items is not None:
                    for item in reply.items:
                        write_frame(conn, {"ok": True, "item": item})
                if reply.drop:
                    return
                if reply.error is not None:
                    write_frame(conn, error_reply(reply.error))
                elif reply.items is not None:
                    write_frame(conn, {"ok": True, "end": True})
                    return
                else:
                    write_frame(conn, {"ok": True, "result": reply.result})

    def close(self) -> None:
        self._stopping.set()
        self._sock.close()


def event(version: int, name: str, action: str = "create") -> dict[str, Any]:
    return {"version": version, "action": action, "table": "kv", "id": name, "name": name,
            "time": "2026-01-01T00:00:00Z", "actor": "node-a"}


def info(applied: int = 10) -> dict[str, Any]:
    return {"state": "manager", "node_id": "node-a", "cluster_id": "c1", "role": "manager", "locked": False,
            "autolock": False, "leader": "node-a", "is_leader": True, "managers": 1, "nodes": 1,
            "raft": {"term": 2, "commit_index": applied, "applied_index": applied, "log_entries": 3,
                     "members": [{"node_id": "node-a", "addr": "127.0.0.1:1"}], "connected": []}}


# ------------------------------------------------------------------ tests

def daemon(tmp_path: Path, name: str, script: Script) -> FakeDaemon:
    return FakeDaemon(tmp_path / f"{name}.sock", script)


def answers(result: Any) -> Script:
    return lambda method, params: Reply(result=result)


def test_a_write_lost_with_its_manager_is_retried_elsewhere_under_the_same_request_id(tmp_path: Path) -> None:
    killed = daemon(tmp_path, "killed", lambda m, p: Reply(drop=True))
    survivor = daemon(tmp_path, "survivor", answers({"key": "k", "version": 7}))
    with Client([killed.endpoint, survivor.endpoint]) as client:
        assert client.put("k", b"v") == 7
        assert client.endpoint == survivor.endpoint  # sticks to the manager that answered
        client.put("k2", b"v")
    [(_, first)], [(_, retried), (_, second)] = killed.requests, survivor.requests
    assert isinstance(first["request_id"], bytes) and len(first["request_id"]) == 16
    assert retried["request_id"] == first["request_id"]  # the store applies it once
    assert second["request_id"] != first["request_id"]  # a new write, a new id


def test_a_missing_socket_and_a_refusal_fail_over(tmp_path: Path) -> None:
    no_leader = daemon(tmp_path, "b", lambda m, p: Reply(error=NotLeader()))
    quorumless = daemon(tmp_path, "c", lambda m, p: Reply(error=NoQuorum()))
    good = daemon(tmp_path, "d", answers({"key": "k", "value": b"v", "version": 3, "created_version": 2}))
    with Client([tmp_path / "missing.sock", no_leader.endpoint, quorumless.endpoint, good.endpoint]) as client:
        record = client.get("k")
    assert (record.key, record.value, record.version, record.created_version) == ("k", b"v", 3, 2)
    assert no_leader.methods() == quorumless.methods() == good.methods() == ["kv.get"]


def test_an_answer_is_not_retried(tmp_path: Path) -> None:
    conflict = UpdateOutOfSequence("update out of sequence: expected version 3, the key is at version 5")
    first = daemon(tmp_path, "a", lambda m, p: Reply(error=conflict))
    second = daemon(tmp_path, "b", answers({"key": "k", "version": 9}))
    with Client([first.endpoint, second.endpoint]) as client, pytest.raises(UpdateOutOfSequence) as raised:
        client.cas("k", b"v", 3)
    assert str(raised.value) == str(conflict)
    assert first.methods() == ["kv.cas"] and second.requests == []


def test_every_manager_locked_is_raised_after_one_round_without_waiting(tmp_path: Path) -> None:
    locked = [daemon(tmp_path, n, lambda m, p: Reply(error=LockedError())) for n in "ab"]
    started = time.monotonic()
    with Client([d.endpoint for d in locked], retry_for=30) as client, pytest.raises(LockedError):
        client.get("k")
    assert time.monotonic() - started < 5
    assert [d.methods() for d in locked] == [["kv.get"], ["kv.get"]]


def test_no_quorum_is_retried_for_the_budget_then_raised(tmp_path: Path) -> None:
    calls = []

    def script(method: str, params: dict[str, Any]) -> Reply:
        calls.append(time.monotonic())
        return Reply(error=NoQuorum())

    only = daemon(tmp_path, "a", script)
    started = time.monotonic()
    with Client(only.endpoint, retry_for=0.6) as client, pytest.raises(NoQuorum):
        client.put("k", b"v")
    assert 0.5 <= time.monotonic() - started < 5 and len(calls) >= 3
    assert len({p["request_id"] for _, p in only.requests}) == 1


def test_no_retries_means_one_attempt_per_endpoint(tmp_path: Path) -> None:
    """What the CLI asks for: each command reports what one attempt did."""
    timeouts = daemon(tmp_path, "a", lambda m, p: Reply(error=Timeout()))
    with Client(timeouts.endpoint, retry_for=0) as client, pytest.raises(Timeout):
        client.put("k", b"v")
    assert timeouts.methods() == ["kv.put"]
    with pytest.raises(Unavailable) as error:
        Client(tmp_path / "missing.sock", retry_for=0).get("k")
    assert str(error.value).startswith("Cannot connect to the raftstore daemon at unix://")


def test_a_raw_call_is_not_repeated_after_a_lost_connection_unless_idempotent(tmp_path: Path) -> None:
    lost = daemon(tmp_path, "a", lambda m, p: Reply(drop=True))
    other = daemon(tmp_path, "b", answers({"id": "n1", "role": "manager"}))
    with Client([lost.endpoint, other.endpoint]) as client:
        with pytest.raises(Unavailable):
            client.call("node.promote", {"node": "n1"})
        assert other.requests == []  # its fate is unknown: promoting twice is not the caller's choice
        assert client.call("node.inspect", {"node": "n1"}, idempotent=True) == {"id": "n1", "role": "manager"}


def test_an_identity_or_argument_failure_is_raised_at_once(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        Client("http://example.com")
    with pytest.raises(InvalidArgument):
        Client([])
    good = daemon(tmp_path, "a", answers(None))
    # Plain TCP to a host that is not loopback is refused before anything is sent, and not failed over.
    with Client(["tcp://192.0.2.1:2376", good.endpoint]) as client, pytest.raises(InvalidArgument):
        client.info()
    assert good.requests == []


def test_typed_results(tmp_path: Path) -> None:
    results = {
        "info": info(42),
        "kv.ls": [{"key": "a", "value": b"1", "version": 4, "created_version": 4}],
        "kv.txn": {"succeeded": False, "version": None, "results": [], "conflict": "update out of sequence",
                   "versions": {"a": 4}},
        "secret.read": {"data": b"s3cret"},
        "config.ls": [{"id": "x", "name": "nginx.conf", "version": 5, "created_at": "t", "updated_at": "t",
                       "labels": {"app": "web"}, "grants": ["node-a"], "data": b"..."}],
    }
    fake = daemon(tmp_path, "a", lambda m, p: Reply(result=results[m]))
    with Client(fake.endpoint) as client:
        cluster = client.info()
        assert (cluster.state, cluster.leader, cluster.is_leader, cluster.applied_index) == ("manager", "node-a",
                                                                                              True, 42)
        assert cluster.members[0].node_id == "node-a" and cluster.raw["raft"]["log_entries"] == 3
        assert client.list("a")[0].value == b"1"
        result = client.txn([Compare("a", 3)], [Put("a", b"2"), Delete("b")])
        assert not result.succeeded and result.versions == {"a": 4}
        assert client.read_secret("db") == b"s3cret"
        assert client.configs()[0].grants == ("node-a",)
    txn_params = dict(fake.requests)["kv.txn"]
    assert txn_params["compares"] == [{"key": "a", "version": 3}]
    assert txn_params["operations"] == [{"op": "put", "key": "a", "value": b"2"}, {"op": "delete", "key": "b"}]
    with pytest.raises(InvalidArgument):
        Client(fake.endpoint).cas("a", b"v", -1)


# ------------------------------------------------------------------ watches


def test_a_watch_resumes_on_the_next_manager_from_the_last_event(tmp_path: Path) -> None:
    first = daemon(tmp_path, "a", lambda m, p: Reply(result=info(10)) if m == "info" else
                   Reply(items=[event(11, "app/1"), event(12, "other"), event(13, "app/1", "update")], drop=True))
    second = daemon(tmp_path, "b", lambda m, p: Reply(items=[event(14, "app/1", "delete")]))
    with Client([first.endpoint, second.endpoint]) as client, client.watch(key="app/1") as watch:
        seen = [(e.version, e.action) for e in watch]
        assert watch.last_version == 14
    assert seen == [(11, "create"), (13, "update"), (14, "delete")]  # the exact key only, none twice
    [(_, opened)] = [r for r in first.requests if r[0] == "events"]
    assert opened == {"prefix": "app/1", "table": "kv", "until": None, "follow": True, "since": 10}  # now, pinned
    assert second.requests == [("events", {**opened, "since": 13})]


def test_a_watch_from_a_compacted_version_raises_compacted(tmp_path: Path) -> None:
    message = ("version 2 has been compacted; the oldest version still available is 5000 "
               "(--since 4999 or later)")
    fake = daemon(tmp_path, "a", lambda m, p: Reply(error=NotFound(message)))
    with Client(fake.endpoint) as client, pytest.raises(Compacted) as gone:
        next(iter(client.watch("app/", since=2)))
    assert isinstance(gone.value, NotFound) and str(gone.value) == message
    assert (gone.value.since, gone.value.oldest_version) == (2, 5000)


def test_a_watch_that_cannot_resume_raises(tmp_path: Path) -> None:
    fake = daemon(tmp_path, "a", lambda m, p: Reply(items=[event(3, "k")], drop=True))
    with Client(fake.endpoint, retry_for=0) as client:
        watch = client.watch(since=2)
        assert next(watch) == Event(3, "create", "kv", "k", "k", "2026-01-01T00:00:00Z", "node-a")
        with pytest.raises(Unavailable):
            next(watch)
    with Client(fake.endpoint) as client, pytest.raises(PermissionDenied):
        fake.script = lambda m, p: Reply(error=PermissionDenied("permission denied: nope"))
        next(client.watch(since=2))


def test_attempts_pause_between_rounds_and_stop_at_the_deadline() -> None:
    now = [0.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    attempts = Attempts(2, 2.0, idempotent=True, sleep=sleep, clock=lambda: now[0])
    for _ in range(6):
        attempts.failed(Unavailable(), sent=True)
    assert pauses == [0.1, 0.2, 0.4]
    now[0] = 2.0
    with pytest.raises(Unavailable):
        attempts.failed(Unavailable(), sent=True)
    not_idempotent = Attempts(2, 60.0, idempotent=False, sleep=sleep, clock=lambda: now[0])
    not_idempotent.failed(Unavailable(), sent=False)  # never sent: safe
    not_idempotent.failed(NoQuorum(), sent=True)  # refused for certain: safe
    with pytest.raises(Timeout):
        not_idempotent.failed(Timeout(), sent=True)
