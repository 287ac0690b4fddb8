"""What applying a proposal produced: its ``Outcome`` and the ``Event``s it recorded.

An outcome travels back to the manager that proposed it (``Outcome.to_wire``
is what the dedup table keeps, so a retried proposal gets the same answer); an
error travels as its code, which ``keyring.error_class`` turns back into the
same class. Events are what ``events --since`` streams: names and versions,
never values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..keyring import RaftstoreError

__all__ = ["Event", "Outcome"]


class Event(NamedTuple):
    """One change, as ``events --since`` reports it.

    The state machine keeps its history as plain tuples of these fields (see
    ``StateMachine``), which Python's cycle collector does not track.
    """

    version: int
    action: str  # create | update | delete
    table: str
    id: str
    name: str
    time: str = ""  # the proposal's time, as the proposing manager's clock gave it
    actor: str | None = None  # the node id of the manager that proposed it (None in entries from before issue 16)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "action": self.action,
            "table": self.table,
            "id": self.id,
            "name": self.name,
            "time": self.time,
            "actor": self.actor,
        }


@dataclass
class Outcome:
    """What one proposal produced: results per action, or one error for all of them."""

    ok: bool
    results: list[Any] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""

    def to_wire(self) -> list[Any]:
        return [self.ok, self.results, self.error_code, self.error_message]

    @classmethod
    def from_wire(cls, raw: Any) -> "Outcome":
        ok, results, code, message = raw
        return cls(bool(ok), list(results), str(code), str(message))

    @classmethod
    def failure(cls, error: RaftstoreError) -> "Outcome":
        return cls(False, [], error.code, error.message)
