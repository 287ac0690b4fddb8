"""Every class of the error tree crosses the wire as itself (keyring's error-code table).

An error travels as its code (the class name): in a control reply frame, and in
a proposal's outcome from the manager that applied it. A class missing from
``error_class``'s table arrives as the root ``RaftstoreError`` on the other
side, and a caller that catches the specific class never sees it.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import raftstore
from raftstore.keyring import RaftstoreError, error_class
from raftstore.net._frames import decode_payload, encode_frame, error_reply, raise_for_reply
from raftstore.state._state_machine import Outcome


def _every_module() -> None:
    """Import all of raftstore, so that every class of the tree, wherever it is declared, exists."""
    for module in pkgutil.walk_packages(raftstore.__path__, "raftstore."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def _tree(root: type[RaftstoreError]) -> list[type[RaftstoreError]]:
    found = [root]
    for subclass in root.__subclasses__():
        found.extend(_tree(subclass))
    return found


_every_module()
ERRORS = sorted(set(_tree(RaftstoreError)), key=lambda cls: cls.__name__)


def test_the_tree_is_found() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"RaftstoreError", "InvalidRecord", "NotLeader", "RetiredKey"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_the_code_names_the_class(cls: type[RaftstoreError]) -> None:
    assert error_class(cls().code) is cls


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_a_control_reply_raises_the_same_class(cls: type[RaftstoreError]) -> None:
    frame = encode_frame(error_reply(cls("the message")))
    with pytest.raises(RaftstoreError) as caught:
        raise_for_reply(decode_payload(frame[4:]), "peer")
    assert type(caught.value) is cls
    assert caught.value.message == "the message"


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_an_outcome_carries_the_class(cls: type[RaftstoreError]) -> None:
    outcome = Outcome.from_wire(decode_payload(encode_frame(Outcome.failure(cls()).to_wire())[4:]))
    assert error_class(outcome.error_code) is cls
    assert outcome.error_message == cls.default_message
