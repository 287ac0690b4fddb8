"""``node ls|inspect|promote|demote|rm``."""

from __future__ import annotations

import click

from ._common import call, connection_options, emit_json, format_option, handle_errors, print_table

__all__ = ["register"]


@click.group("node")
def node() -> None:
    """Manage the cluster's nodes (run on a manager).

    \b
    Examples:
      raftstore node ls
      raftstore node inspect --format json NODE
      raftstore node promote NODE             # a worker becomes a manager
      raftstore node demote NODE
      raftstore node rm NODE
    """


@node.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print node ids only.")
@format_option
@connection_options
@handle_errors
def node_ls(quiet: bool, output_format: str) -> None:
    """List nodes; * marks the node you are talking to."""
    rows = call("node.ls")
    if quiet:
        for row in rows:
            click.echo(row["id"])
    elif output_format == "json":
        emit_json(rows)
    else:
        print_table(
            ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ADDRESS"],
            [[r["id"] + (" *" if r["self"] else ""), r["hostname"], r["status"].capitalize(),
              r["availability"].capitalize(), r["manager_status"], r["addr"]] for r in rows],
        )


@node.command("inspect")
@click.argument("node_ref", metavar="NODE")
@format_option
@connection_options
@handle_errors
def node_inspect(node_ref: str, output_format: str) -> None:
    """Show one node (by id or unique id prefix)."""
    row = call("node.inspect", {"node": node_ref})
    if output_format == "json":
        emit_json(row)
        return
    for key in ("id", "hostname", "role", "status", "availability", "manager_status", "addr", "version",
                "created_at", "updated_at"):
        click.echo(f"{key.replace('_', ' ').capitalize()}: {row[key]}")


@node.command("promote")
@click.argument("node_refs", metavar="NODE...", nargs=-1, required=True)
@connection_options
@handle_errors
def node_promote(node_refs: tuple[str, ...]) -> None:
    """Make workers managers."""
    for ref in node_refs:
        result = call("node.promote", {"node": ref})
        click.echo(f"Node {result['id']} promoted to a manager in the swarm.")


@node.command("demote")
@click.argument("node_refs", metavar="NODE...", nargs=-1, required=True)
@connection_options
@handle_errors
def node_demote(node_refs: tuple[str, ...]) -> None:
    """Make managers workers (refused if it would lose quorum)."""
    for ref in node_refs:
        result = call("node.demote", {"node": ref})
        click.echo(f"Manager {result['id']} demoted in the swarm.")


@node.command("rm")
@click.argument("node_refs", metavar="NODE...", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove a node that is still up, or a manager without demoting it.")
@connection_options
@handle_errors
def node_rm(node_refs: tuple[str, ...], force: bool) -> None:
    """Remove nodes from the cluster; a removed node is refused from then on."""
    for ref in node_refs:
        result = call("node.rm", {"node": ref, "force": force})
        click.echo(result["id"])


def register(group: click.Group) -> None:
    group.add_command(node)
