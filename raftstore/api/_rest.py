"""The HTTPS/JSON API: versioned paths over the control methods, for curl and any HTTP client.

The remote control port serves HTTP beside the msgpack frames (``net._http``
tells them apart and bounds a request before it is decoded). This module says
what a path means. Every route names one control method of ``_registry``, and
a request runs that method through the daemon's own control handler: the same
``_authz.authorize`` against the method's ``allow=`` declaration, with the
same caller identity (the connection's verified certificate) as a msgpack
request on that listener. So the HTTP API can do nothing the msgpack API would
refuse, and a route that names an undeclared method is refused like the
method (``tests/security/test_authz_declarations.py`` checks every route).

Paths (all JSON; see docs/guide.md):

=======================================  ============================
``GET /v1/kv/KEY``                       ``kv.get``
``PUT /v1/kv/KEY`` (``?version=N``)      ``kv.put``, or ``kv.cas`` with a version
``DELETE /v1/kv/KEY`` (``?version=N``)   ``kv.rm``
``GET /v1/kv?prefix=P``                  ``kv.ls``
``POST /v1/txn``                         ``kv.txn``
``GET /v1/watch?prefix=&since=&table=``  ``events``, streamed as JSON lines
``GET /v1/secrets[/NAME]``               ``secret.ls`` / ``secret.inspect`` (metadata only)
``GET /v1/configs[/NAME]``               ``config.ls`` / ``config.inspect``
``GET /v1/nodes[/ID]``                   ``node.ls`` / ``node.inspect``
``GET /v1/info``                         ``info``
``POST /v1/unlock``                      ``unlock``
``GET /healthz``                         ``info``, judged by ``_http.health``
=======================================  ============================

Values are bytes: a reply carries ``value`` as UTF-8 text (when it is) and
always ``value_base64``; a request may give either. A ``PUT`` whose body is
not JSON takes the body itself as the value, so that ``curl -d`` works.
Errors are ``{"error": code, "message": ...}`` with the status of their class.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..keyring import (
    AlreadyExists,
    Compacted,
    InvalidArgument,
    InvalidCertificate,
    InvalidJoinToken,
    InvalidUnlockKey,
    LockedError,
    NodeRemoved,
    NoQuorum,
    NotFound,
    NotInitialized,
    NotLeader,
    NotManager,
    PermissionDenied,
    ProtocolError,
    RaftstoreError,
    RateLimited,
    Timeout,
    Unavailable,
    UpdateOutOfSequence,
)
from ..net import HttpRequest, HttpResponse, Stream
from ._http import health

__all__ = ["Route", "ROUTES", "ALTERNATES", "RestApi", "status_of", "jsonable"]

#: The daemon's control handler: (method, params, caller info) -> result, authorization included.
Call = Callable[[str, dict[str, Any], dict[str, Any]], Any]
#: (request, the path's captured name) -> the control method's params.
Params = Callable[[HttpRequest, str], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """One HTTP method and path, and the control method (and its params) it runs."""

    verb: str
    pattern: str  # a regular expression for the whole path, with at most one group (the name)
    method: str
    params: Params


def _none(request: HttpRequest, name: str) -> dict[str, Any]:
    return {}


def _consistency(request: HttpRequest) -> dict[str, Any]:
    consistency = request.query.get("consistency")
    return {"consistency": consistency} if consistency else {}


def _int(raw: Any, what: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise InvalidArgument(f"{what} must be a whole number")


def _json_body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _is_json(request: HttpRequest) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def _value_of(item: dict[str, Any], where: str) -> bytes:
    """A request's value: ``value`` (text) or ``value_base64``, exactly one."""
    if ("value" in item) == ("value_base64" in item):
        raise InvalidArgument(f"{where}: give value (text) or value_base64, exactly one")
    if "value" in item:
        if not isinstance(item["value"], str):
            raise InvalidArgument(f"{where}: value is text; use value_base64 for bytes")
        return item["value"].encode()
    try:
        return base64.b64decode(str(item["value_base64"]), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{where}: value_base64 is not valid base64") from None


def _request_id(request: HttpRequest) -> dict[str, Any]:
    """``X-Request-Id`` (32 hex digits): a retried write with the same id applies once."""
    raw = request.headers.get("x-request-id")
    if raw is None:
        return {}
    try:
        request_id = bytes.fromhex(raw)
    except ValueError:
        request_id = b""
    if len(request_id) != 16:
        raise InvalidArgument("X-Request-Id is 32 hexadecimal digits (16 bytes)")
    return {"request_id": request_id}


def _kv_put(request: HttpRequest, key: str) -> dict[str, Any]:
    if _is_json(request):
        body = _json_body(request)
        value = _value_of(body, "the body")
        version = body.get("version")
    else:
        value, version = request.body, None
    if "version" in request.query:
        version = request.query["version"]
    params = {"key": key, "value": value, **_request_id(request)}
    if version is not None:
        params["version"] = _int(version, "version")
    return params


def _kv_delete(request: HttpRequest, key: str) -> dict[str, Any]:
    params: dict[str, Any] = {"key": key, **_request_id(request)}
    if "version" in request.query:
        params["version"] = _int(request.query["version"], "version")
    return params


def _txn(request: HttpRequest, name: str) -> dict[str, Any]:
    body = _json_body(request)
    operations = body.get("operations")
    if isinstance(operations, list):
        operations = [
            {**{k: v for k, v in item.items() if k not in ("value", "value_base64")},
             "value": _value_of(item, f"operation {number}")}
            if isinstance(item, dict) and item.get("op") == "put" else item
            for number, item in enumerate(operations, 1)
        ]
    return {"compares": body.get("compares"), "operations": operations, **_request_id(request)}


def _watch(request: HttpRequest, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {"follow": True, "prefix": request.query.get("prefix", "")}
    for field in ("since", "until"):
        if request.query.get(field):
            params[field] = _int(request.query[field], field)
    if request.query.get("table"):
        params["table"] = request.query["table"]
    return params


def _unlock(request: HttpRequest, name: str) -> dict[str, Any]:
    if _is_json(request):
        return {"key": str(_json_body(request).get("key") or "")}
    return {"key": request.body.decode("utf-8", "replace").strip()}


_NAME = r"/([^/]+)"
#: Every route; each names a declared control method (tests/security/test_authz_declarations.py).
ROUTES: tuple[Route, ...] = (
    Route("GET", r"/v1/kv/(.+)", "kv.get", lambda r, key: {"key": key, **_consistency(r)}),
    Route("PUT", r"/v1/kv/(.+)", "kv.put", _kv_put),  # kv.cas when a version is given (see _method_for)
    Route("DELETE", r"/v1/kv/(.+)", "kv.rm", _kv_delete),
    Route("GET", r"/v1/kv/?", "kv.ls", lambda r, _: {"prefix": r.query.get("prefix", ""), **_consistency(r)}),
    Route("POST", r"/v1/txn", "kv.txn", _txn),
    Route("GET", r"/v1/watch", "events", _watch),
    Route("GET", r"/v1/secrets/?", "secret.ls", lambda r, _: _consistency(r)),
    Route("GET", r"/v1/secrets" + _NAME, "secret.inspect", lambda r, name: {"secret": name, **_consistency(r)}),
    Route("GET", r"/v1/configs/?", "config.ls", lambda r, _: _consistency(r)),
    Route("GET", r"/v1/configs" + _NAME, "config.inspect", lambda r, name: {"config": name, **_consistency(r)}),
    Route("GET", r"/v1/nodes/?", "node.ls", _none),
    Route("GET", r"/v1/nodes" + _NAME, "node.inspect", lambda r, name: {"node": name}),
    Route("GET", r"/v1/info", "info", _none),
    Route("POST", r"/v1/unlock", "unlock", _unlock),
    Route("GET", r"/healthz", "info", _none),
)
#: Methods a route may switch to by its params; declared like the route's own (the test checks both).
ALTERNATES = {"kv.put": "kv.cas"}

_COMPILED = [(route, re.compile(route.pattern)) for route in ROUTES]

class _MethodNotAllowed(Exception):
    """A known path with the wrong HTTP method (405); not of the error tree, which is the wire's."""


#: The HTTP status of each error class; the first match wins, so subclasses come first.
_STATUS: tuple[tuple[type[RaftstoreError], int], ...] = (
    (Compacted, 410),
    (NotFound, 404),
    (InvalidArgument, 400),
    (ProtocolError, 400),
    (InvalidUnlockKey, 400),
    (InvalidJoinToken, 400),
    (InvalidCertificate, 400),
    (PermissionDenied, 403),
    (NodeRemoved, 403),
    (UpdateOutOfSequence, 409),
    (AlreadyExists, 409),
    (LockedError, 423),
    (RateLimited, 429),
    (NoQuorum, 503),
    (Unavailable, 503),
    (NotLeader, 503),
    (NotManager, 503),
    (NotInitialized, 503),
    (Timeout, 504),
)


def status_of(error: RaftstoreError) -> int:
    """The HTTP status for an error of the project's tree (500 for one without a better fit)."""
    return next((status for cls, status in _STATUS if isinstance(error, cls)), 500)


def _method_for(route: Route, params: dict[str, Any]) -> str:
    if route.method == "kv.put" and "version" in params:
        return ALTERNATES["kv.put"]
    return route.method


class RestApi:
    """The ``HttpApp`` the control port serves: routes a request to its control method through ``call``."""

    def __init__(self, call: Call, log: Callable[[str], None] | None = None) -> None:
        self._call = call
        self._log = log

    def __call__(self, request: HttpRequest, info: dict[str, Any]) -> HttpResponse:
        try:
            route, name = self._route(request)
            params = route.params(request, name)
            method = _method_for(route, params)
            result = self._call(method, params, info)
        except _MethodNotAllowed as refusal:
            return _error(405, "InvalidArgument", str(refusal))
        except RaftstoreError as error:
            return _error(status_of(error), error.code, error.message)
        except Exception as error:  # a bug: answer, and say where to look
            if self._log is not None:
                self._log(f"HTTP {request.method} {request.path} failed: {type(error).__name__}: {error}")
            return _error(500, "RaftstoreError", "internal error; see the daemon's log")
        if route.pattern == "/healthz":
            status, body = health(result)
            return _json(status, body)
        if isinstance(result, Stream):
            return HttpResponse(200, content_type="application/x-ndjson", stream=lambda stop: _lines(result, stop))
        return _json(200, result)

    @staticmethod
    def _route(request: HttpRequest) -> tuple[Route, str]:
        allowed = []
        for route, pattern in _COMPILED:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.verb == request.method:
                return route, match.group(1) if match.groups() else ""
            allowed.append(route.verb)
        if allowed:
            raise _MethodNotAllowed(f"{request.method} is not allowed on {request.path}: use {', '.join(allowed)}")
        raise NotFound(f"no such path {request.path!r}: the API lives under /v1/ (see docs/guide.md)")


def _lines(stream: Stream, stop: threading.Event) -> Iterator[bytes]:
    """A watch as JSON lines; an error mid-stream (compaction, a lost leader) is the last line."""
    try:
        for item in stream.items(stop):
            yield (json.dumps(jsonable(item), sort_keys=True) + "\n").encode()
    except RaftstoreError as error:
        yield (json.dumps({"error": error.code, "message": error.message}) + "\n").encode()


def jsonable(value: Any) -> Any:
    """Plain data as JSON can carry it: each bytes field ``f`` becomes ``f`` (UTF-8 text, if it is) and ``f_base64``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, (bytes, bytearray)):
                try:
                    out[str(key)] = bytes(item).decode("utf-8")
                except UnicodeDecodeError:
                    out[str(key)] = None
                out[f"{key}_base64"] = base64.b64encode(item).decode("ascii")
            else:
                out[str(key)] = jsonable(item)
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return value


def _json(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, (json.dumps(jsonable(body), sort_keys=True, default=str) + "\n").encode())


def _error(status: int, code: str, message: str) -> HttpResponse:
    return _json(status, {"error": code, "message": message})
