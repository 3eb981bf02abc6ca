"""amqp_core.codec against Qpid Proton's codec: each decodes the other's bytes to the same
values of the same AMQP types, scalars encode to identical bytes, and we use the compact
encodings where they apply."""

from __future__ import annotations

import math
import struct
import uuid
from typing import Any

import amqp_strategies as s
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amqp_core import (
    UNDESCRIBED,
    AMQPType,
    Array,
    Described,
    byte,
    char,
    decimal32,
    decimal64,
    decimal128,
    float32,
    int32,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)
from amqp_core.codec import decode, encode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COMPOUND_SETTINGS = settings(SETTINGS, max_examples=80)
SCALAR_SETTINGS = settings(SETTINGS, max_examples=40)


# ---------------------------------------------------------------------------------------
# The helpers themselves


def test_tags_tell_types_apart() -> None:
    """The comparison must distinguish every pair of AMQP types of equal Python value."""
    ones = [1, int32(1), uint(1), ulong(1), ubyte(1), byte(1), short(1), ushort(1)]
    ones += [timestamp(1), decimal32(1), decimal64(1), True, 1.0, float32(1.0)]
    tags = {s.amqp_tag(one) for one in ones}
    assert len(tags) == len(ones)
    texts = ["a", symbol("a"), char("a"), b"a"]
    assert len({s.amqp_tag(text) for text in texts}) == len(texts)
    assert s.amqp_tag(0.0) != s.amqp_tag(-0.0)
    assert s.amqp_tag(math.nan) == s.amqp_tag(-math.nan)
    assert s.amqp_tag(decimal128(bytes(16))) != s.amqp_tag(bytes(16))
    assert s.amqp_tag(Array(None, AMQPType.INT)) != s.amqp_tag(Array(UNDESCRIBED, AMQPType.INT))
    assert s.amqp_tag([1]) != s.amqp_tag(Array(UNDESCRIBED, AMQPType.LONG, 1))
    assert s.amqp_tag({1: 2}) != s.amqp_tag({2: 1})


@COMPOUND_SETTINGS
@given(s.values)
def test_conversions_agree_with_tags(value: Any) -> None:
    proton_value = s.to_proton(value)
    s.assert_same(proton_value, value)
    s.assert_same(s.from_proton(proton_value), value)


# ---------------------------------------------------------------------------------------
# Interoperability


@SETTINGS
@given(s.pairs())
def test_proton_encoding_decodes_with_ours(pair: tuple[Any, Any]) -> None:
    ours, theirs = pair
    s.assert_same(decode(s.proton_encode(theirs)), ours)


@SETTINGS
@given(s.pairs())
def test_our_encoding_decodes_with_proton(pair: tuple[Any, Any]) -> None:
    ours, _ = pair
    assume(not s.proton_misreads(ours))
    s.assert_same(s.proton_decode(encode(ours)), ours)


@COMPOUND_SETTINGS
@given(s.pairs(s.compounds))
def test_compounds_interoperate(pair: tuple[Any, Any]) -> None:
    """Lists, maps, arrays and described values at the top level, both ways."""
    ours, theirs = pair
    s.assert_same(decode(s.proton_encode(theirs)), ours)
    assume(not s.proton_misreads(ours))
    s.assert_same(s.proton_decode(encode(ours)), ours)


@COMPOUND_SETTINGS
@given(st.dictionaries(st.one_of(s.binaries, s.map_keys), s.small_values, max_size=5))
def test_binary_map_keys(value: dict[Any, Any]) -> None:
    """Proton cannot decode a map with a binary key (its binary is an unhashable
    memoryview), so this direction is checked on its own: Proton encodes, we decode."""
    s.assert_same(decode(s.proton_encode(s.to_proton(value))), value)
    s.assert_same(decode(encode(value)), value)


@pytest.mark.parametrize("amqp_type", s.SCALAR_TYPES, ids=lambda kind: kind.name)
@SCALAR_SETTINGS
@given(data=st.data())
def test_scalar_bytes_identical_to_protons(amqp_type: AMQPType, data: st.DataObject) -> None:
    ours = data.draw(s.SCALARS[amqp_type])
    theirs = s.to_proton(ours)
    assert encode(ours).hex() == s.proton_encode(theirs).hex()


@pytest.mark.parametrize("amqp_type", s.SCALAR_TYPES, ids=lambda kind: kind.name)
@SCALAR_SETTINGS
@given(data=st.data())
def test_scalar_round_trip_each_type(amqp_type: AMQPType, data: st.DataObject) -> None:
    ours = data.draw(s.SCALARS[amqp_type])
    s.assert_same(decode(encode(ours)), ours)
    s.assert_same(decode(s.proton_encode(s.to_proton(ours))), ours)


