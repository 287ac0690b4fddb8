"""The daemon's log: one event per line, as text for people or JSON for a log pipeline.

Every line carries the node id and, on a running manager, the Raft term, so
the logs of several managers can be merged and read term by term. The lines
are composed by our code from ids, addresses, indices and counts; no key,
token, secret or value is ever passed to a logger (a test greps the logs of a
whole demo run for every one of them). A traceback stays on its line too: in
JSON as a field, in text only at debug level, so that a line is an event.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "configure_logging", "set_log_context"]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

_no_context: Callable[[], dict[str, Any]] = dict
_context_source = _no_context


def set_log_context(source: Callable[[], dict[str, Any]] | None) -> None:
    """Name what stamps every line (the daemon's node id and term); ``None`` stops it."""
    global _context_source
    _context_source = source or _no_context


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            fields = _context_source()
        except Exception:  # a half-started daemon: log the line without context
            fields = {}
        record.node_id = fields.get("node_id")
        record.term = fields.get("term")
        return True


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _one_line(text: str) -> str:
    return " | ".join(text.splitlines())  # every line boundary Python knows, not only "\n"


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower()]
        if record.node_id:  # type: ignore[attr-defined]
            parts.append(f"node={record.node_id}")  # type: ignore[attr-defined]
        if record.term is not None:  # type: ignore[attr-defined]
            parts.append(f"term={record.term}")  # type: ignore[attr-defined]
        parts.append(_one_line(record.getMessage()))
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            parts.append(f"error={type(error).__name__}: {_one_line(str(error))}")
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                parts.append(_one_line(self.formatException(record.exc_info)))
        return " ".join(parts)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "node_id": record.node_id,  # type: ignore[attr-defined]
            "term": record.term,  # type: ignore[attr-defined]
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            event["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            event["traceback"] = self.formatException(record.exc_info)
        return json.dumps(event, separators=(",", ":"), default=str)


def configure_logging(level: str = "info", log_format: str = "text", stream: TextIO = sys.stderr) -> None:
    """Send every logger of this process to ``stream``, one event per line."""
    if level not in LOG_LEVELS or log_format not in LOG_FORMATS:
        raise ValueError(f"log level {level!r} / format {log_format!r}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    handler.addFilter(_Context())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # pysyncobj logs every reconnect attempt; its warnings are enough.
    logging.getLogger("pysyncobj").setLevel(max(logging.WARNING, root.level))
