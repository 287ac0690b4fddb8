"""Commands about the command line itself: shell completion, versions, examples in --help."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftstore.cli import cli

BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


# ------------------------------------------------------------------ completion


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_for_each_shell(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert result.output.strip()
    assert "_RAFTSTORE_COMPLETE" in result.output


def test_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["completion", "powershell"])
    assert result.exit_code == 2, result.output


def test_completion_help_says_how_to_install() -> None:
    result = CliRunner().invoke(cli, ["completion", "--help"])
    assert result.exit_code == 0
    for line in ('eval "$(raftstore completion bash)"', "~/.bashrc", "~/.zshrc", "fish/completions"):
        assert line in result.output


def test_the_completion_protocol_completes_subcommands() -> None:
    """What the bash script asks the program, answered by the installed console script."""
    if shutil.which("raftstore", path=str(BIN)) is None:
        pytest.skip("the raftstore console script is not installed next to this Python")
    env = _env(_RAFTSTORE_COMPLETE="bash_complete", COMP_WORDS="raftstore kv ", COMP_CWORD="2")
    result = subprocess.run(["raftstore"], env=env, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    words = {line.partition(",")[2] for line in result.stdout.splitlines()}
    assert {"put", "get", "rm", "ls", "cas"} <= words


def test_bash_completes_with_the_script_sourced() -> None:
    """The printed script, sourced in a real bash, fills COMPREPLY."""
    bash = shutil.which("bash")
    if bash is None or shutil.which("raftstore", path=str(BIN)) is None:
        pytest.skip("needs bash and the installed raftstore console script")
    script = (
        'source <(raftstore completion bash) && COMP_WORDS=(raftstore n) && COMP_CWORD=1 '
        '&& _raftstore_completion raftstore && printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run([bash, "--norc", "--noprofile", "-c", script], env=_env(), check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["node"]


# ------------------------------------------------------------------ version


def test_version_for_people() -> None:
    result = CliRunner().invoke(cli, ["version"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"^raftstore: +{re.escape(metadata.version('raftstore'))}$", result.output, re.MULTILINE)
    assert f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}" in result.output
    for library in ("pysyncobj", "cryptography", "msgpack", "click"):
        assert re.search(rf"^{library}: +{re.escape(metadata.version(library))}$", result.output, re.MULTILINE)


def test_version_as_json() -> None:
    result = CliRunner().invoke(cli, ["version", "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["raftstore"] == metadata.version("raftstore")
    assert info["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    for library in ("pysyncobj", "cryptography", "msgpack", "click"):
        assert info["libraries"][library] == metadata.version(library)
    assert not {"pytest", "hypothesis", "matplotlib"} & set(info["libraries"]), "extras are not requirements"


def test_version_flag() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"raftstore {metadata.version('raftstore')}\n"


# ------------------------------------------------------------------ examples in --help

MAIN_COMMANDS = ["init", "join", "join-token", "unlock", "unlock-key", "update", "leave", "ca", "node", "secret",
                 "config", "kv", "snapshot", "doctor", "events", "info", "completion", "version"]


@pytest.mark.parametrize("command", MAIN_COMMANDS)
def test_main_commands_show_examples(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    examples = result.output.partition("Example")[2]
    assert f"raftstore {command}" in examples.split("Options:")[0], "an example shows the command itself"
