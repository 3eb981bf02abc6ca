"""Large messages through amqp_core: put together a frame at a time without copying the
body whole (`MessageReader`, `Message.encode_parts`), and sent and received by the
tutorial's API and `amqp_core.aio` without holding the event loop long."""

from __future__ import annotations

import random
import time
import tracemalloc

import amqp_strategies as s
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amqp_core import DataSections, Message, symbol
from amqp_core.codec import DecodeError
from amqp_core.message import LARGE_BINARY, MessageReader

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MEBIBYTE = 1024 * 1024


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


#: Binaries on both sides of LARGE_BINARY, the size from which a body is its own piece.
sized_binaries = st.one_of(
    s.binaries,
    st.builds(random_bytes, st.integers(LARGE_BINARY - 2, 3 * LARGE_BINARY), st.integers(0, 99)),
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Messages whose bodies are often large binaries: one data section, several (large
    and small mixed), or an amqp-value binary; other bodies too, and sections around."""
    kind = draw(st.sampled_from(["data", "sections", "binary value", "value"]))
    if kind == "data":
        message = Message(body=draw(sized_binaries), inferred=True)
    elif kind == "sections":
        message = Message(body=DataSections(draw(st.lists(sized_binaries, min_size=2, max_size=4))))
    elif kind == "binary value":
        message = Message(body=draw(sized_binaries))
    else:
        message = Message(body=draw(s.values))
    if draw(st.booleans()):
        message.properties = draw(s.application_properties)
        message.subject = draw(s.c_texts)
        message.durable = True
    if draw(st.booleans()):
        message.annotations = draw(s.annotation_maps)
    if draw(st.booleans()):
        message.footer = draw(s.annotation_maps)
    return message


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length), as frames cut it."""
    offsets = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:end] for start, end in zip(offsets, offsets[1:], strict=False)]


def read(parts: list[bytes]) -> Message:
    reader = MessageReader()
    for part in parts:
        reader.feed(part)
    return reader.message()


def decoded(data: bytes) -> Message:
    message = Message()
    message.decode(data)
    return message


# -- encoding in pieces ---------------------------------------------------------------------


@SETTINGS
@given(messages())
def test_the_pieces_of_an_encoding_are_the_encoding(message: Message) -> None:
    parts = message.encode_parts()
    assert b"".join(parts) == message.encode()
    body = message.body
    large = [part for part in parts if len(part) >= LARGE_BINARY]
    if type(body) is bytes and len(body) >= LARGE_BINARY:
        assert any(part is body for part in parts), "a large body is a piece of its own"
    else:
        assert all(part is not body for part in large)


def test_a_large_body_is_its_own_piece_not_a_copy() -> None:
    body = random_bytes(MEBIBYTE)
    parts = Message(body=body, subject="s", footer={symbol("f"): 1}, inferred=True).encode_parts()
    assert len(parts) == 3 and parts[1] is body


# -- reading in pieces ----------------------------------------------------------------------


@SETTINGS
@given(messages(), st.lists(st.integers(0, 2**20), max_size=12))
def test_a_message_read_in_pieces_is_the_message_decoded_whole(
    message: Message, cuts: list[int]
) -> None:
    data = message.encode()
    expected = decoded(data)
    got = read(pieces(data, cuts))
    assert type(got.body) is type(expected.body)
    assert got.encode() == expected.encode()  # NaN-proof equality


@SETTINGS
@given(messages(), st.lists(st.integers(0, 2**20), max_size=6), st.data())
def test_bytes_that_are_not_a_message_fail_in_pieces_as_they_fail_whole(
    message: Message, cuts: list[int], data: st.DataObject
) -> None:
    encoded = bytearray(message.encode() or b"\x00")
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, min(len(encoded) - 1, 64)))
        encoded[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del encoded[data.draw(st.integers(0, len(encoded))) :]
    mangled = bytes(encoded)
    try:
        expected: Message | DecodeError = decoded(mangled)
    except DecodeError as error:
        expected = error
    try:
        got: Message | DecodeError = read(pieces(mangled, cuts))
    except DecodeError as error:
        got = error
    if isinstance(expected, DecodeError):
        assert isinstance(got, DecodeError), got
    else:
        assert not isinstance(got, DecodeError), got
        assert got.encode() == expected.encode()


def test_a_large_body_read_in_frames_is_collected_once() -> None:
    """A 20 MB body fed in 256 KiB frames costs one body's worth of memory: it is
    collected into its own bytes as it comes, not gathered and then copied out."""
    body = random_bytes(20 * MEBIBYTE)
    data = Message(body=body, inferred=True, subject="large").encode()
    frames = pieces(data, list(range(0, len(data), 256 * 1024)))
    tracemalloc.start()
    try:
        message = read(frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.body == body and message.subject == "large"
    assert peak < 1.2 * len(body), f"{peak / len(body):.2f} times the body"


def test_a_message_that_ends_inside_its_body_is_a_decode_error() -> None:
    data = Message(body=random_bytes(MEBIBYTE), inferred=True).encode()
    reader = MessageReader()
    reader.feed(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="short of its body"):
        reader.message()


def test_deeply_nested_input_costs_no_more_in_pieces() -> None:
    """Stepping over sections is bounded: 8 MB of nested described-value constructors,
    fed a kilobyte at a time, are not rescanned at every piece."""
    hostile = b"\x00\x53\x77" + b"\x00" * (8 * MEBIBYTE)
    started = time.monotonic()
    reader = MessageReader()
    for start in range(0, len(hostile), 1024):
        reader.feed(hostile[start : start + 1024])
    fed = time.monotonic() - started
    with pytest.raises(DecodeError):
        reader.message()
    assert fed < 10, f"{fed:.1f} s to feed 8 MB"
