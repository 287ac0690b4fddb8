"""Hostile input at a live daemon: garbage on its sockets, malformed requests. It answers and keeps serving."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftstore import ControlClient, RaftstoreError
from raftstore.net._frames import encode_frame, read_frame, write_frame
from raftstore.tools._local_cluster import Cluster, Node

pytestmark = pytest.mark.integration

LIVE = settings(max_examples=int(os.environ.get("RAFTSTORE_FUZZ_EXAMPLES", "12")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Methods whose malformed params must fail (none of these may change state with them).
METHODS = ["kv.put", "kv.get", "kv.cas", "kv.rm", "node.inspect", "secret.create", "secret.inspect", "secret.read",
           "secret.grant", "config.create", "config.inspect", "ca.issue_client", "unlock", "node.promote", "no.such"]
not_a_string = st.one_of(st.integers(-(2**63), 2**63 - 1), st.none(), st.booleans(), st.floats(allow_nan=False),
                         st.lists(st.integers(0, 99), max_size=3), st.dictionaries(st.integers(0, 9), st.integers(0, 9), max_size=2))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cluster = Cluster(tmp_path_factory.mktemp("fuzz"))
    node = cluster.add("m1")
    cluster.init(node)
    node.run("kv", "put", "keep", "me")
    yield node
    cluster.close()


def _view(node: Node) -> tuple[str, ...]:
    return tuple(node.run(*args).stdout for args in (["kv", "ls", "--format", "json"], ["secret", "ls", "-q"],
                                                     ["config", "ls", "-q"], ["node", "ls", "-q"]))


def _still_serving(node: Node) -> None:
    with ControlClient(node.host, timeout=10) as client:
        assert client.call("ping")["mode"] == "manager"


@given(data=st.binary(max_size=600))
@LIVE
def test_garbage_on_the_control_socket(live: Node, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(live.data_dir / "raftstore.sock"))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(4096)
        except OSError:
            pass
    _still_serving(live)


@given(method=st.sampled_from(METHODS), params=st.dictionaries(
    st.sampled_from(["key", "value", "version", "name", "data", "secret", "node", "config", "csr_pem", "key_pem"]),
    not_a_string, max_size=4))
@LIVE
def test_malformed_control_requests(live: Node, method: str, params: dict[str, Any]) -> None:
    before = getattr(test_malformed_control_requests, "view", None) or _view(live)
    test_malformed_control_requests.view = before  # type: ignore[attr-defined]
    with ControlClient(live.host, timeout=10) as client:
        with pytest.raises(RaftstoreError):
            client.call(method, params)
    assert _view(live) == before


@given(frame=st.one_of(st.binary(max_size=64).map(lambda b: encode_frame(b)),
                       st.dictionaries(st.text(max_size=6), not_a_string, max_size=3).map(encode_frame),
                       st.binary(max_size=200)))
@LIVE
def test_garbage_requests_on_the_cluster_port(live: Node, frame: bytes) -> None:
    roots = (live.data_dir / "certificates" / "swarm-root-ca.crt").read_bytes()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=roots.decode())
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as raw:
        with context.wrap_socket(raw) as sock:
            write_frame(sock, {"channel": "api"})
            read_frame(sock)
            try:
                sock.sendall(frame)
                sock.sendall(encode_frame({"method": "join", "params": {"token": 7, "csr_pem": "x", "addr": None}}))
                reply = read_frame(sock)
                assert isinstance(reply, dict) and reply.get("ok") is False
            except (OSError, ConnectionError):
                pass
    _still_serving(live)


@given(data=st.binary(min_size=1, max_size=300))
@LIVE
def test_garbage_instead_of_a_tls_handshake(live: Node, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(100)
        except OSError:
            pass
    _still_serving(live)


def test_join_with_hostile_params_changes_nothing(live: Node) -> None:
    roots = (live.data_dir / "certificates" / "swarm-root-ca.crt").read_bytes()
    from raftstore.net._cluster_client import ClusterClient

    nodes_before = live.run("node", "ls", "-q").stdout
    token = live.run("join-token", "-q", "worker").stdout.strip()
    cases = [{"token": token, "csr_pem": b"garbage", "addr": "127.0.0.1:1"},
             {"token": token, "csr_pem": None, "addr": "x"},
             {"token": "SWMTKN-1-" + "0" * 50 + "-" + "0" * 25, "csr_pem": b"", "addr": "a:1"},
             {"token": token * 100, "csr_pem": b"x" * 100_000, "addr": "a:1"}]
    for params in cases:
        with ClusterClient(f"127.0.0.1:{live.port}", trusted_roots_pem=roots) as client:
            with pytest.raises(RaftstoreError):
                client.call("join", params)
    assert live.run("node", "ls", "-q").stdout == nodes_before
    Path  # noqa: B018  (keeps the import used by type checkers)
