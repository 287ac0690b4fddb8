"""Key/value commands (``kv put|get|rm|ls|cas|txn``) and ``events``, through ``raftstore.Client``."""

from __future__ import annotations

import json
import sys

import click

from raftstore import Compare, Delete, Put

from ._common import client, connection_options, emit_json, fail, format_option, handle_errors, print_table, _jsonable

__all__ = ["register"]

#: The store's tables (as ``raftstore.state._state_machine.TABLES``; the daemon checks the name too).
TABLES = ("cluster", "nodes", "secrets", "configs", "kv")

consistency_option = click.option(
    "--consistency",
    type=click.Choice(["linearizable", "local"]),
    default="linearizable",
    show_default=True,
    help="linearizable reads go through the Raft log; local reads this manager's copy (may be stale).",
)


def _value(value: str) -> bytes:
    if value == "-":
        return sys.stdin.buffer.read()
    return value.encode()


@click.group("kv")
def kv() -> None:
    """Read and write the replicated key/value table.

    \b
    Examples:
      raftstore kv put app/config '{"debug": false}'
      echo -n hello | raftstore kv put greeting -
      raftstore kv get greeting
      raftstore kv cas greeting world --version 12
      raftstore kv txn --compare a=12 --put a=1 --put b=2
      raftstore kv ls app/ --format json
    """


@kv.command("put")
@click.argument("key")
@click.argument("value")
@connection_options
@handle_errors
def kv_put(key: str, value: str) -> None:
    """Set KEY to VALUE (- reads the value from standard input). Prints nothing."""
    with client() as c:
        c.put(key, _value(value))


@kv.command("get")
@click.argument("key")
@consistency_option
@format_option
@connection_options
@handle_errors
def kv_get(key: str, consistency: str, output_format: str) -> None:
    """Print the value of KEY, followed by a newline."""
    with client() as c:
        record = c.get(key, consistency=consistency)
    if output_format == "json":
        emit_json({"key": record.key, "value": record.value, "version": record.version,
                   "created_version": record.created_version})
        return
    out = sys.stdout.buffer
    out.write(record.value + b"\n")
    out.flush()


@kv.command("rm")
@click.argument("key")
@click.option("--version", type=int, help="Only if the key is still at this version.")
@connection_options
@handle_errors
def kv_rm(key: str, version: int | None) -> None:
    """Delete KEY."""
    with client() as c:
        c.delete(key, version=version)


@kv.command("cas")
@click.argument("key")
@click.argument("value")
@click.option("--version", type=click.IntRange(min=0), required=True,
              help="The version you read (0: the key must not exist yet).")
@connection_options
@handle_errors
def kv_cas(key: str, value: str, version: int) -> None:
    """Compare-and-set: write VALUE only if KEY is still at --version.

    Otherwise nothing is written and the error names the version KEY is at now
    ("update out of sequence: expected version 12, the key is at version 15").
    """
    with client() as c:
        c.cas(key, _value(value), version)


def _pair(text: str, what: str, option: str) -> tuple[str, str]:
    key, sep, rest = text.partition("=") if what == "VALUE" else text.rpartition("=")
    if not sep or not key or (what == "VERSION" and not rest.isdigit()):
        raise click.BadParameter(f"{text!r} is not KEY={what}", param_hint=option)
    return key, rest


@kv.command("txn")
@click.option("--compare", "compares", multiple=True, metavar="KEY=VERSION",
              help="Only if KEY is at VERSION (0: does not exist); KEY must also be put or removed (repeatable).")
@click.option("--put", "puts", multiple=True, metavar="KEY=VALUE", help="Set KEY to VALUE (repeatable).")
@click.option("--rm", "removals", multiple=True, metavar="KEY", help="Delete KEY, which must exist (repeatable).")
@connection_options
@handle_errors
def kv_txn(compares: tuple[str, ...], puts: tuple[str, ...], removals: tuple[str, ...]) -> None:
    """Put and delete several keys as one log entry, only if every --compare holds. Prints the version.

    All or nothing: when a compare fails (or a key to delete is missing)
    nothing is applied, and the error names the version found (exit 1).

    \b
    Examples:
      raftstore kv txn --compare queue/job-1=12 --rm queue/job-1 --put running/job-1=worker-3
      raftstore kv txn --compare app/lock=0 --put app/lock=me
    """
    conditions = []
    for text in compares:
        key, version = _pair(text, "VERSION", "--compare")
        conditions.append(Compare(key, int(version)))
    operations: list[Put | Delete] = []
    for text in puts:
        key, value = _pair(text, "VALUE", "--put")
        operations.append(Put(key, value.encode()))
    operations += [Delete(key) for key in removals]
    with client() as c:
        result = c.txn(conditions, operations)
    if not result.succeeded:
        fail(f"transaction not applied: {result.conflict}")
    click.echo(result.version)


@kv.command("ls")
@click.argument("prefix", required=False, default="")
@click.option("-q", "--quiet", is_flag=True, help="Print the keys only.")
@consistency_option
@format_option
@connection_options
@handle_errors
def kv_ls(prefix: str, quiet: bool, consistency: str, output_format: str) -> None:
    """List keys (starting with PREFIX) with their versions."""
    with client() as c:
        records = c.list(prefix, consistency=consistency)
    if quiet:
        for record in records:
            click.echo(record.key)
    elif output_format == "json":
        emit_json([{"key": r.key, "version": r.version, "created_version": r.created_version,
                    "size": len(r.value)} for r in records])
    else:
        print_table(["KEY", "VERSION", "SIZE"], [[r.key, r.version, len(r.value)] for r in records])


@click.command("events")
@click.option("--since", type=click.IntRange(min=0),
              help="Start after this version (default: now). Past the newest version it waits for it "
                   "(with --no-follow: an error); below the compacted history the error names the oldest left.")
@click.option("--until", type=click.IntRange(min=0), help="Stop after this version.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep streaming new events, or stop at the current version.")
@click.option("--table", type=click.Choice(list(TABLES)), help="Only events of this table.")
@click.option("--prefix", default="", help="Only keys (kv) or object names starting with this.")
@format_option
@connection_options
@handle_errors
def events_cmd(since: int | None, until: int | None, follow: bool, table: str | None, prefix: str,
               output_format: str) -> None:
    """Stream create, update and delete events (no values, ever).

    Each event has its version, the time it was proposed (the proposing
    manager's clock) and the actor: the node id of the manager that proposed
    it. With --format json each event is one JSON object per line.

    \b
    Examples:
      raftstore events --since 0 --no-follow
      raftstore events --table kv --prefix app/ --format json
      raftstore events --since 120 --until 180 --table secrets
    """
    with client(timeout=None) as c, c.watch(prefix, table=table, since=since, until=until, follow=follow) as events:
        for event in events:
            if output_format == "json":
                click.echo(json.dumps(_jsonable(event.to_dict()), sort_keys=True))
            else:
                label = event.name if event.name == event.id else f"{event.name} ({event.id})"
                actor = f" by {event.actor}" if event.actor else ""
                click.echo(f"{event.time or '-'} {event.version} {event.action} {event.table} {label}{actor}")


def register(group: click.Group) -> None:
    group.add_command(kv)
    group.add_command(events_cmd)
