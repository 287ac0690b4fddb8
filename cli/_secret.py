"""``secret`` and ``config``: named, immutable data in the store."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ._common import call, connection_options, emit_json, fail, format_option, handle_errors, print_table

__all__ = ["register"]

label_option = click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label (repeatable).")


def _read_source(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror}")
    return b""


def _echo_rows(rows: list[dict], quiet: bool, output_format: str, extra: tuple[str, Callable[[dict], Any]] | None = None) -> None:
    if quiet:
        for row in rows:
            click.echo(row["id"])
    elif output_format == "json":
        emit_json(rows)
    else:
        headers = ["ID", "NAME"] + ([extra[0]] if extra else []) + ["CREATED", "UPDATED"]
        print_table(headers, [[r["id"], r["name"]] + ([extra[1](r)] if extra else []) + [r["created_at"], r["updated_at"]]
                              for r in rows])


def _echo_object(obj: dict, output_format: str) -> None:
    if output_format == "json":
        emit_json(obj)
        return
    for key in ("id", "name", "version", "created_at", "updated_at"):
        click.echo(f"{key.replace('_', ' ').capitalize()}: {obj[key]}")
    click.echo("Labels: " + (", ".join(f"{k}={v}" for k, v in sorted(obj["labels"].items())) or "-"))
    if "grants" in obj:
        click.echo("Granted to: " + (", ".join(obj["grants"]) or "-"))
    if "data" in obj:
        data = obj["data"]
        click.echo("Data:")
        click.echo(data.decode(errors="replace") if isinstance(data, bytes) else data)


# ------------------------------------------------------------------ secret


@click.group("secret")
def secret() -> None:
    """Manage secrets: write-once data that only nodes holding a grant can read.

    \b
    Examples:
      printf 's3cr3t' | raftstore secret create db-password - --grant NODE
      raftstore secret ls
      raftstore secret grant db-password NODE
      raftstore secret read db-password          # on NODE
      raftstore secret rm --force db-password
    """


@secret.command("create")
@click.argument("name")
@click.argument("source", metavar="FILE|-")
@label_option
@click.option("--grant", "grants", multiple=True, metavar="NODE", help="Grant the secret to a node (repeatable).")
@connection_options
@handle_errors
def secret_create(name: str, source: str, labels: tuple[str, ...], grants: tuple[str, ...]) -> None:
    """Create secret NAME from FILE, or from standard input with -. Prints its id."""
    data = _read_source(source)
    result = call("secret.create", {"name": name, "data": data, "labels": list(labels), "grants": list(grants),
                                    "request_id": os.urandom(16)})
    click.echo(result["id"])


@secret.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print ids only.")
@format_option
@connection_options
@handle_errors
def secret_ls(quiet: bool, output_format: str) -> None:
    """List secrets (never their data)."""
    _echo_rows(call("secret.ls"), quiet, output_format, ("GRANTS", lambda r: len(r["grants"])))


@secret.command("inspect")
@click.argument("name")
@format_option
@connection_options
@handle_errors
def secret_inspect(name: str, output_format: str) -> None:
    """Show a secret's metadata and grants (never its data)."""
    _echo_object(call("secret.inspect", {"secret": name}), output_format)


@secret.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even if the secret is granted to nodes.")
@connection_options
@handle_errors
def secret_rm(names: tuple[str, ...], force: bool) -> None:
    """Remove secrets; a granted secret needs --force."""
    for name in names:
        click.echo(call("secret.rm", {"secret": name, "force": force})["id"])


@secret.command("grant")
@click.argument("name")
@click.argument("node")
@connection_options
@handle_errors
def secret_grant(name: str, node: str) -> None:
    """Let NODE read secret NAME."""
    call("secret.grant", {"secret": name, "node": node})


@secret.command("revoke")
@click.argument("name")
@click.argument("node")
@connection_options
@handle_errors
def secret_revoke(name: str, node: str) -> None:
    """Stop NODE from reading secret NAME (from its next read on)."""
    call("secret.revoke", {"secret": name, "node": node})


@secret.command("read")
@click.argument("name")
@connection_options
@handle_errors
def secret_read(name: str) -> None:
    """Print the value of a secret granted to this node (the value alone, as stored)."""
    data = call("secret.read", {"secret": name})["data"]
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


# ------------------------------------------------------------------ config


@click.group("config")
def config() -> None:
    """Manage configs: write-once, readable data (up to 1000 KiB), granted to nodes like secrets.

    \b
    Examples:
      raftstore config create nginx.conf ./nginx.conf --label app=web --grant NODE
      raftstore config inspect nginx.conf --format json
      raftstore config grant nginx.conf NODE
      raftstore config read nginx.conf             # on NODE, worker or manager
    """


@config.command("create")
@click.argument("name")
@click.argument("source", metavar="FILE|-")
@label_option
@click.option("--grant", "grants", multiple=True, metavar="NODE", help="Grant the config to a node (repeatable).")
@connection_options
@handle_errors
def config_create(name: str, source: str, labels: tuple[str, ...], grants: tuple[str, ...]) -> None:
    """Create config NAME from FILE, or from standard input with -. Prints its id."""
    data = _read_source(source)
    click.echo(call("config.create", {"name": name, "data": data, "labels": list(labels), "grants": list(grants),
                                      "request_id": os.urandom(16)})["id"])


@config.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print ids only.")
@format_option
@connection_options
@handle_errors
def config_ls(quiet: bool, output_format: str) -> None:
    """List configs."""
    rows = call("config.ls")
    for row in rows:
        row.pop("data", None)
    _echo_rows(rows, quiet, output_format, ("GRANTS", lambda r: len(r.get("grants", []))))


@config.command("inspect")
@click.argument("name")
@format_option
@connection_options
@handle_errors
def config_inspect(name: str, output_format: str) -> None:
    """Show a config, data and grants included (on a manager)."""
    _echo_object(call("config.inspect", {"config": name}), output_format)


@config.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even if the config is granted to nodes.")
@connection_options
@handle_errors
def config_rm(names: tuple[str, ...], force: bool) -> None:
    """Remove configs; a granted config needs --force."""
    for name in names:
        click.echo(call("config.rm", {"config": name, "force": force})["id"])


@config.command("grant")
@click.argument("name")
@click.argument("node")
@connection_options
@handle_errors
def config_grant(name: str, node: str) -> None:
    """Let NODE read config NAME (and receive it under its --secrets-dir's configs/)."""
    call("config.grant", {"config": name, "node": node})


@config.command("revoke")
@click.argument("name")
@click.argument("node")
@connection_options
@handle_errors
def config_revoke(name: str, node: str) -> None:
    """Stop NODE from reading config NAME."""
    call("config.revoke", {"config": name, "node": node})


@config.command("read")
@click.argument("name")
@connection_options
@handle_errors
def config_read(name: str) -> None:
    """Print the data of a config granted to this node (the data alone, as stored)."""
    sys.stdout.buffer.write(call("config.read", {"config": name})["data"])
    sys.stdout.buffer.flush()


def register(group: click.Group) -> None:
    group.add_command(secret)
    group.add_command(config)
