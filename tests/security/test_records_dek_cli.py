"""``raftstore update --rotate-dek``: the flag, its example in --help, plain and JSON output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import raftstore.cli._swarm as swarm
from raftstore.cli import cli


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def fake_call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        seen.append((method, params))
        return {"autolock": False, "cert_expiry_seconds": 7776000, "dek_term": 3}

    monkeypatch.setattr(swarm, "call", fake_call)
    return seen


def test_help_shows_the_flag_and_an_example() -> None:
    result = CliRunner().invoke(cli, ["update", "--help"])
    assert result.exit_code == 0
    assert "--rotate-dek" in result.output
    assert "raftstore update --rotate-dek" in result.output.partition("Example")[2]


def test_rotate_dek_asks_the_daemon_and_says_which_term(calls) -> None:
    result = CliRunner().invoke(cli, ["update", "--rotate-dek"])
    assert result.exit_code == 0, result.output
    assert [method for method, _ in calls] == ["update"]
    assert {k: v for k, v in calls[0][1].items() if v not in (None, [])} == {"rotate_dek": True}
    assert result.output == "Swarm updated.\nData encryption key rotated to term 3.\n"


def test_rotate_dek_json(calls) -> None:
    result = CliRunner().invoke(cli, ["update", "--rotate-dek", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dek_term"] == 3


def test_update_without_the_flag_does_not_rotate(calls) -> None:
    result = CliRunner().invoke(cli, ["update", "--cert-expiry", "720h"])
    assert result.exit_code == 0, result.output
    assert calls[0][1]["rotate_dek"] is False
    assert "rotated" not in result.output
