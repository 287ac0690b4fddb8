"""raftstore.state: the replicated state machine, the same bytes on every manager that applies the same log.

It owns what a Raft entry of ours says once opened (``encode_entry`` and
``decode_proposal``: a batch of proposals), the actions a transaction is made
of (the ``*_action`` builders, and what applying each does), what applying
produced (``Outcome``, events), the tables themselves (``StateMachine``), and
the rules for objects' names, data, labels and durations. It does no I/O and
reads no clock (STYLE rule 1): the proposer stamps ``now`` into each
proposal. It imports only ``keyring``, for the error tree.
"""

from __future__ import annotations

from ..keyring import surface


# The public names of each module, listed here so that __all__ needs no import: a
# name loads with its module on first use (tests/test_package_surfaces.py checks
# this table against each module's __all__).
_PUBLIC = {
    "_state_machine": ["StateMachine"],
    "_proposals": ["MAX_TRANSACTION_BYTES", "encode_actions", "encode_proposal", "encode_entry", "decode_proposal"],
    "_actions": ["TABLES", "create_action", "update_action", "delete_action", "put_action", "cas_action", "kv_delete_action", "rotate_dek_action", "read_action", "noop_action"],
    "_outcomes": ["Outcome", "Event"],
    "_objects": ["validate_name", "validate_data", "parse_labels", "public_view"],
    "_durations": ["parse_duration", "format_duration"],
    "_grants": ["granted_objects", "read_granted"],
}

_LAZY = {name: f".{module}" for module, names in _PUBLIC.items() for name in names}

__all__ = [*_LAZY]


__getattr__, __dir__ = surface(__name__, _LAZY)
