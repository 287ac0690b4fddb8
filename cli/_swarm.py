"""Cluster lifecycle commands: init, join, join-token, unlock, unlock-key, update, leave, info."""

from __future__ import annotations

import sys
from typing import Any

import click

from raftstore import format_duration, parse_duration

from ._common import call, connection_options, emit_json, format_option, handle_errors, read_optional_file
from ._external_ca import external_ca_option

__all__ = ["register"]

UNLOCK_ADVICE = (
    "To unlock a swarm manager after it restarts, run the `raftstore unlock`\n"
    "command and provide the following key:\n\n    {key}\n\n"
    "Please remember to store this key in a password manager, since without it you\n"
    "will not be able to restart the manager."
)


def _duration_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    return parse_duration(text).total_seconds()


def _join_instructions(role: str, token: str, addr: str) -> str:
    return f"To add a {role} to this swarm, run the following command:\n\n    raftstore join --token {token} {addr}\n"


@click.command("init")
@click.option("--autolock", is_flag=True, help="Lock managers after a restart until \"raftstore unlock\" is given the unlock key.")
@click.option("--cert-expiry", metavar="DURATION", help="Validity of node certificates, e.g. 2160h (default), at least 1h.")
@click.option("--listen-addr", metavar="HOST:PORT", help="Cluster port to listen on (default: the daemon's --listen-addr, else 0.0.0.0:2377).")
@click.option("--advertise-addr", metavar="HOST:PORT", help="Address other nodes use to reach this manager.")
@click.option("--ca-cert", metavar="FILE", help="Use this root CA certificate (PEM) instead of generating one.")
@click.option("--ca-key", metavar="FILE", help="Private key of --ca-cert (PEM); leave it out with --external-ca.")
@external_ca_option()
@click.option("--force-new-cluster", is_flag=True, help="After losing quorum: rebuild a one-manager cluster from this manager's data, keeping every committed record.")
@format_option
@connection_options
@handle_errors
def init_cmd(autolock: bool, cert_expiry: str | None, listen_addr: str | None, advertise_addr: str | None,
             ca_cert: str | None, ca_key: str | None, external_cas: list[dict[str, Any]], force_new_cluster: bool,
             output_format: str) -> None:
    """Create a new cluster with this node as its first manager.

    The root CA is generated, or yours: --ca-cert with --ca-key (RSA 2048-4096
    or ECDSA P-256/P-384), or --ca-cert with --external-ca, when the key stays
    with your CFSSL signing service and the cluster never holds it.

    \b
    Examples:
      raftstore init --listen-addr 127.0.0.1:2377
      raftstore init --autolock --advertise-addr 10.0.0.5:2377
      raftstore init --ca-cert root.pem --ca-key root.key
      raftstore init --ca-cert root.pem --external-ca protocol=cfssl,url=https://ca.example.com:8888,cacert=cfssl-tls-ca.pem
      raftstore init --force-new-cluster      # after losing a majority of managers
    """
    result = call(
        "init",
        {
            "autolock": autolock,
            "cert_expiry_seconds": _duration_seconds(cert_expiry),
            "listen_addr": listen_addr,
            "advertise_addr": advertise_addr,
            "ca_cert_pem": read_optional_file(ca_cert, "CA certificate"),
            "ca_key_pem": read_optional_file(ca_key, "CA key"),
            "external_cas": external_cas,
            "force_new_cluster": force_new_cluster,
        },
    )
    if output_format == "json":
        emit_json(result)
        return
    if force_new_cluster:
        click.echo(f"Cluster rebuilt: node ({result['node_id']}) is now the only manager, at Raft index {result['applied_index']}.")
        return
    click.echo(f"Swarm initialized: current node ({result['node_id']}) is now a manager.\n")
    click.echo(_join_instructions("worker", result["worker_token"], result["advertise_addr"]))
    click.echo("To add a manager to this swarm, run 'raftstore join-token manager' and follow the instructions.\n")
    if result.get("unlock_key"):
        click.echo(UNLOCK_ADVICE.format(key=result["unlock_key"]))


@click.command("join")
@click.option("--token", required=True, metavar="TOKEN", help="Join token (SWMTKN-1-...) from \"raftstore join-token\".")
@click.option("--listen-addr", metavar="HOST:PORT", help="Cluster port to listen on (managers).")
@click.option("--advertise-addr", metavar="HOST:PORT", help="Address other nodes use to reach this node.")
@click.argument("manager_addr", metavar="MANAGER_HOST:PORT")
@format_option
@connection_options
@handle_errors
def join_cmd(token: str, listen_addr: str | None, advertise_addr: str | None, manager_addr: str, output_format: str) -> None:
    """Join a cluster as a worker or a manager (the token decides).

    The node checks the manager's CA against the digest in the token before it
    trusts it; the manager checks the token's secret.

    \b
    Example:
      raftstore join --token SWMTKN-1-... --listen-addr 127.0.0.1:2378 127.0.0.1:2377
    """
    result = call(
        "join",
        {"token": token.strip(), "remote_addr": manager_addr, "listen_addr": listen_addr, "advertise_addr": advertise_addr},
        # A manager joining a large store waits for the leader's snapshot for as long as it keeps arriving
        # (the daemon gives up after 15 s without progress): no fixed deadline here.
        timeout=None,
    )
    if output_format == "json":
        emit_json(result)
    else:
        click.echo(f"This node joined a swarm as a {result['role']}.")


