"""Raft's append-entries rule (§5.3) for a follower, and what a snapshot chunk may not do.

pysyncobj cuts a follower's log after ``prevLogIdx`` on every append-entries
and re-adds the message's entries, even when they match, so a late or
duplicated message, or a crash before the re-append is synced, makes a
follower forget entries it acknowledged. Here a message is rewritten before
pysyncobj handles it (the seam is ``RaftCore`` in ``_seams.py``): skip what we
hold, cut only from the first conflict, never at or below the commit index
(refused with a critical line, nothing changed), acknowledge and commit only
what the message proved. A snapshot chunk moves the commit index not at all.

Everything here is pure: it reads the journal and returns a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["AppendPlan", "plan_append", "rewrite_append_entries", "hold_commit_for_snapshot_chunk"]

log = logging.getLogger("raftstore.raft")


@dataclass(frozen=True)
class AppendPlan:
    """How a follower takes an append-entries whose previous entry it holds (Raft §5.3).

    ``entries`` are the ones to write after ``prev_index``: the message's entries
    minus the leading ones already in the log. ``conflict`` is the first index
    whose term differs from ours (the log is cut there, and only there).
    ``verified`` is the last index known to match the leader's log: the reply
    acknowledges up to it and the commit index may not pass it, because the
    entries after it in our log, if any, are not known to be the leader's.
    """

    prev_index: int
    prev_term: int
    entries: list[Any]
    conflict: int | None
    verified: int


def plan_append(
    term_at: Callable[[int], int], last_index: int, prev_index: int, prev_term: int, entries: list[Any]
) -> AppendPlan:
    """Skip the entries whose index and term we hold; find the first conflict, if any.

    ``term_at(i)`` is the term of our entry ``i`` (``prev_index`` <= i <= ``last_index``).
    """
    skip, conflict = 0, None
    for _command, index, term in entries:
        if index > last_index:
            break
        if term_at(index) != term:
            conflict = index
            break
        skip += 1
    anchor_index, anchor_term = (entries[skip - 1][1], entries[skip - 1][2]) if skip else (prev_index, prev_term)
    remaining = list(entries[skip:])
    if not remaining and anchor_index < last_index:
        # Everything in the message is already here and our log goes on: write
        # nothing and keep the tail (pysyncobj would cut it after the anchor).
        anchor_index, anchor_term = last_index, term_at(last_index)
    return AppendPlan(anchor_index, anchor_term, remaining, conflict, prev_index + len(entries))


def rewrite_append_entries(
    message: dict[str, Any], journal: Sequence[Any], current_term: int, commit_index: int
) -> tuple[dict[str, Any] | None, int | None]:
    """Own Raft's append-entries rule; pysyncobj's would cut every entry after ``prevLogIdx``.

    Returns the message to hand pysyncobj, rewritten so that it starts after
    the entries we already hold (pysyncobj then cuts only from the first
    conflict, or not at all), and the next index our reply may acknowledge
    (None: pysyncobj's own). The message is None when it would cut a
    committed entry: it is dropped.
    """
    prev_index = message["prevLogIdx"]
    if message["term"] < current_term or not len(journal) or prev_index is None:
        return message, None
    first, last = journal[0][1], journal[-1][1]
    if not first <= prev_index <= last or journal[prev_index - first][2] != message["prevLogTerm"]:
        return message, None  # pysyncobj asks the leader to go back
    entries = message.get("entries") or []
    plan = plan_append(lambda index: journal[index - first][2], last, prev_index, message["prevLogTerm"], entries)
    if plan.conflict is not None and plan.conflict <= commit_index:
        log.critical(
            "refusing an append-entries that conflicts with committed entry %d (commit index %d, term %d): "
            "the log is left as it is",
            plan.conflict,
            commit_index,
            message["term"],
        )
        return None, None
    rewritten = dict(
        message,
        prevLogIdx=plan.prev_index,
        prevLogTerm=plan.prev_term,
        entries=plan.entries,
        commit_index=min(message["commit_index"], plan.verified),
    )
    return rewritten, plan.verified + 1


def hold_commit_for_snapshot_chunk(message: dict[str, Any], commit_index: int) -> dict[str, Any]:
    """A snapshot chunk does not move the commit index.

    It proves nothing about our log, yet pysyncobj would raise the commit
    index to min(the leader's, our last index) on every chunk, and so apply
    entries of ours that were never committed (a deposed leader's). Once the
    snapshot is installed, the next append-entries moves it on.
    """
    return dict(message, commit_index=min(message["commit_index"], commit_index))