@SETTINGS
@given(s.values)
def test_round_trip_is_identity(value: Any) -> None:
    encoded = encode(value)
    decoded = decode(encoded)
    s.assert_same(decoded, value)
    assert encode(decoded) == encoded


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        -math.nan,
        struct.unpack(">d", bytes.fromhex("7ff8000000000123"))[0],  # a NaN with a payload
        float32(math.nan),
    ],
    ids=["nan", "minus-nan", "nan-payload", "float32-nan"],
)
def test_nan_bytes_survive(value: float) -> None:
    """NaN is unequal to itself, so compare it by its bits: ours, Proton's, and ours
    after a round trip."""
    encoded = encode(value)
    assert encoded == s.proton_encode(s.to_proton(value))
    decoded = decode(encoded)
    assert math.isnan(decoded)
    assert type(decoded) is type(value)
    assert encode(decoded) == encoded


# ---------------------------------------------------------------------------------------
# Compact encodings


def lead(value: Any, length: int = 1) -> str:
    return encode(value)[:length].hex()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "40"),
        (True, "41"),
        (False, "42"),
        (uint(0), "43"),
        (uint(1), "5201"),
        (uint(255), "52ff"),
        (uint(256), "7000000100"),
        (ulong(0), "44"),
        (ulong(1), "5301"),
        (ulong(255), "53ff"),
        (ulong(256), "800000000000000100"),
        (int32(0), "5400"),
        (int32(127), "547f"),
        (int32(-128), "5480"),
        (int32(128), "7100000080"),
        (int32(-129), "71ffffff7f"),
        (0, "5500"),
        (127, "557f"),
        (-128, "5580"),
        (128, "810000000000000080"),
        (-129, "81ffffffffffffff7f"),
        (2**63 - 1, "817fffffffffffffff"),
        (-(2**63), "818000000000000000"),
        (ubyte(255), "50ff"),
        (byte(-1), "51ff"),
        (ushort(65535), "60ffff"),
        (short(-32768), "618000"),
        (float32(1.5), "723fc00000"),
        (1.5, "823ff8000000000000"),
        (-0.0, "828000000000000000"),
        (math.inf, "827ff0000000000000"),
        (char("\U0010ffff"), "730010ffff"),
        (char("é"), "73000000e9"),
        (timestamp(-1), "83ffffffffffffffff"),
        (decimal32(1), "7400000001"),
        (decimal64(1), "840000000000000001"),
        (decimal128(bytes(range(16))), "94" + bytes(range(16)).hex()),
        (uuid.UUID(int=1), "98" + "00" * 15 + "01"),
        ([], "45"),
    ],
)
def test_exact_scalar_encodings(value: Any, expected: str) -> None:
    assert encode(value).hex() == expected
    if not isinstance(value, list):
        assert s.proton_encode(s.to_proton(value)).hex() == expected


@pytest.mark.parametrize(
    ("value", "code8", "code32"),
    [
        (b"x", "a0", "b0"),
        ("x", "a1", "b1"),
        (symbol("x"), "a3", "b3"),
    ],
    ids=["binary", "string", "symbol"],
)
def test_variable_width_switches_at_256_bytes(value: Any, code8: str, code32: str) -> None:
    for size in (0, 1, 255):
        encoded = encode(type(value)(value * size))
        assert encoded[:2].hex() == code8 + f"{size:02x}"
        assert len(encoded) == 2 + size
    for size in (256, 1000):
        encoded = encode(type(value)(value * size))
        assert encoded[:5].hex() == code32 + f"{size:08x}"
        assert len(encoded) == 5 + size


def test_string_width_counts_utf8_bytes_not_characters() -> None:
    text = "é" * 128  # 128 characters, 256 UTF-8 bytes
    assert lead(text, 5) == "b100000100"
    text = "é" * 127 + "a"  # 255 bytes
    assert lead(text, 2) == "a1ff"


def test_list_encodings() -> None:
    assert lead([]) == "45"
    assert encode([None]).hex() == "c0020140"
    assert encode([True, False]).hex() == "c003024142"
    # list8 holds up to 254 bytes of items (its size byte counts the count byte too).
    assert lead([b"x" * 251], 3) == "c0fe01"  # items: a0 fb + 251 bytes = 253; size 254
    assert lead([b"x" * 252], 3) == "c0ff01"
    assert lead([b"x" * 253], 9) == "d00000010300000001"
    assert lead([None] * 254, 3) == "c0fffe"
    assert lead([None] * 255, 9) == "d0" + "00000103" + "000000ff"
    assert lead([None] * 256, 9) == "d0" + "00000104" + "00000100"
    assert decode(encode([None] * 256)) == [None] * 256