@click.command("join-token")
@click.option("--rotate", is_flag=True, help="Replace the token; the old one stops working at once.")
@click.option("-q", "--quiet", is_flag=True, help="Print the token only.")
@click.argument("role", type=click.Choice(["worker", "manager"]))
@format_option
@connection_options
@handle_errors
def join_token_cmd(rotate: bool, quiet: bool, role: str, output_format: str) -> None:
    """Show (or rotate) the token that lets a node join as ROLE.

    \b
    Examples:
      raftstore join-token worker
      raftstore join-token -q manager         # the token alone, for scripts
      raftstore join-token --rotate worker    # the old worker token stops working
    """
    result = call("join_token", {"role": role, "rotate": rotate})
    if quiet:
        click.echo(result["token"])
    elif output_format == "json":
        emit_json(result)
    else:
        if rotate:
            click.echo(f"Successfully rotated {role} join token.\n")
        click.echo(_join_instructions(role, result["token"], result["manager_addr"]))


@click.command("unlock")
@connection_options
@handle_errors
def unlock_cmd() -> None:
    """Unlock a locked manager: reads the unlock key from standard input, or prompts.

    \b
    Examples:
      raftstore unlock                                # prompts for SWMKEY-1-...
      pass show swarm/unlock-key | raftstore unlock   # from a password manager
    """
    if sys.stdin.isatty():
        key = click.prompt("Please enter unlock key", hide_input=True, default="", show_default=False)
    else:
        key = sys.stdin.readline()
    call("unlock", {"key": key.strip()})


@click.command("unlock-key")
@click.option("--rotate", is_flag=True, help="Generate a new unlock key; every manager re-wraps its keys under it.")
@click.option("-q", "--quiet", is_flag=True, help="Print the key only.")
@format_option
@connection_options
@handle_errors
def unlock_key_cmd(rotate: bool, quiet: bool, output_format: str) -> None:
    """Show (or rotate) the unlock key of a cluster with autolock on.

    \b
    Examples:
      raftstore unlock-key
      raftstore unlock-key -q                 # the key alone
      raftstore unlock-key --rotate           # store the new key before you lose the old one
    """
    result = call("unlock_key", {"rotate": rotate})
    if quiet:
        click.echo(result["unlock_key"])
    elif output_format == "json":
        emit_json(result)
    else:
        if rotate:
            click.echo("Successfully rotated manager unlock key.\n")
        click.echo(UNLOCK_ADVICE.format(key=result["unlock_key"]))


def _bool(text: str | None) -> bool | None:
    if text is None:
        return None
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise click.BadParameter(f"{text!r} is not true or false", param_hint="--autolock")


@click.command("update")
@click.option("--autolock", metavar="true|false", help="Turn autolock on or off.")
@click.option("--cert-expiry", metavar="DURATION", help="Validity of node certificates issued from now on (at least 1h).")
@click.option("--rotate-dek", is_flag=True,
              help="Seal everything from now on under a new data encryption key; older keys leave the keyring "
                   "once no record on any manager's disk uses them.")
@external_ca_option("Add a CFSSL signing service for the root whose key the cluster does not hold: "
                    "protocol=cfssl,url=https://HOST:PORT[,cacert=FILE]; it must answer now. Repeatable.")
@click.option("--external-ca-rm", "external_ca_rm", metavar="URL", multiple=True,
              help="Remove the external CA with this URL. Repeatable.")
@format_option
@connection_options
@handle_errors
def update_cmd(autolock: str | None, cert_expiry: str | None, rotate_dek: bool, external_cas: list[dict[str, Any]],
               external_ca_rm: tuple[str, ...], output_format: str) -> None:
    """Change cluster-wide settings, or rotate the data encryption key.

    \b
    Examples:
      raftstore update --autolock=true
      raftstore update --cert-expiry 720h
      raftstore update --rotate-dek
      raftstore update --external-ca protocol=cfssl,url=https://ca2.example.com:8888,cacert=cfssl-tls-ca.pem
      raftstore update --external-ca-rm https://ca1.example.com:8888
    """
    result = call("update", {"autolock": _bool(autolock), "cert_expiry_seconds": _duration_seconds(cert_expiry),
                             "rotate_dek": rotate_dek, "external_cas": external_cas,
                             "external_ca_rm": list(external_ca_rm)})
    if output_format == "json":
        emit_json(result)
        return
    click.echo("Swarm updated.")
    if rotate_dek:
        click.echo(f"Data encryption key rotated to term {result['dek_term']}.")
    if result.get("unlock_key"):
        click.echo("\n" + UNLOCK_ADVICE.format(key=result["unlock_key"]))


