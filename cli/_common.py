"""What every command shares: connection options, the error boundary, output.

The CLI is a boundary (STYLE rule 9): commands parse, make one control-API
call through ``raftstore.Client`` (typed methods where it has them, ``call``
for the rest), and print. ``RaftstoreError`` becomes one ``Error: ...`` line and exit
status 1; click's usage errors keep exit status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Sequence, TypeVar

import click

from raftstore import Client, InvalidArgument, RaftstoreError, default_data_dir, parse_host, tls_context

__all__ = [
    "Connection",
    "connection_options",
    "format_option",
    "handle_errors",
    "client",
    "emit_json",
    "print_table",
    "fail",
    "read_optional_file",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Connection:
    host: str | None = None
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None


def _merge(ctx: click.Context, **values: Any) -> None:
    conn = ctx.ensure_object(Connection)
    for name, value in values.items():
        if value not in (None, False):
            setattr(conn, name, value)


def connection_options(fn: F) -> F:
    """-H/--host and the TLS flags, accepted on the group and on every command."""

    @click.option(
        "-H",
        "--host",
        metavar="URL",
        help="Daemon to talk to: unix:///path/raftstore.sock or tcp://HOST:PORT "
        "(default: $RAFTSTORE_HOST, else the socket in the default data directory).",
    )
    @click.option("--tlsverify", is_flag=True, default=None,
                  help="Use TLS (tcp:// only). The daemon's certificate must chain to --tlscacert, name the host "
                       "dialled and state serverAuth, or nothing is sent. Any TLS option turns TLS on; plain "
                       "tcp:// reaches only a loopback daemon started with --insecure.")
    @click.option("--tlscacert", metavar="FILE", help="CA certificate that the daemon's certificate chains to.")
    @click.option("--tlscert", metavar="FILE", help="Client certificate.")
    @click.option("--tlskey", metavar="FILE", help="Client private key.")
    @functools.wraps(fn)
    def wrapper(*args: Any, host: Any, tlsverify: Any, tlscacert: Any, tlscert: Any, tlskey: Any, **kwargs: Any) -> Any:
        _merge(
            click.get_current_context(),
            host=host,
            tlsverify=tlsverify,
            tlscacert=tlscacert,
            tlscert=tlscert,
            tlskey=tlskey,
        )
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def format_option(fn: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Output for people (table/text) or one JSON document for scripts.",
    )(fn)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RaftstoreError as error:
            fail(str(error))
        except KeyboardInterrupt:
            click.echo("", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)

    return wrapper  # type: ignore[return-value]


def fail(message: str) -> NoReturn:
    click.echo(f"Error: {message.splitlines()[0] if message else 'failed'}", err=True)
    sys.exit(1)


def read_optional_file(path: str | None, what: str) -> bytes | None:
    """The bytes of a file named by an option, None when the option is absent, one error line when unreadable."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        fail(f"cannot read {what} {path}: {error.strerror}")
    return None


def _tls_context(conn: Connection) -> ssl.SSLContext | None:
    """TLS for tcp:// when any TLS option is given; it always verifies the daemon (chain and host name).

    There is no unverified TLS: a daemon that cannot be identified could be
    anyone holding a certificate of the cluster, and the first request may
    carry the unlock key.
    """
    cert_path = os.environ.get("RAFTSTORE_CERT_PATH")
    verify = conn.tlsverify or os.environ.get("RAFTSTORE_TLS_VERIFY", "") not in ("", "0", "false")
    cacert = conn.tlscacert or (str(Path(cert_path) / "ca.pem") if cert_path else None)
    cert = conn.tlscert or (str(Path(cert_path) / "cert.pem") if cert_path else None)
    key = conn.tlskey or (str(Path(cert_path) / "key.pem") if cert_path else None)
    if not (verify or conn.tlscert or conn.tlskey or conn.tlscacert):
        return None
    if not cacert:
        raise InvalidArgument("TLS needs --tlscacert (or RAFTSTORE_CERT_PATH with ca.pem) to verify the daemon")
    if bool(cert) != bool(key):
        raise InvalidArgument("--tlscert and --tlskey go together")
    return tls_context(cacert, cert or None, key or None)


def resolve_host(conn: Connection) -> str:
    if conn.host:
        return conn.host
    env = os.environ.get("RAFTSTORE_HOST")
    if env:
        return env
    return f"unix://{default_data_dir() / 'raftstore.sock'}"


def client(timeout: float | None = 120.0) -> Client:
    """The daemon that -H (or the environment) names, through the public client, without retries.

    A command makes one attempt and reports what happened, as it always
    did; a program that wants failover and retries builds its own Client.
    """
    conn = click.get_current_context().ensure_object(Connection)
    host = resolve_host(conn)
    parse_host(host)  # a -H value is a URL: unix:// or tcp://, never a bare path
    return Client(host, tls=_tls_context(conn) if host.startswith("tcp://") else None, timeout=timeout,
                  retry_for=0)


def call(method: str, params: dict[str, Any] | None = None, timeout: float | None = 120.0) -> Any:
    with client(timeout) as c:
        return c.call(method, params or {})


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            import base64

            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    rows = [["" if c is None else str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    line = "   ".join("{:<%d}" % w for w in widths)
    click.echo(line.format(*headers).rstrip())
    for row in rows:
        click.echo(line.format(*row).rstrip())


__all__ += ["call", "resolve_host"]
