"""A linearizability checker for histories of key/value operations (Wing & Gong, as Porcupine does it).

A history is a list of ``Operation``: what a client invoked, when it was
invoked and when it returned (``None``: it timed out, so it may or may not
have taken effect), and what it returned. Each key is an independent register
(P-compositionality), checked on its own:

- ``put(v)`` -> ok
- ``get()`` -> the value, or ``None`` when the key does not exist
- ``cas(expected, v)`` -> ok or failed (``expected`` is the value the client
  read; raftstore compares versions, and every written value is unique, so a
  version names exactly one value)
- ``delete()`` -> ok

The search (Wing & Gong with Lowe's memoization): walk the events in time
order; at each call try to linearize any operation that has been called and
whose effect is possible in the current state, depth first, and remember each
(set of linearized operations, state) already seen. A timed-out operation
returns at infinity: it may be linearized anywhere after its call, including
after everything else (where it changes nothing anyone observed).

On rejection ``check`` also finds a smallest failing window: the shortest run
of operations (in call order) that is not linearizable on its own, starting
from any state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable

__all__ = ["Operation", "Verdict", "check", "check_key"]

_ANY = object()  # the state at the start of a window: any value, fixed by the first observation
_INFINITY = float("inf")


@dataclass(frozen=True)
class Operation:
    client: int
    key: str
    kind: str  # put | get | cas | delete
    argument: Any  # put: value; cas: (expected, new); get/delete: None
    call: float
    ret: float | None  # None: timed out, outcome unknown
    result: Any  # put/delete: "ok"; get: value or None; cas: "ok" | "failed"; unknown when ret is None

    def describe(self) -> str:
        end = "timeout" if self.ret is None else f"{self.ret:.6f}"
        return f"[client {self.client}] {self.kind}({self.key}, {self.argument!r}) -> {self.result!r} @ {self.call:.6f}..{end}"


@dataclass
class Verdict:
    ok: bool
    operations: int
    keys: int
    failing_key: str | None = None
    window: list[Operation] = field(default_factory=list)

    def explain(self) -> str:
        if self.ok:
            return f"linearizable: {self.operations} operations on {self.keys} keys"
        lines = [f"NOT linearizable on key {self.failing_key!r}; smallest failing window "
                 f"({len(self.window)} operations):"]
        lines += ["  " + op.describe() for op in self.window]
        return "\n".join(lines)


def _step(state: Any, op: Operation) -> tuple[bool, Any]:
    """Can ``op`` take effect in ``state`` with the result it returned? And the state after it."""
    unknown = op.ret is None
    if op.kind == "put":
        return True, op.argument
    if op.kind == "delete":
        return True, None
    if op.kind == "get":
        if unknown:
            return True, state
        if state is _ANY:
            return True, op.result
        return op.result == state, state
    if op.kind == "cas":
        expected, new = op.argument
        if state is _ANY:
            if unknown:
                return True, _ANY
            return True, (new if op.result == "ok" else _ANY)
        matches = state == expected
        if unknown:
            return True, (new if matches else state)
        if op.result == "ok":
            return matches, new
        return not matches, state
    raise ValueError(f"unknown operation kind {op.kind!r}")


def _freeze(state: Any) -> Hashable:
    return ("<any>",) if state is _ANY else ("v", state)


def _linearizable(ops: list[Operation], initial: Any) -> bool:
    if not ops:
        return True
    # Events in time order; at equal times returns come after calls (the safe choice).
    events: list[tuple[float, int, int]] = []  # (time, 0=call/1=return, op index)
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        events.append((_INFINITY if op.ret is None else op.ret, 1, i))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    # A doubly linked list of events, so that linearized operations can be
    # lifted out and put back when the search backtracks.
    n = len(events)
    nxt: list[int | None] = [i + 1 if i + 1 < n else None for i in range(n)]
    prv: list[int | None] = [i - 1 if i > 0 else None for i in range(n)]
    head: int | None = 0  # index into events; None when every operation is linearized
    match = {}
    for position, (_, is_return, op_index) in enumerate(events):
        if is_return:
            match[op_index] = position
    start_of: dict[int, int] = {op_index: pos for pos, (_, is_ret, op_index) in enumerate(events) if not is_ret}

    # Dancing links: a removed node keeps its own pointers, so nodes put back
    # in the reverse order of their removal restore the list exactly.
    def lift(op_index: int) -> None:
        nonlocal head
        for pos in (start_of[op_index], match[op_index]):
            p, q = prv[pos], nxt[pos]
            if p is None:
                head = q
            else:
                nxt[p] = q
            if q is not None:
                prv[q] = p

    def unlift(op_index: int) -> None:
        nonlocal head
        for pos in (match[op_index], start_of[op_index]):
            p, q = prv[pos], nxt[pos]
            if p is None:
                head = pos
            else:
                nxt[p] = pos
            if q is not None:
                prv[q] = pos

    seen: set[tuple[int, Hashable]] = set()
    linearized = 0  # bitset of op indices
    state = initial
    stack: list[tuple[int, Any]] = []
    entry = head
    while head is not None:
        if entry is None:
            return False
        _, is_return, op_index = events[entry]
        if not is_return:
            ok, new_state = _step(state, ops[op_index])
            if ok:
                key = (linearized | (1 << op_index), _freeze(new_state))
                if key not in seen:
                    seen.add(key)
                    stack.append((op_index, state))
                    linearized |= 1 << op_index
                    state = new_state
                    lift(op_index)
                    entry = head
                    continue
            entry = nxt[entry]
        else:
            # A return whose call has not been linearized: backtrack.
            if not stack:
                return False
            op_index, previous = stack.pop()
            linearized &= ~(1 << op_index)
            state = previous
            unlift(op_index)
            entry = nxt[start_of[op_index]]
    return True


def check_key(ops: list[Operation], initial: Any = None) -> bool:
    return _linearizable(sorted(ops, key=lambda o: o.call), initial)


def _smallest_window(ops: list[Operation]) -> list[Operation]:
    ops = sorted(ops, key=lambda o: o.call)
    lo, hi = 0, len(ops)
    # Shrink from the left, then from the right, while the rest still fails from any state.
    while lo < hi - 1 and not _linearizable(ops[lo + 1 : hi], _ANY):
        lo += 1
    while hi > lo + 1 and not _linearizable(ops[lo : hi - 1], _ANY):
        hi -= 1
    window = ops[lo:hi]
    if _linearizable(window, _ANY):  # only fails from the true start: keep the prefix
        return ops[:hi]
    return window


def check(history: Iterable[Operation]) -> Verdict:
    by_key: dict[str, list[Operation]] = {}
    total = 0
    for op in history:
        by_key.setdefault(op.key, []).append(op)
        total += 1
    for key, ops in sorted(by_key.items()):
        if not check_key(ops):
            return Verdict(False, total, len(by_key), key, _smallest_window(ops))
    return Verdict(True, total, len(by_key))
