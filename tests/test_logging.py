"""The daemon's log lines: one event a line, node id and term stamped, in text or JSON."""

from __future__ import annotations

import io
import json
import logging
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftstore.telemetry._logging import configure_logging, set_log_context


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    yield out
    set_log_context(None)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _emit(stream: io.StringIO, log_format: str, message: str, *, error: bool = False) -> list[str]:
    configure_logging("info", log_format, stream)
    logger = logging.getLogger("raftstore.test")
    if error:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception(message)
    else:
        logger.info(message)
    return stream.getvalue().splitlines()


def test_text_lines_carry_node_and_term(stream: io.StringIO) -> None:
    set_log_context(lambda: {"node_id": "n1", "term": 7})
    [line] = _emit(stream, "text", "raft: leader is now n2 (term 7)")
    assert line.endswith(" info node=n1 term=7 raft: leader is now n2 (term 7)")
    assert line[:4].isdigit() and "T" in line.split()[0] and line.split()[0].endswith("Z")


def test_text_without_a_node_has_no_empty_fields(stream: io.StringIO) -> None:
    [line] = _emit(stream, "text", "daemon serving")
    assert "node=" not in line and "term=" not in line


def test_json_event_fields(stream: io.StringIO) -> None:
    set_log_context(lambda: {"node_id": "n1", "term": 3})
    [line] = _emit(stream, "json", "manager n1 started")
    event = json.loads(line)
    assert event["node_id"] == "n1" and event["term"] == 3 and event["msg"] == "manager n1 started"
    assert event["level"] == "info" and event["logger"] == "raftstore.test"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_traceback_stays_on_its_line(stream: io.StringIO, log_format: str) -> None:
    lines = _emit(stream, log_format, "maintenance failed", error=True)
    assert len(lines) == 1 and "ValueError" in lines[0]


def test_a_failing_context_does_not_lose_the_line(stream: io.StringIO) -> None:
    set_log_context(lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    assert _emit(stream, "text", "still logged")[0].endswith("info still logged")


@given(message=st.text(max_size=80))
def test_any_message_is_one_line(message: str) -> None:
    for log_format in ("text", "json"):
        out = io.StringIO()
        root = logging.getLogger()
        saved = (list(root.handlers), root.level)
        try:
            lines = _emit(out, log_format, message)
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
        assert len(lines) == 1
        if log_format == "json":
            assert json.loads(lines[0])["msg"] == message


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError):
        configure_logging("loud", "text", io.StringIO())
    with pytest.raises(ValueError):
        configure_logging("info", "xml", io.StringIO())
