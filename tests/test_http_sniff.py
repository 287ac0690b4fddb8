"""The control port tells HTTP from msgpack by one byte: no frame a listener accepts looks like HTTP."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raftstore.net import encode_frame
from raftstore.net._frames import MAX_FRAME_BYTES
from raftstore.net._http import looks_like_http


@given(st.dictionaries(st.text(max_size=20), st.one_of(st.binary(max_size=200), st.integers(-2**63, 2**64 - 1), st.text())))
def test_no_frame_starts_like_http(document: dict) -> None:
    assert not looks_like_http(encode_frame(document)[:1])


def test_the_largest_accepted_frame_cannot_start_like_http() -> None:
    assert MAX_FRAME_BYTES.to_bytes(4, "big")[0] < 0x41


def test_every_http_method_starts_like_http() -> None:
    for verb in ("GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"):
        assert looks_like_http(verb.encode()[:1])
    assert not looks_like_http(b"") and not looks_like_http(b"\x00") and not looks_like_http(b"g")
