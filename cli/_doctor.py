"""``raftstore doctor``."""

from __future__ import annotations

import sys

import click

from ._common import call, connection_options, emit_json, format_option, handle_errors

__all__ = ["register"]


@click.command("doctor")
@format_option
@connection_options
@handle_errors
def doctor_cmd(output_format: str) -> None:
    """Audit this node: autolock, certificates, key file permissions, remote API, managers, CA rotation.

    Prints each finding with its severity and how to fix it. Exits 1 when a
    finding is critical, so that scripts and monitoring can act on it.

    \b
    Examples:
      raftstore doctor
      raftstore doctor --format json
      raftstore doctor || alert "raftstore doctor found a critical problem"
    """
    findings = call("doctor")
    if output_format == "json":
        emit_json(findings)
    elif not findings:
        click.echo("No problems found.")
    else:
        for finding in findings:
            click.echo(f"{finding['severity'].upper():8} {finding['check']}: {finding['message']}")
            click.echo(f"         fix: {finding['fix']}")
    if any(f["severity"] == "critical" for f in findings):
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(doctor_cmd)
