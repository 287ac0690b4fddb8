"""``raftstore daemon``: run this node's daemon in the foreground."""

from __future__ import annotations

import ssl
from pathlib import Path

import click

import raftstore
from raftstore import (
    DEFAULT_SECRETS_DIR,
    LOG_FORMATS,
    LOG_LEVELS,
    RaftstoreError,
    SecretsDir,
    configure_logging,
    default_data_dir,
    is_loopback_host,
    split_host_port,
)

from ._common import fail

__all__ = ["daemon_cmd"]


def _remote_api(host: str | None, tlsverify: bool, tls: bool, insecure: bool, cacert: str | None,
                cert: str | None, key: str | None) -> tuple[str, ssl.SSLContext | None] | None:
    """dockerd's modes for -H tcp://: --tlsverify (mutual TLS), --tls (server TLS; a client certificate
    is checked when given), or --insecure (plain text, loopback only). Certificate files turn TLS on;
    plain TCP is never the silent default, because on it every local user controls this node."""
    if host is None:
        if tlsverify or tls or insecure or cacert or cert or key:
            fail("--tlsverify, --tls, --insecure and the --tls* files go with -H tcp://HOST:PORT")
        return None
    if not host.startswith("tcp://"):
        fail(f"-H for the daemon takes tcp://HOST:PORT, not {host!r} (the unix socket is always served)")
    address = host[len("tcp://"):].rstrip("/")
    hostname, _ = split_host_port(address)
    wants_tls = tlsverify or tls or bool(cacert or cert or key)
    if insecure:
        if wants_tls:
            fail("--insecure serves plain text: it does not go with --tlsverify, --tls or the --tls* files")
        if not is_loopback_host(hostname):
            fail(f"refusing to serve the control API in plain text on {address}: "
                 "anyone who can connect would control this node (bind to 127.0.0.1, or use --tlsverify)")
        return address, None
    if not wants_tls:
        fail(f"-H tcp://{address} needs --tlsverify (mutual TLS), --tls (server TLS), or --insecure "
             "(plain text on loopback, open to every local user)")
    if not (cert and key):
        fail("TLS for -H needs --tlscert and --tlskey (see raftstore ca issue-server)")
    if tlsverify and not cacert:
        fail("--tlsverify needs --tlscacert, --tlscert and --tlskey")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if cacert:
            context.load_verify_locations(cacert)
    except (OSError, ssl.SSLError) as error:
        fail(f"cannot load TLS files: {error}")
    context.verify_mode = ssl.CERT_REQUIRED if tlsverify else ssl.CERT_OPTIONAL if cacert else ssl.CERT_NONE
    return address, context


def _secrets_dir(path: Path | None, not_tmpfs: bool, off: bool) -> SecretsDir | None:
    if off:
        if path is not None or not_tmpfs:
            fail("--no-secrets-dir does not go with --secrets-dir or --secrets-dir-not-tmpfs")
        return None
    if not_tmpfs and path is None:
        fail("--secrets-dir-not-tmpfs needs an explicit --secrets-dir")
    return SecretsDir(path or DEFAULT_SECRETS_DIR, allow_disk=not_tmpfs)


@click.command("daemon")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where this node keeps its state (default: $RAFTSTORE_DATA_DIR, /var/lib/raftstore as root, "
                   "else ~/.local/share/raftstore).")
@click.option("--listen-addr", metavar="HOST:PORT", help="Default cluster port for init and join.")
@click.option("-H", "--host", "hosts", metavar="tcp://HOST:PORT", multiple=False,
              help="Also serve the control API on TCP, with --tlsverify, --tls or (loopback only) --insecure.")
@click.option("--tlsverify", is_flag=True,
              help="Mutual TLS on -H: serve only clients whose certificate chains to --tlscacert.")
@click.option("--tls", is_flag=True,
              help="Server TLS on -H: a client certificate is optional (checked against --tlscacert if given); "
                   "implied by --tlscert/--tlskey.")
@click.option("--insecure", is_flag=True,
              help="Plain TCP on -H, loopback only: every local user can then control this node.")
@click.option("--tlscacert", metavar="FILE", help="CA that client certificates must chain to.")
@click.option("--tlscert", metavar="FILE", help="The daemon's certificate for -H (raftstore ca issue-server).")
@click.option("--tlskey", metavar="FILE", help="The daemon's private key for -H.")
@click.option("--metrics-addr", metavar="HOST:PORT",
              help="Serve Prometheus metrics on http://HOST:PORT/metrics (Raft, proposals, latencies, keys; "
                   "nothing secret) and a health probe on /healthz (200, or 503 with the reason). Off by default.")
@click.option("--secrets-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Keep the secrets granted to this node here, one file each (mode 0400), and its configs under "
                   f"configs/ (mode 0444). Must be on tmpfs, owned by the daemon's user and its own directory. "
                   f"Default {DEFAULT_SECRETS_DIR}: used if it can be, else delivery is off (one warning line); "
                   f"a directory given here that cannot be used stops the daemon.")
@click.option("--secrets-dir-not-tmpfs", is_flag=True,
              help="UNSAFE: accept a --secrets-dir that is not on tmpfs, so secret values are written to a disk "
                   "(tests, or a host without tmpfs).")
@click.option("--no-secrets-dir", is_flag=True,
              help="Deliver no secrets or configs to files on this node (\"secret read\" still works).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="Least severe events to log.")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="One event per line on standard error: text, or one JSON object per line "
                   "(time, level, logger, node_id, term, msg).")
def daemon_cmd(data_dir: Path | None, listen_addr: str | None, hosts: str | None, tlsverify: bool, tls: bool,
               insecure: bool, tlscacert: str | None, tlscert: str | None, tlskey: str | None, metrics_addr: str | None,
               secrets_dir: Path | None, secrets_dir_not_tmpfs: bool, no_secrets_dir: bool, log_level: str,
               log_format: str) -> None:
    """Run the raftstore daemon for one node (in the foreground; SIGTERM stops it).

    The daemon serves the control socket DATA_DIR/raftstore.sock (mode 0600)
    that every other command talks to. A manager with autolock starts locked.

    With -H tcp://HOST:PORT it also serves the control API on TCP, as dockerd
    does: --tlsverify (mutual TLS; clients need a certificate from
    "raftstore ca issue-client"), --tls (server TLS only), or --insecure (plain
    text, loopback only, open to every local user). The daemon's certificate
    comes from "raftstore ca issue-server --san HOST" and must name the host
    clients dial.

    Secrets and configs granted to this node are kept as files in
    --secrets-dir, on tmpfs, as Swarm mounts them under /run/secrets: a grant
    makes the file appear within seconds; a revoke, rm, leave or the daemon's
    stop removes it.

    \b
    Examples:
      raftstore daemon --data-dir /var/lib/raftstore --listen-addr 10.0.0.5:2377
      raftstore daemon --secrets-dir /run/raftstore/secrets   # a tmpfs
      raftstore daemon -H tcp://0.0.0.0:2376 --tlsverify --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem
    """
    configure_logging(log_level, log_format)
    try:
        remote = _remote_api(hosts, tlsverify, tls, insecure, tlscacert, tlscert, tlskey)
        metrics = split_host_port(metrics_addr) if metrics_addr else None
        secrets = _secrets_dir(secrets_dir, secrets_dir_not_tmpfs, no_secrets_dir)
        raftstore.serve(data_dir or default_data_dir(), listen_addr=listen_addr, remote_api=remote,
                        metrics_addr=metrics, secrets_dir=secrets, secrets_dir_required=secrets_dir is not None)
    except RaftstoreError as error:
        fail(str(error))
