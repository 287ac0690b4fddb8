"""The HTTPS API's routes, without a daemon: which control method a request runs, with which params,
and how results and errors come back as JSON."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from raftstore.api._rest import RestApi, jsonable, status_of
from raftstore.keyring import (
    Compacted,
    InvalidArgument,
    LockedError,
    NoQuorum,
    NotFound,
    PermissionDenied,
    RaftstoreError,
    Timeout,
    UpdateOutOfSequence,
)
from raftstore.net import HttpRequest, Stream

INFO = {"transport": "tcp", "tls": True, "peer": None}


class Recorder:
    def __init__(self, result: Any = None, error: RaftstoreError | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.result, self.error = result, error

    def __call__(self, method: str, params: dict[str, Any], info: dict[str, Any]) -> Any:
        self.calls.append((method, params, info))
        if self.error is not None:
            raise self.error
        return self.result


def _ask(verb: str, path: str, body: bytes = b"", query: dict[str, str] | None = None, json_body: bool = False,
         result: Any = None, error: RaftstoreError | None = None) -> tuple[int, Any, Recorder]:
    recorder = Recorder(result, error)
    headers = {"content-type": "application/json"} if json_body else {}
    response = RestApi(recorder)(HttpRequest(verb, path, query or {}, headers, body), INFO)
    return response.status, (json.loads(response.body) if response.body else None), recorder


def test_kv_routes_name_their_methods_and_params() -> None:
    _, _, r = _ask("PUT", "/v1/kv/a/b", b"raw bytes")
    assert r.calls == [("kv.put", {"key": "a/b", "value": b"raw bytes"}, INFO)]
    _, _, r = _ask("PUT", "/v1/kv/a", b"v", query={"version": "7"})
    assert r.calls[0][:2] == ("kv.cas", {"key": "a", "value": b"v", "version": 7})
    _, _, r = _ask("PUT", "/v1/kv/a", json.dumps({"value_base64": "AAE=", "version": 0}).encode(), json_body=True)
    assert r.calls[0][:2] == ("kv.cas", {"key": "a", "value": b"\x00\x01", "version": 0})
    _, _, r = _ask("DELETE", "/v1/kv/a", query={"version": "3"})
    assert r.calls[0][:2] == ("kv.rm", {"key": "a", "version": 3})
    _, _, r = _ask("GET", "/v1/kv", query={"prefix": "p/", "consistency": "local"})
    assert r.calls[0][:2] == ("kv.ls", {"prefix": "p/", "consistency": "local"})
    _, _, r = _ask("POST", "/v1/txn", json.dumps({"compares": [{"key": "a", "version": 0}], "operations": [
        {"op": "put", "key": "a", "value_base64": "eA=="}, {"op": "delete", "key": "b"}]}).encode(), json_body=True)
    assert r.calls[0][:2] == ("kv.txn", {"compares": [{"key": "a", "version": 0}], "operations": [
        {"op": "put", "key": "a", "value": b"x"}, {"op": "delete", "key": "b"}]})
    _, _, r = _ask("GET", "/v1/watch", query={"prefix": "w/", "since": "12"})
    assert r.calls[0][:2] == ("events", {"follow": True, "prefix": "w/", "since": 12})
    _, _, r = _ask("GET", "/v1/secrets/db")
    assert r.calls[0][:2] == ("secret.inspect", {"secret": "db"})
    _, _, r = _ask("POST", "/v1/unlock", b"SWMKEY-1-x\n")
    assert r.calls[0][:2] == ("unlock", {"key": "SWMKEY-1-x"})


def test_bad_requests_never_reach_a_method() -> None:
    for verb, path, body, query, is_json in (
        ("PUT", "/v1/kv/a", b"{not json", {}, True),
        ("PUT", "/v1/kv/a", b'{"value": "x", "value_base64": "eA=="}', {}, True),
        ("PUT", "/v1/kv/a", b'{"value_base64": "!!"}', {}, True),
        ("PUT", "/v1/kv/a", b"v", {"version": "-1"}, False),
        ("GET", "/v1/watch", b"", {"since": "soon"}, False),
    ):
        status, body_, r = _ask(verb, path, body, query, is_json)
        assert status == 400 and body_["error"] == "InvalidArgument" and r.calls == [], (path, body_)
    status, body_, r = _ask("GET", "/v2/kv/a")
    assert status == 404 and r.calls == []
    status, body_, r = _ask("PATCH", "/v1/kv/a")
    assert status == 405 and r.calls == []


def test_values_come_back_as_text_and_base64_and_errors_with_their_status() -> None:
    status, body, _ = _ask("GET", "/v1/kv/a", result={"key": "a", "value": b"hi", "version": 3})
    assert (status, body) == (200, {"key": "a", "value": "hi", "value_base64": "aGk=", "version": 3})
    assert jsonable({"value": b"\xff"}) == {"value": None, "value_base64": "/w=="}
    for error, status in ((InvalidArgument("x"), 400), (PermissionDenied("x"), 403), (NotFound("x"), 404),
                          (Compacted("x"), 410), (UpdateOutOfSequence("x"), 409), (LockedError(), 423),
                          (NoQuorum("x"), 503), (Timeout("x"), 504), (RaftstoreError("x"), 500)):
        assert status_of(error) == status
        got, body, _ = _ask("GET", "/v1/kv/a", error=error)
        assert got == status and body == {"error": error.code, "message": error.message}


def test_healthz_judges_info_and_watch_streams_json_lines() -> None:
    status, body, r = _ask("GET", "/healthz", result={"state": "locked", "locked": True, "role": "manager"})
    assert r.calls[0][0] == "info" and status == 503 and body["reason"] == "locked"
    stream = Stream(lambda stop: iter([{"name": "w/a", "value": b"v"}]))
    response = RestApi(Recorder(stream))(HttpRequest("GET", "/v1/watch", {}, {}, b""), INFO)
    assert response.status == 200 and response.stream is not None
    assert [json.loads(line) for line in response.stream(threading.Event())] == [
        {"name": "w/a", "value": "v", "value_base64": "dg=="}]


@pytest.mark.parametrize("path", ["/v1/kv/a", "/healthz", "/v1/info"])
def test_a_refusal_is_403_with_the_reason(path: str) -> None:
    status, body, _ = _ask("GET", path, error=PermissionDenied("permission denied: not you"))
    assert status == 403 and body["message"] == "permission denied: not you"