def test_map_encodings() -> None:
    assert encode({}).hex() == "c10100"
    assert encode({"a": 1}).hex() == "c10602a1016155" + "01"
    assert lead({"k": "v" * 300}, 9) == "d1" + f"{4 + 3 + 5 + 300:08x}" + "00000002"
    big = {ulong(n): None for n in range(1, 129)}  # 256 items of 3, 2 and 1 bytes
    assert lead(big, 9) == "d1" + f"{4 + 128 * 3:08x}" + "00000100"
    assert decode(encode(big)) == big


def test_array_encodings() -> None:
    ints = Array(UNDESCRIBED, AMQPType.INT, int32(1), int32(-2))
    assert encode(ints).hex() == "e004025401fe"
    wide = Array(UNDESCRIBED, AMQPType.INT, int32(1), int32(1000))
    assert encode(wide).hex() == "e00a0271" + "00000001" + "000003e8"
    assert encode(Array(UNDESCRIBED, AMQPType.UINT, uint(0), uint(7))).hex() == "e00402520007"
    assert encode(Array(UNDESCRIBED, AMQPType.ULONG, ulong(7))).hex() == "e003015307"
    assert encode(Array(UNDESCRIBED, AMQPType.LONG, -1)).hex() == "e0030155ff"
    assert encode(Array(UNDESCRIBED, AMQPType.BOOL, True, False)).hex() == "e00402560100"
    assert encode(Array(UNDESCRIBED, AMQPType.NULL, None)).hex() == "e0020140"
    assert encode(Array(UNDESCRIBED, AMQPType.STRING, "ab")).hex() == "e00501a1026162"
    assert encode(Array(symbol("d"), AMQPType.SYMBOL, symbol("ab"))).hex() == (
        "e00901" + "00a30164" + "a3026162"
    )
    assert encode(Array(ulong(3), AMQPType.UBYTE, ubyte(9))).hex() == "e006010053035009"
    long_strings = Array(UNDESCRIBED, AMQPType.STRING, "x" * 300)
    assert lead(long_strings, 10) == "f0" + f"{4 + 1 + 4 + 300:08x}" + "00000001" + "b1"
    many = Array(UNDESCRIBED, AMQPType.UBYTE, *(ubyte(0) for _ in range(256)))
    assert lead(many, 10) == "f0" + f"{4 + 1 + 256:08x}" + "00000100" + "50"
    lists = Array(UNDESCRIBED, AMQPType.LIST, [], [None])
    assert encode(lists).hex() == "e00702c0" + "0100" + "020140"
    for value in (ints, wide, long_strings, many, lists):
        s.assert_same(decode(encode(value)), value)
        s.assert_same(s.proton_decode(encode(value)), value)


@pytest.mark.parametrize("count", [1, 4, 5, 20, 255, 256, 1000])
@pytest.mark.parametrize("array_type", [AMQPType.NULL, AMQPType.LIST], ids=lambda kind: kind.name)
def test_arrays_of_small_elements_round_trip(count: int, array_type: AMQPType) -> None:
    """An array of nulls takes no bytes per element (and Proton sends an array of empty
    lists as list32 headers only): the element count may exceed the input's size."""
    element = None if array_type is AMQPType.NULL else []
    value = Array(UNDESCRIBED, array_type, *([element] * count))
    s.assert_same(decode(encode(value)), value)
    s.assert_same(decode(s.proton_encode(s.to_proton(value))), value)
    s.assert_same(s.proton_decode(encode(value)), value)


def test_described_encodings() -> None:
    assert encode(Described(ulong(0x70), [])).hex() == "00537045"
    assert encode(Described(symbol("a"), None)).hex() == "00a3016140"
    assert lead(Described(ulong(2**40), 1), 2) == "0080"


@pytest.mark.parametrize(
    "value",
    [
        ["x" * 300],
        {"k": b"v" * 300},
        Array(UNDESCRIBED, AMQPType.BINARY, b"v" * 300),
        Array(UNDESCRIBED, AMQPType.LIST, ["x" * 300]),
        Array(UNDESCRIBED, AMQPType.MAP, {"k": "x" * 300}),
        Array(UNDESCRIBED, AMQPType.ARRAY, Array(UNDESCRIBED, AMQPType.STRING, "x" * 300)),
        Array(UNDESCRIBED, AMQPType.ARRAY, Array(symbol("d"), AMQPType.INT, int32(1))),
        Array(None, AMQPType.SYMBOL, symbol("s" * 300)),
        [[[["deep"]]]],
    ],
    ids=lambda value: type(value).__name__,
)
def test_32_bit_compounds_interoperate(value: Any) -> None:
    s.assert_same(s.proton_decode(encode(value)), value)
    s.assert_same(decode(s.proton_encode(s.to_proton(value))), value)
