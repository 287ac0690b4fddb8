"""The command line as a boundary: help everywhere, one Error line, stable exit codes."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from raftstore.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = prefix + (name,)
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


COMMANDS = _commands(cli)


def test_the_design_commands_exist() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for expected in ("daemon", "init", "join", "join-token", "unlock", "unlock-key", "update", "leave", "info",
                     "node ls", "node inspect", "node promote", "node demote", "node rm",
                     "kv put", "kv get", "kv rm", "kv ls", "kv cas", "events"):
        assert expected in names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help and len(command.help.strip()) > 10, f"{path} needs a help text that explains"


@pytest.mark.parametrize(
    "args",
    [["info"], ["kv", "get", "k"], ["node", "ls"], ["join-token", "worker"], ["unlock-key"], ["events", "--no-follow"]],
)
def test_no_daemon_is_one_error_line(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["-H", f"unix://{tmp_path}/missing.sock", *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Cannot connect to the raftstore daemon"), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [["kv", "cas", "k", "v"], ["join-token", "admin"], ["node", "rm"], ["nope"], ["kv", "cas", "k", "v", "--version", "-1"]],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output


def test_bad_host_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-H", "http://x", "info"])
    assert result.exit_code == 1 and result.output.startswith("Error: invalid host")


def test_bad_duration_is_one_line() -> None:
    result = CliRunner().invoke(cli, ["-H", "unix:///nonexistent.sock", "update", "--cert-expiry", "forever"])
    assert result.exit_code == 1
    assert result.output.strip() == 'Error: time: invalid duration "forever"'