@click.command("leave")
@click.option("--force", is_flag=True, help="Leave even if this node is a manager (warns if quorum would be lost), "
                                             "the last manager, or locked.")
@connection_options
@handle_errors
def leave_cmd(force: bool) -> None:
    """Leave the cluster; this node's cluster data is erased.

    A manager needs --force; the safe way is to demote it first.

    \b
    Examples:
      raftstore leave                         # a worker
      raftstore leave --force                 # a manager, the last manager, or a locked node
    """
    result = call("leave", {"force": force})
    if isinstance(result, dict) and result.get("warning"):
        click.echo(f"Warning: {result['warning']}", err=True)
    click.echo("Node left the swarm.")


@click.command("info")
@format_option
@connection_options
@handle_errors
def info_cmd(output_format: str) -> None:
    """Show this node's place in the cluster: role, lock state, Raft, certificate.

    \b
    Examples:
      raftstore info
      raftstore info --format json
    """
    info = call("info")
    if output_format == "json":
        emit_json(info)
        return
    _print_info(info)


def _print_info(info: dict[str, Any]) -> None:
    lines = [f"State: {info['state']}"]
    if info.get("node_id"):
        lines += [
            f"NodeID: {info['node_id']}",
            f"ClusterID: {info['cluster_id']}",
            f"Role: {info['role']}",
            f"Locked: {str(info['locked']).lower()}",
        ]
    if info.get("autolock") is not None:
        lines.append(f"Autolock: {str(info['autolock']).lower()}")
        if info["autolock"] is False:
            lines.append("  WARNING: autolock is off: the keys to this manager's data are stored in plain form on its disk")
    if info.get("error"):
        lines.append(f"Error: {info['error']}")
    if info.get("raft"):
        raft = info["raft"]
        lines += [
            f"Managers: {info['managers']}",
            f"Nodes: {info['nodes']}",
            f"Leader: {info['leader'] or '(none)'}{' (this node)' if info.get('is_leader') else ''}",
            "Raft:",
            f"  Term: {raft['term']}",
            f"  Commit index: {raft['commit_index']}",
            f"  Applied index: {raft['applied_index']}",
        ]
    if info.get("cert_expiry_seconds") is not None:
        seconds = info["cert_expiry_seconds"]
        from datetime import timedelta

        lines.append(f"Certificate expires in: {format_duration(timedelta(seconds=max(0, seconds)))}")
    if info.get("ca_rotation_in_progress") is not None:
        lines.append(f"CA rotation in progress: {str(info['ca_rotation_in_progress']).lower()}")
    if info.get("ca_config"):
        lines += _ca_config_lines(info["ca_config"], info.get("external_cas"))
    if info.get("listen_addr"):
        lines.append(f"Listen address: {info['listen_addr']}")
        lines.append(f"Advertise address: {info['advertise_addr']}")
    lines.append(f"Data directory: {info['data_dir']}")
    lines.append(f"Secrets directory: {info.get('secrets_dir') or '(off: secrets are not delivered to files)'}")
    if info.get("metrics_addr"):
        lines.append(f"Metrics: http://{info['metrics_addr']}/metrics")
    click.echo("\n".join(lines))




def _ca_config_lines(ca: dict[str, Any], probed: list[dict[str, Any]] | None = None) -> list[str]:
    """The "CA Configuration" block of ``docker system info``; external CAs with whether they answer
    when the daemon probed them (a manager does)."""
    lines = ["CA Configuration:", f"  Expiry Duration: {ca['expiry']}", f"  Force Rotate: {ca['force_rotate']}"]
    if probed:
        lines.append("  External CAs:")
        lines += [f"    {e['protocol']}: {e['url']} ({e['status']})" for e in probed]
    elif ca["external_cas"]:
        lines.append("  External CAs:")
        lines += [f"    {e['protocol']}: {e['url']}" for e in ca["external_cas"]]
    lines.append(f"  Root Rotation In Progress: {str(ca['root_rotation_in_progress']).lower()}")
    return lines


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo's data directories and logs afterwards.")
@handle_errors
def demo_cmd(keep: bool) -> None:
    """Run a real cluster on 127.0.0.1 (3 managers, 1 worker, autolock on) and show each step.

    Starts its own daemons in a temporary directory, kills and restarts a
    manager, unlocks it, rotates keys, runs a short benchmark, and removes
    everything afterwards. Exits 1 if any step fails.
    """
    from raftstore import run_demo

    if not run_demo(keep=keep):
        sys.exit(1)


DEMO_COMMANDS = (demo_cmd,)


def register(group: click.Group) -> None:
    for command in (init_cmd, join_cmd, join_token_cmd, unlock_cmd, unlock_key_cmd, update_cmd, leave_cmd, info_cmd,
                    demo_cmd):
        group.add_command(command)
