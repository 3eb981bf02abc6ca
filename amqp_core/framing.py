"""AMQP 1.0 protocol headers and frames (spec part 2.2 and 2.3), without any I/O.

A connection starts with an 8-byte protocol header from each side, then a stream of
frames: a 4-byte size, a data offset (in 4-byte words), a type (AMQP or SASL), a
channel, and a body that holds one performative followed, for transfers, by payload.
`FrameReader` cuts frames out of whatever bytes arrive; `encode_frame` builds them.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from .codec import DecodeError, encode_into, read_value

__all__ = [
    "AMQP_HEADER",
    "FRAME_AMQP",
    "FRAME_SASL",
    "MIN_MAX_FRAME_SIZE",
    "SASL_HEADER",
    "Frame",
    "FrameReader",
    "FramingError",
    "encode_empty_frame",
    "encode_frame",
]

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
HEADER_SIZE = 8

FRAME_AMQP = 0x00
FRAME_SASL = 0x01

#: The smallest max-frame-size a peer may announce (spec 2.7.1, open).
MIN_MAX_FRAME_SIZE = 512

_FRAME_HEADER = struct.Struct(">IBBH")
_pack_frame_header = _FRAME_HEADER.pack
_unpack_frame_header = _FRAME_HEADER.unpack_from


class FramingError(Exception):
    """The byte stream is not a valid sequence of frames. The connection cannot go on:
    it must be closed with amqp:connection:framing-error."""


class Frame(NamedTuple):
    """One frame: `performative` is the decoded described value (None for an empty
    frame, which is a heartbeat), `payload` the bytes after it."""

    type: int
    channel: int
    performative: Any
    payload: bytes


def encode_frame(
    out: bytearray,
    frame_type: int,
    channel: int,
    performative: Any,
    payload: bytes | memoryview = b"",
) -> None:
    """Append one frame holding `performative` (and `payload`) to `out`."""
    start = len(out)
    out += b"\x00\x00\x00\x00\x02"
    out.append(frame_type)
    out += channel.to_bytes(2, "big")
    encode_into(out, performative)
    if payload:
        out += payload
    out[start : start + 4] = (len(out) - start).to_bytes(4, "big")


def encode_empty_frame() -> bytes:
    """An AMQP frame with no body: the heartbeat (spec 2.4.5)."""
    return _pack_frame_header(8, 2, FRAME_AMQP, 0)


class FrameReader:
    """Collects incoming bytes and cuts them into frames.

    `max_frame_size` is the limit we announced; a bigger frame is a framing error (the
    peer broke the agreement, and we must not buffer without bound).
    """

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def read_header(self) -> bytes | None:
        """Take an 8-byte protocol header, or None while fewer bytes have arrived."""
        if len(self._buffer) < HEADER_SIZE:
            return None
        header = bytes(self._buffer[:HEADER_SIZE])
        del self._buffer[:HEADER_SIZE]
        return header

    def read_frames(self, limit: int = 2**31) -> list[Frame]:
        """Take the complete frames buffered so far, at most `limit` of them."""
        buffer = self._buffer
        frames: list[Frame] = []
        pos = 0
        available = len(buffer)
        with memoryview(buffer) as view:
            while available - pos >= 8 and len(frames) < limit:
                size, data_offset, frame_type, channel = _unpack_frame_header(buffer, pos)
                if size > self.max_frame_size:
                    raise FramingError(
                        f"frame of {size} bytes exceeds the max-frame-size of {self.max_frame_size}"
                    )
                if data_offset < 2 or data_offset * 4 > size:
                    raise FramingError(f"frame data offset {data_offset} does not fit size {size}")
                if available - pos < size:
                    break
                end = pos + size
                frames.append(_frame(view, pos + data_offset * 4, end, frame_type, channel))
                pos = end
        if pos:
            del buffer[:pos]
        return frames


#: A frame's body is copied out of the read buffer whole when it is this small; a
#: larger one has its performative read from its first bytes, and its payload copied
#: out once (a transfer's payload is most of a 256 KiB frame).
_SMALL_FRAME = 4096


def _frame(view: memoryview, start: int, end: int, frame_type: int, channel: int) -> Frame:
    if start == end:
        return Frame(frame_type, channel, None, b"")
    if end - start > _SMALL_FRAME:
        head = bytes(view[start : start + _SMALL_FRAME])
        try:
            performative, after = read_value(head, 0)
        except DecodeError:
            pass  # a performative longer than that (or a bad one): read the whole body
        else:
            return Frame(frame_type, channel, performative, bytes(view[start + after : end]))
    body = bytes(view[start:end])
    try:
        performative, after = read_value(body, 0)
    except DecodeError as error:
        raise FrameDecodeError(str(error)) from None
    return Frame(frame_type, channel, performative, body[after:])


class FrameDecodeError(FramingError):
    """A frame's performative is not valid AMQP: amqp:decode-error."""
