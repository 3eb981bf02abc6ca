"""`amqp_core.data.Data` keeps Proton's `Data` cursor rules, type constants and bytes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from amqp_core import codec
from amqp_core.data import Data
from amqp_core.types import AMQPType, Array, Described, symbol, ubyte, uint, ulong

proton = pytest.importorskip("proton")

TYPE_NAMES = [name for name in dir(proton.Data) if name.isupper()]


@pytest.mark.parametrize("name", TYPE_NAMES)
def test_type_constants_and_names_are_protons(name: str) -> None:
    assert getattr(Data, name) == getattr(proton.Data, name) == AMQPType[name]
    assert Data.type_name(getattr(Data, name)) == proton.Data.type_name(getattr(Data, name))


def _walk(data: Any) -> list[tuple[Any, ...]]:
    """Drive a Data (ours or Proton's) through puts, rewinds and moves; record what the
    cursor sees at each step."""
    seen: list[tuple[Any, ...]] = [(data.type(), data.get_object())]
    data.put_object(1)
    seen.append((data.type(), data.get_object()))
    data.put_object("two")
    seen.append((data.type(), data.get_object()))
    data.rewind()
    seen.append((data.type(), data.get_object()))
    for _ in range(3):
        seen.append((data.next(), data.get_object()))
    for _ in range(3):
        seen.append((data.prev(), data.get_object()))
    data.rewind()
    data.put_object(3)  # replaces the first value
    data.rewind()
    for _ in range(3):
        seen.append((data.next(), data.get_object()))
    data.clear()
    seen.append((data.next(), data.type(), data.get_object()))
    return seen


def test_cursor_follows_proton() -> None:
    assert _walk(Data()) == _walk(proton.Data())


def test_put_after_current_replaces_the_next_value() -> None:
    data = Data()
    for value in (1, 2, 3):
        data.put_object(value)
    data.rewind()
    data.next()
    data.put_object(20)
    assert list(data) == [1, 20, 3]
    assert data.get_object() == 20


def test_typed_puts_give_the_amqp_types_proton_gives() -> None:
    ours, theirs = Data(), proton.Data()
    puts: list[tuple[str, Any]] = [
        ("put_null", None),
        ("put_bool", True),
        ("put_ubyte", 7),
        ("put_byte", -7),
        ("put_ushort", 700),
        ("put_short", -700),
        ("put_uint", 70000),
        ("put_int", -70000),
        ("put_char", "x"),
        ("put_ulong", 2**40),
        ("put_long", -(2**40)),
        ("put_timestamp", 1_700_000_000_000),
        ("put_float", 1.5),
        ("put_double", 2.25),
        ("put_uuid", uuid.UUID(int=42)),
        ("put_binary", b"\x00\x01"),
        ("put_string", "text"),
        ("put_symbol", "sym"),
    ]
    for method, value in puts:
        if value is None:
            getattr(ours, method)()
            getattr(theirs, method)()
        else:
            getattr(ours, method)(value)
            getattr(theirs, method)(value)
        assert ours.type() == theirs.type(), method
    # Scalars have one encoding, so the bytes are Proton's own.
    assert ours.encode() == bytes(theirs.encode())


SELECTOR = "apache.org:selector-filter:string"


def test_compound_values_read_the_same_in_proton() -> None:
    ours = Data()
    ours.put_dict({symbol("f"): Described(symbol(SELECTOR), "a = 1")})
    ours.put_sequence([1, "two", symbol("three")])
    ours.put_py_array(Array(symbol("d"), AMQPType.SYMBOL, symbol("a"), symbol("b")))
    ours.put_py_described(Described(ulong(0x28), ["q", uint(2)]))
    raw = ours.encode()
    theirs = proton.Data()
    offset = 0
    while offset < len(raw):
        offset += theirs.decode(raw[offset:])
    theirs.rewind()
    theirs.next()
    assert theirs.get_dict() == {"f": proton.Described(proton.symbol(SELECTOR), "a = 1")}
    theirs.next()
    assert theirs.get_sequence() == [1, "two", "three"]
    theirs.next()
    assert theirs.get_py_array() == proton.Array(
        proton.symbol("d"), proton.Data.SYMBOL, proton.symbol("a"), proton.symbol("b")
    )
    theirs.next()
    assert theirs.get_py_described() == proton.Described(proton.ulong(0x28), ["q", 2])


def test_proton_bytes_decode_to_the_same_values() -> None:
    value = {proton.symbol("k"): [1, proton.symbol("s"), proton.Described(proton.symbol("d"), 2)]}
    theirs = proton.Data()
    theirs.put_object(value)
    raw = bytes(theirs.encode())
    ours = Data()
    assert ours.decode(raw) == len(raw)
    assert ours.get_dict() == {symbol("k"): [1, symbol("s"), Described(symbol("d"), 2)]}
    # Proton writes map32 where a map8 fits; ours is the compact encoding of the same map.
    assert codec.decode(ours.encode()) == ours.get_dict()


def test_encode_concatenates_and_decode_reads_one_value() -> None:
    data = Data()
    data.put_symbol("topic")
    data.put_ubyte(1)
    raw = data.encode()
    assert raw == codec.encode(symbol("topic")) + codec.encode(ubyte(1))
    other = Data()
    assert other.decode(raw) == len(codec.encode(symbol("topic")))
    assert list(other) == [symbol("topic")]
    assert other.get_object() == "topic" and other.type() == Data.SYMBOL


def test_getters_return_none_for_another_type() -> None:
    data = Data()
    assert data.get_dict() is None and not data.is_null()
    data.put_object(5)
    assert data.get_dict() is None
    assert data.get_sequence() is None
    assert data.get_py_array() is None
    assert data.get_py_described() is None
    data.put_null()
    assert data.is_null()


def test_length_copy_and_clear() -> None:
    data = Data()
    assert len(data) == 0
    data.put_dict({symbol("k"): [1, 2]})
    copy = Data()
    copy.copy(data)
    assert len(copy) == 1 and list(copy) == list(data)
    copy.rewind()
    copy.next()
    copy_map = copy.get_dict()
    assert copy_map is not None
    copy_map[symbol("k")].append(3)
    assert list(data) == [{symbol("k"): [1, 2]}]
    data.clear()
    assert len(data) == 0 and data.get_object() is None


def test_unencodable_value_is_refused_on_put() -> None:
    with pytest.raises(codec.EncodeError):
        Data().put_object(object())
