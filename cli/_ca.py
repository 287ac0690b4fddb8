"""``raftstore ca``: the cluster's root CA, its rotation, and certificates for the remote control API."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from raftstore import generate_private_key, make_csr, parse_duration

from ._common import call, connection_options, emit_json, fail, format_option, handle_errors, read_optional_file
from ._external_ca import external_ca_option

__all__ = ["register"]


def _waiting_line(status: dict[str, Any]) -> str:
    if not status["waiting_for"]:
        return f"CA rotation: all {status['total']} nodes converged; finishing"
    names = ", ".join(f"{n['id']} ({n['hostname']})" if n["hostname"] else n["id"] for n in status["waiting_for"])
    return f"CA rotation in progress: {status['converged']}/{status['total']} nodes converged; waiting for: {names}"


@click.group("ca", invoke_without_command=True)
@click.option("--rotate", is_flag=True, help="Start a root CA rotation and follow it until every node has converged.")
@click.option("--ca-cert", metavar="FILE", help="With --rotate: use this root certificate (PEM) instead of a new one.")
@click.option("--ca-key", metavar="FILE", help="With --rotate: the private key of --ca-cert (PEM).")
@click.option("--cert-expiry", metavar="DURATION",
              help="Validity of node certificates issued from now on, e.g. 2160h0m0s (as \"update --cert-expiry\").")
@external_ca_option("With --rotate and --ca-cert (no --ca-key): the CFSSL signing service that holds the new "
                    "root's key, protocol=cfssl,url=https://HOST:PORT[,cacert=FILE]. Repeatable.")
@click.option("-d", "--detach", is_flag=True, help="With --rotate: return at once instead of waiting.")
@click.option("--pending", is_flag=True,
              help="Print the new root CA certificate (PEM) of the rotation in progress, instead of the current one.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines; print only the certificate.")
@format_option
@connection_options
@click.pass_context
@handle_errors
def ca(ctx: click.Context, rotate: bool, ca_cert: str | None, ca_key: str | None, cert_expiry: str | None,
       external_cas: list[dict[str, Any]], detach: bool, pending: bool, quiet: bool, output_format: str) -> None:
    """Print the cluster's root CA certificate (PEM), or rotate it.

    During a rotation every node renews its certificate under the new root
    (the old root cross-signs it meanwhile); when all have converged the old
    root is forgotten and both join tokens change. A node that is down keeps
    the rotation waiting, and this command says which.

    \b
    Examples:
      raftstore ca > root.pem
      raftstore ca --rotate
      raftstore ca --rotate --ca-cert new-root.pem --ca-key new-root.key --detach
      raftstore ca --rotate --ca-cert new-root.pem --external-ca protocol=cfssl,url=https://ca.example.com:8888
      raftstore ca --pending > new-root.pem    # during a rotation
      raftstore ca --cert-expiry 720h
      raftstore ca issue-client --out ~/.raftstore
      raftstore ca issue-server --san api.example.com --san 10.0.0.5 --out /etc/raftstore/api
    """
    if ctx.invoked_subcommand is not None:
        return
    if (ca_cert or ca_key or detach or external_cas) and not rotate:
        raise click.UsageError("--ca-cert, --ca-key, --external-ca and --detach go with --rotate")
    if pending and rotate:
        raise click.UsageError("--pending shows a rotation in progress; it does not go with --rotate")
    if cert_expiry is not None:
        call("update", {"cert_expiry_seconds": parse_duration(cert_expiry).total_seconds()})
    if pending:
        _print_pending(call("ca"), output_format)
        return
    status = call("ca", {"rotate": rotate, "ca_cert_pem": read_optional_file(ca_cert, "CA certificate"),
                         "ca_key_pem": read_optional_file(ca_key, "CA key"), "external_cas": external_cas})
    if rotate and not detach:
        shown = ""
        while status["in_progress"]:
            line = _waiting_line(status)
            if line != shown and not quiet and output_format != "json":
                click.echo(line, err=True)
                shown = line
            time.sleep(0.5)
            status = call("ca")
        if not quiet and output_format != "json":
            click.echo("CA rotation complete.", err=True)
    elif rotate and not quiet and output_format != "json":
        click.echo('CA rotation started; run "raftstore ca" to see its progress.', err=True)
    if output_format == "json":
        emit_json(status)
        return
    if status["in_progress"] and not quiet:
        click.echo(_waiting_line(status), err=True)
    click.echo(status["root_ca_pem"].decode().rstrip("\n"))


def _print_pending(status: dict[str, Any], output_format: str) -> None:
    """The new root of the rotation in progress (what nodes will trust once it completes)."""
    if not status["in_progress"]:
        fail("no root CA rotation is in progress; \"raftstore ca\" prints the current root")
    if output_format == "json":
        emit_json({"root_ca_pem": status["new_root_ca_pem"], "started_at": status["started_at"]})
        return
    click.echo(status["new_root_ca_pem"].decode().rstrip("\n"))


@ca.command("issue-client")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write ca.pem, cert.pem and key.pem into (created if missing).")
@click.option("--name", help="Name for the certificate's CN (default: a generated one).")
@click.option("--revoke", "revoke_serial", metavar="SERIAL",
              help="Instead of issuing: revoke the client certificate with this serial (hex, as printed at issue).")
@connection_options
@handle_errors
def issue_client(out_dir: Path | None, name: str | None, revoke_serial: str | None) -> None:
    """Write a client certificate set for the remote control API (-H tcp://... --tlsverify), or revoke one.

    The key is made here and never leaves this machine; the manager signs a CSR.
    Point RAFTSTORE_CERT_PATH at the directory, or pass --tlscacert/--tlscert/--tlskey.
    The daemon's remote control API accepts only these certificates (never a
    node's), and refuses a revoked one from the next request on, on every manager.

    \b
    Examples:
      raftstore ca issue-client --out ~/.raftstore --name alice
      raftstore ca issue-client --revoke 3f9a0c...   (the serial printed when it was issued)
    """
    if revoke_serial is not None:
        if out_dir is not None or name is not None:
            raise click.UsageError("--revoke takes no --out or --name")
        result = call("ca.revoke_client", {"serial": revoke_serial})
        already = " (it already was)" if result["already_revoked"] else ""
        click.echo(f"Revoked client certificate {result['serial']}{already}")
        return
    if out_dir is None:
        raise click.UsageError("give --out DIR to issue a certificate, or --revoke SERIAL")
    key = generate_private_key()
    result = call("ca.issue_client", {"csr_pem": make_csr(key), "name": name})
    _write_set(out_dir, result, key)
    click.echo(f"Wrote ca.pem, cert.pem and key.pem for {result['name']!r} to {out_dir} (serial {result['serial']}; "
               f"revoke with: raftstore ca issue-client --revoke {result['serial']})")


@ca.command("issue-server")
@click.option("--san", "sans", metavar="NAME_OR_IP", multiple=True, required=True,
              help="A DNS name or IP address that clients dial (-H tcp://NAME_OR_IP:PORT); repeat for each.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write ca.pem, cert.pem and key.pem into (created if missing).")
@connection_options
@handle_errors
def issue_server(sans: tuple[str, ...], out_dir: Path) -> None:
    """Write a daemon's server certificate set for the remote control API (raftstore daemon -H tcp://...).

    The certificate states serverAuth only and names the given hosts; a
    client connects only when the host it dials is one of them, as the
    docker CLI checks. The key is made here (mode 0600) and never leaves this
    machine; the manager signs a CSR.

    \b
    Example:
      raftstore ca issue-server --san api.example.com --san 10.0.0.5 --out /etc/raftstore/api
      raftstore daemon -H tcp://0.0.0.0:2376 --tlsverify --tlscacert /etc/raftstore/api/ca.pem \\
        --tlscert /etc/raftstore/api/cert.pem --tlskey /etc/raftstore/api/key.pem
    """
    key = generate_private_key()
    result = call("ca.issue_server", {"csr_pem": make_csr(key), "sans": list(sans)})
    _write_set(out_dir, result, key)
    click.echo(f"Wrote ca.pem, cert.pem and key.pem for {', '.join(sans)} to {out_dir}")


def _write_set(out_dir: Path, result: dict[str, Any], key: bytes) -> None:
    """ca.pem, cert.pem and key.pem (0600, set before any byte is written) into a 0700 directory."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for filename, data, mode in (("ca.pem", result["ca_pem"], 0o644), ("cert.pem", result["cert_chain_pem"], 0o644),
                                 ("key.pem", key, 0o600)):
        path = out_dir / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
        finally:
            os.close(fd)


def register(group: click.Group) -> None:
    group.add_command(ca)


__all__ += ["sys"]
