"""Length-prefixed msgpack frames: the one wire format of raftstore.

Every byte stream this project speaks (the control socket, the node-to-manager
API and Raft traffic between managers) is a sequence of frames::

    length (4 bytes, big-endian) | msgpack document

A frame larger than the reader's limit is a protocol error, so that a peer
cannot make us allocate without bound; the same limit bounds every msgpack
length inside it (``max_bin_len`` and friends), and a reader may give a
deadline for the whole frame, so that a peer trickling bytes cannot hold a
reader past it. A peer whose identity is not known yet gets
``STRANGER_FRAME_BYTES``. msgpack, not pickle: a frame can only ever decode to
plain data.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import msgpack

from ..keyring import ProtocolError, RaftstoreError, error_class

__all__ = [
    "MAX_FRAME_BYTES",
    "STRANGER_FRAME_BYTES",
    "encode_frame",
    "decode_payload",
    "read_frame",
    "write_frame",
    "FrameBuffer",
    "error_reply",
    "raise_for_reply",
]

_LENGTH = struct.Struct(">I")

#: Large enough for the biggest Raft append (see the adapter's batch limit).
MAX_FRAME_BYTES = 64 * 2**20

#: Before a peer is identified: the largest request a stranger needs is a
#: ``node.renew_expired`` (chain, CSR and proof: 1.9 KB with the cluster's
#: P-256 keys, measured), a ``join`` is 0.8 KB and a ``ca.get`` reply 0.6 KB.
#: The margin leaves room for longer chains during a root rotation.
STRANGER_FRAME_BYTES = 16 * 2**10


def encode_frame(obj: Any) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return _LENGTH.pack(len(payload)) + payload


def decode_payload(payload: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """Decode one frame's document; no string, bin, ext, array or map may claim more than ``max_bytes``."""
    try:
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=False,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_ext_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=max_bytes,
        )
    except Exception as error:  # msgpack raises several unrelated types
        raise ProtocolError(f"malformed frame: {type(error).__name__}") from None


def _read_exactly(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks = []
    while n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("the peer's time is up")
            sock.settimeout(remaining)
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(
    sock: socket.socket, max_bytes: int = MAX_FRAME_BYTES, deadline: float | None = None, prefix: bytes = b""
) -> Any:
    """Read one frame from a blocking socket, by ``deadline`` (``time.monotonic()``) if given.

    ``prefix`` is the frame's first bytes when the caller already read them
    (the control port reads one to tell msgpack from HTTP).

    A frame over ``max_bytes`` is refused from its length prefix, before a
    byte of it is read.

    Raises ConnectionError on EOF, ProtocolError on a malformed or oversized
    frame, and socket.timeout when the deadline passes.
    """
    (length,) = _LENGTH.unpack(prefix + _read_exactly(sock, 4 - len(prefix), deadline))
    if length > max_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    return decode_payload(_read_exactly(sock, length, deadline), max_bytes)


def write_frame(sock: socket.socket, obj: Any) -> None:
    sock.sendall(encode_frame(obj))


class FrameBuffer:
    """Incremental decoder for non-blocking readers: feed bytes, take whole frames."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def frames(self) -> list[Any]:
        """Every complete frame received so far (raises ProtocolError on a bad one)."""
        out = []
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= 4:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max}")
            if len(buf) - pos - 4 < length:
                break
            out.append(decode_payload(bytes(buf[pos + 4 : pos + 4 + length]), self._max))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return out


def error_reply(error: RaftstoreError) -> dict[str, Any]:
    """The reply frame for a failed request: the error's class travels as its code."""
    return {"ok": False, "error": {"code": error.code, "message": error.message}}


def raise_for_reply(reply: Any, peer: str) -> dict[str, Any]:
    """A reply frame, or the error it carries raised as the same class on this side."""
    if not isinstance(reply, dict):
        raise ProtocolError(f"malformed reply from {peer}")
    if not reply.get("ok"):
        error = reply.get("error") or {}
        raise error_class(str(error.get("code", "")))(str(error.get("message", "request failed")))
    return reply
