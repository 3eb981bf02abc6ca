"""Untrusted bytes: every defect raises DecodeError with its offset, and nothing else.

The decoder is the first thing a hostile or broken peer reaches, so these tests feed it
truncated, oversized, deeply nested and random input and check that it answers with
`DecodeError` (never IndexError, struct.error, RecursionError or MemoryError), says
where the defect is, and never builds much more than the input's size.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amqp_core import UNDESCRIBED, AMQPType, Array, Described, Message, symbol, ulong
from amqp_core.codec import MAX_NESTING, MAX_ZERO_WIDTH_ELEMENTS, DecodeError, decode, encode


def decode_error(data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    return caught.value


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (b"", 0, "ends where a value should start"),
        (b"\x81\x00\x00", 0, "truncated long"),
        (b"\xa1\x05abc", 1, "longer than"),
        (b"\xb1\x00\x00\x00\x10abc", 1, "longer than"),
        (b"\xb0\xff\xff\xff\xff", 1, "longer than"),
        (b"\xc0\x05\x02\x55", 1, "longer than"),
        (b"\xd0\x00\x00\x00\x10\x00\x00\x00\x09\x40", 1, "longer than"),
        (b"\x0f", 0, "unknown constructor 0x0f"),
        (b"\xc0\x02\x01\xff", 3, "unknown constructor 0xff"),
        (b"\xa1\x02\xff\xfe", 2, "not valid UTF-8"),
        (b"\xa3\x02\xff\xfe", 2, "symbol is not valid UTF-8"),
        (b"\xc0\x03\x09\x40\x40", 3, "count 9 is more than"),
        (b"\xc1\x03\x03\x40\x40", 3, "odd"),
        (b"\xd0\x00\x00\x00\x08\xff\xff\xff\xff\x40\x40\x40\x40", 9, "more than"),
        (b"\xe0\x03\x09\x55\x01", 4, "count 9 is more than"),
        (b"\xe0\x02\x01\x05", 3, "not a primitive type"),
        (b"\xf0\x00\x00\x00\x05\xff\xff\xff\xff\x40", 10, "zero-width"),
        (b"\x40\x40", 1, "trailing"),
        (b"\x56\x02", 1, "neither"),
        (b"\x73\x00\x11\x00\x00", 1, "not a Unicode scalar"),
        (b"\xc0\x03\x01\x40\x40", 4, "not where its size says"),
        (b"\x00\x53", 1, "truncated ulong"),
    ],
)
def test_defects_raise_decode_error_with_offset(data: bytes, offset: int, words: str) -> None:
    error = decode_error(data)
    assert words in str(error)
    assert error.offset == offset
    assert f"at offset {offset}" in str(error)


def test_map_key_that_cannot_be_a_key() -> None:
    # A list as a map key is valid AMQP, but Python cannot hold it in a dict.
    error = decode_error(b"\xc1\x03\x02\x45\x40")
    assert "map key of type list" in str(error)


def test_nesting_limit() -> None:
    deep: list = []
    for _ in range(MAX_NESTING - 1):
        deep = [deep]
    assert decode(encode(deep)) == deep
    too_deep = b"\xc0\x02\x01" * (MAX_NESTING + 1) + b"\x45"
    assert f"nested more than {MAX_NESTING} deep" in str(decode_error(too_deep))


def test_very_deep_input_is_not_a_recursion_error() -> None:
    assert "nested" in str(decode_error(b"\x00" * 100_000 + b"\x40\x40"))
    assert "nested" in str(decode_error(b"\xc0\x02\x01" * 100_000))


@pytest.mark.parametrize(
    "data",
    [
        # Counts that claim far more elements than the bytes hold.
        b"\xd0\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\xf0\x00\x00\x00\x05\xff\xff\xff\xff\x40",
        b"\xf0\x00\x00\x00\x05\x00\x01\x00\x01\x45",
        b"\xd1\x00\x00\x00\x04\xff\xff\xff\xfe",
        b"\xb0\xff\xff\xff\xff" + b"\x00" * 64,
    ],
)
def test_huge_counts_allocate_nothing(data: bytes) -> None:
    tracemalloc.start()
    try:
        decode_error(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_zero_width_array_elements_are_bounded() -> None:
    # Null elements take no bytes: a 10-byte input may claim any count. Up to the
    # documented limit they decode (Proton sends such arrays); beyond it they are refused.
    data = b"\xf0" + struct.pack(">II", 5, 1000) + b"\x40"
    assert decode(data) == Array(UNDESCRIBED, AMQPType.NULL, *[None] * 1000)
    too_many = b"\xf0" + struct.pack(">II", 5, MAX_ZERO_WIDTH_ELEMENTS + 1) + b"\x40"
    assert "zero-width" in str(decode_error(too_many))


def test_decode_memory_is_a_small_multiple_of_the_input() -> None:
    # The worst honest case for Python objects per byte: many one-byte values.
    data = encode(list(range(-100, 100)) * 200)
    tracemalloc.start()
    try:
        decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * len(data)


SAMPLES = [
    None,
    True,
    [1, "two", symbol("three"), b"four", 5.0, uuid.UUID(int=6), ulong(7)],
    {"key": [1, {"nested": b"x" * 300}], symbol("s"): None},
    Described(ulong(0x12), [symbol("a"), Array(UNDESCRIBED, AMQPType.SYMBOL, "x", "y")]),
    Array(ulong(3), AMQPType.LIST, [1], [2, "x"]),
    "é" * 200,
]
VALID = [encode(sample) for sample in SAMPLES] + [
    Message(id=1, body={"sequence": 1}, properties={"colour": "green"}).encode()
]


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[position]
    return bytes(data)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_encodings_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)
    with contextlib.suppress(DecodeError):
        Message().decode(data)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x40", "expected a message section"),
        (b"\x00\x53\x10\x45", "not a message section"),
        (b"\x00\xa3\x03abc\x45", "not a message section"),
        (b"\x00\x53\x73\x45\x00\x53\x70\x45", "header section out of order"),
        (b"\x00\x53\x74\xc1\x01\x00\x00\x53\x74\xc1\x01\x00", "out of order"),
        (b"\x00\x53\x75\xa0\x00\x00\x53\x77\x40", "mixes section kinds"),
        (b"\x00\x53\x73\x40", "holds NoneType, not list"),
        (b"\x00\x53\x73\xc0\x04\x02\x40\x55\x01", "user_id has type int"),
        (b"\x00\x53\x70\xc0\x03\x01\xa1\x00", "durable has type str"),
        (b"\x00\x53\x75\x45", "holds list, not bytes"),
        (b"\x00\x53\x77", "truncated"),
    ],
)
def test_malformed_messages(data: bytes, words: str) -> None:
    with pytest.raises(DecodeError) as caught:
        Message().decode(data)
    assert words in str(caught.value)


def test_message_sections_by_symbolic_descriptor() -> None:
    data = b"\x00\xa3\x14amqp:properties:list\xc0\x03\x01\xa1\x00" + encode(
        Described(symbol("amqp:amqp-value:*"), "hi")
    )
    message = Message()
    message.decode(data)
    assert message.id == "" and message.body == "hi"
