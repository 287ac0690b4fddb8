"""The plaintext of one Raft entry of ours: a batch of proposals, each a transaction of actions.

This module alone lays it out and reads it back (msgpack)::

    entry    = [proposal, ...]
    proposal = [proposal id (16 bytes), now (str), actions (list), proposer (str)]

``proposer`` is the node id of the manager that proposed it; entries from
before issue 16 have no fourth field and stay readable. ``now`` is the
proposing manager's clock for the whole batch. The actions are laid out by
``_actions``. The proposer encodes each transaction once (``encode_actions``,
which also sizes it against ``MAX_TRANSACTION_BYTES``) and joins the encoded
pieces into an entry without encoding them again; the bytes are exactly
``msgpack.packb`` of the whole list.
"""

from __future__ import annotations

from typing import Any, Sequence

import msgpack

__all__ = ["MAX_TRANSACTION_BYTES", "encode_actions", "encode_proposal", "encode_entry", "decode_proposal"]

#: One transaction, msgpack-encoded, is at most 1.5 MiB.
MAX_TRANSACTION_BYTES = 3 * 2**19


def _array_header(length: int) -> bytes:
    return msgpack.Packer(use_bin_type=True).pack_array_header(length)


def encode_actions(actions: list[Any]) -> bytes:
    """One transaction's actions, encoded as they sit inside an entry."""
    return msgpack.packb(actions, use_bin_type=True)


def encode_proposal(proposal_id: bytes, now: str, encoded_actions: bytes, proposer: str) -> bytes:
    """One proposal around already encoded actions; an empty ``proposer`` leaves the field out."""
    fields = [msgpack.packb(proposal_id, use_bin_type=True), msgpack.packb(now, use_bin_type=True), encoded_actions]
    if proposer:
        fields.append(msgpack.packb(proposer, use_bin_type=True))
    return _array_header(len(fields)) + b"".join(fields)


def encode_entry(encoded_proposals: Sequence[bytes]) -> bytes:
    """The plaintext of one entry: the proposals (from ``encode_proposal``), in order."""
    return _array_header(len(encoded_proposals)) + b"".join(encoded_proposals)


def decode_proposal(raw: Sequence[Any]) -> tuple[bytes, str, Any, str | None]:
    """One proposal of a decoded entry: ``[id, now, actions]``, or ``[id, now, actions, proposer]`` (issue 16 on).

    Entries written before the proposer's id was carried stay readable; they have no actor.
    """
    proposal_id, now, actions, *rest = raw
    if len(rest) > 1:
        raise ValueError(f"a proposal has 3 or 4 fields, not {len(raw)}")
    return bytes(proposal_id), str(now), actions, (str(rest[0]) if rest else None)
