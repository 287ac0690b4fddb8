"""``raftstore daemon``: run this node's daemon in the foreground."""

from __future__ import annotations

import ssl
from pathlib import Path

import click

import raftstore
from raftstore import LOG_FORMATS, LOG_LEVELS, RaftstoreError, configure_logging, default_data_dir, split_host_port

from ._common import fail

__all__ = ["daemon_cmd"]


def _remote_api(host: str | None, tlsverify: bool, cacert: str | None, cert: str | None, key: str | None):
    if host is None:
        return None
    if not host.startswith("tcp://"):
        fail(f"-H for the daemon takes tcp://HOST:PORT, not {host!r} (the unix socket is always served)")
    address = host[len("tcp://"):].rstrip("/")
    hostname, _ = split_host_port(address)
    if not tlsverify:
        if hostname not in ("127.0.0.1", "localhost", "::1"):
            fail(f"refusing to serve the control API on {address} without --tlsverify: "
                 "anyone who can connect would control this node (bind to 127.0.0.1 or use --tlsverify)")
        return address, None
    if not (cacert and cert and key):
        fail("--tlsverify needs --tlscacert, --tlscert and --tlskey")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cacert)
    except (OSError, ssl.SSLError) as error:
        fail(f"cannot load TLS files: {error}")
    context.verify_mode = ssl.CERT_REQUIRED
    return address, context


@click.command("daemon")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where this node keeps its state (default: $RAFTSTORE_DATA_DIR, /var/lib/raftstore as root, "
                   "else ~/.local/share/raftstore).")
@click.option("--listen-addr", metavar="HOST:PORT", help="Default cluster port for init and join.")
@click.option("-H", "--host", "hosts", metavar="tcp://HOST:PORT", multiple=False,
              help="Also serve the control API on TCP (needs --tlsverify unless bound to loopback).")
@click.option("--tlsverify", is_flag=True, help="Serve -H only to clients whose certificate chains to --tlscacert.")
@click.option("--tlscacert", metavar="FILE", help="CA that client certificates must chain to.")
@click.option("--tlscert", metavar="FILE", help="The daemon's certificate for -H.")
@click.option("--tlskey", metavar="FILE", help="The daemon's private key for -H.")
@click.option("--metrics-addr", metavar="HOST:PORT",
              help="Serve Prometheus metrics on http://HOST:PORT/metrics (Raft, proposals, latencies, keys; "
                   "nothing secret). Off by default.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="Least severe events to log.")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="One event per line on standard error: text, or one JSON object per line "
                   "(time, level, logger, node_id, term, msg).")
def daemon_cmd(data_dir: Path | None, listen_addr: str | None, hosts: str | None, tlsverify: bool,
               tlscacert: str | None, tlscert: str | None, tlskey: str | None, metrics_addr: str | None,
               log_level: str, log_format: str) -> None:
    """Run the raftstore daemon for one node (in the foreground; SIGTERM stops it).

    The daemon serves the control socket DATA_DIR/raftstore.sock (mode 0600)
    that every other command talks to. A manager with autolock starts locked.

    \b
    Example:
      raftstore daemon --data-dir /var/lib/raftstore --listen-addr 10.0.0.5:2377
    """
    configure_logging(log_level, log_format)
    try:
        remote = _remote_api(hosts, tlsverify, tlscacert, tlscert, tlskey)
        metrics = split_host_port(metrics_addr) if metrics_addr else None
        raftstore.Daemon(data_dir or default_data_dir(), listen_addr=listen_addr, remote_api=remote,
                         metrics_addr=metrics).run()
    except RaftstoreError as error:
        fail(str(error))
