"""``raftstore snapshot save|restore``: backups."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ._common import call, connection_options, emit_json, fail, format_option, handle_errors

__all__ = ["register"]


@click.group("snapshot")
def snapshot() -> None:
    """Back up the store to a file, or rebuild a cluster from one.

    A backup is sealed under the cluster's keys: with autolock on it opens only
    with the cluster's unlock key; with autolock off it protects nothing on its own.

    \b
    Examples:
      raftstore snapshot save /backup/raftstore-$(date +%F).snap
      raftstore snapshot restore /backup/raftstore-2026-11-23.snap --listen-addr 10.0.0.9:2377
    """


@snapshot.command("save")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@format_option
@connection_options
@handle_errors
def snapshot_save(path: Path, output_format: str) -> None:
    """Write a consistent backup of the store (run on a manager)."""
    result = call("snapshot.save", timeout=600)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, result["data"])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror}")
    info = {"file": str(path), "index": result["index"], "cluster_id": result["cluster_id"],
            "bytes": len(result["data"]), "autolock": result["autolock"]}
    if output_format == "json":
        emit_json(info)
    else:
        click.echo(f"Snapshot of cluster {info['cluster_id']} at index {info['index']} saved to {path} "
                   f"({info['bytes']} bytes).")


@snapshot.command("restore")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the data of a node that is already part of a cluster.")
@click.option("--listen-addr", metavar="HOST:PORT", help="Cluster port for the restored manager.")
@click.option("--advertise-addr", metavar="HOST:PORT", help="Address other nodes use to reach it.")
@format_option
@connection_options
@handle_errors
def snapshot_restore(path: Path, force: bool, listen_addr: str | None, advertise_addr: str | None,
                     output_format: str) -> None:
    """Rebuild a one-manager cluster from a backup on this node; other managers join it afterwards."""
    result = call("snapshot.restore", {"data": path.read_bytes(), "force": force, "listen_addr": listen_addr,
                                       "advertise_addr": advertise_addr}, timeout=600)
    if output_format == "json":
        emit_json(result)
        return
    click.echo(f"Restored cluster {result['cluster_id']}: this node ({result['node_id']}) is its only manager.")
    if result["locked"]:
        click.echo('It is locked: run "raftstore unlock" with the source cluster\'s unlock key.')


def register(group: click.Group) -> None:
    group.add_command(snapshot)
