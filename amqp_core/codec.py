"""Encode Python values to AMQP 1.0 bytes and decode them back (spec part 1, types).

`encode(value)` picks the AMQP type from the Python type (see `amqp_core.types` for the
wrappers) and always the most compact encoding: the same bytes as Proton for scalars,
and the smallest width that fits for lists, maps and arrays.

`decode(data)` reads exactly one value and treats its input as untrusted: any defect
raises `DecodeError` with the offset where it was found. Nothing in the input makes the
decoder allocate much more than the input's size: every count is checked against the
bytes that could hold it before anything is built, and nesting is limited to
`MAX_NESTING` levels.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from functools import partial
from itertools import chain
from typing import Any

from .types import (
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

__all__ = [
    "MAX_NESTING",
    "MAX_ZERO_WIDTH_ELEMENTS",
    "DecodeError",
    "EncodeError",
    "decode",
    "decode_from",
    "encode",
]

#: How deeply lists, maps, arrays and described values may nest in decoded input.
#: Real AMQP traffic nests a handful of levels (a performative holding a terminus
#: holding a filter map); 64 leaves room for any application data while keeping the
#: decoder far from Python's recursion limit.
MAX_NESTING = 64

#: How many elements an array of a zero-width type (null, true, false, uint0, ulong0,
#: list0) may hold. Such elements take no bytes, so the input's size cannot bound them;
#: this caps what a 10-byte input can make us build at 512 KiB of list slots, and is
#: far above any real use (Proton encodes these arrays, but nobody sends big ones).
MAX_ZERO_WIDTH_ELEMENTS = 65536


class DecodeError(ValueError):
    """The bytes are not a valid AMQP encoding. `offset` is where the defect was found."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


class EncodeError(ValueError):
    """The value has no AMQP encoding (an unsupported type, or out of range)."""


# ---------------------------------------------------------------------------------------
# Encoding

_pack_uint32 = struct.Struct(">I").pack
_pack_int32 = struct.Struct(">i").pack
_pack_uint64 = struct.Struct(">Q").pack
_pack_int64 = struct.Struct(">q").pack
_pack_uint16 = struct.Struct(">H").pack
_pack_int16 = struct.Struct(">h").pack
_pack_double = struct.Struct(">d").pack
_pack_float = struct.Struct(">f").pack
_pack_byte = struct.Struct(">b").pack
_pack_compound8 = struct.Struct(">BBB").pack  # constructor, size, count
_pack_compound32 = struct.Struct(">BII").pack

Encoder = Callable[[bytearray, Any], None]


def _encode_null(out: bytearray, value: None) -> None:
    out.append(0x40)


def _encode_bool(out: bytearray, value: bool) -> None:
    out.append(0x41 if value else 0x42)


def _encode_long(out: bytearray, value: int) -> None:
    if -128 <= value <= 127:
        out.append(0x55)
        out += _pack_byte(value)
    elif -(2**63) <= value < 2**63:
        out.append(0x81)
        out += _pack_int64(value)
    else:
        raise EncodeError(f"int {value} does not fit an AMQP long; use ulong for 2**63 and up")


def _encode_double(out: bytearray, value: float) -> None:
    out.append(0x82)
    out += _pack_double(value)


def _encode_string(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")
    if len(raw) < 256:
        out.append(0xA1)
        out.append(len(raw))
    else:
        out.append(0xB1)
        out += _pack_uint32(len(raw))
    out += raw


def _encode_symbol(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")  # see _symbol
    if len(raw) < 256:
        out.append(0xA3)
        out.append(len(raw))
    else:
        out.append(0xB3)
        out += _pack_uint32(len(raw))
    out += raw


def _encode_binary(out: bytearray, value: bytes) -> None:
    size = len(value)
    if size < 256:
        out.append(0xA0)
        out.append(size)
    else:
        out.append(0xB0)
        out += _pack_uint32(size)
    out += value


def _encode_uuid(out: bytearray, value: uuid.UUID) -> None:
    out.append(0x98)
    out += value.bytes


def _encode_ubyte(out: bytearray, value: int) -> None:
    out.append(0x50)
    out.append(value)


def _encode_byte(out: bytearray, value: int) -> None:
    out.append(0x51)
    out += _pack_byte(value)


def _encode_ushort(out: bytearray, value: int) -> None:
    out.append(0x60)
    out += _pack_uint16(value)


def _encode_short(out: bytearray, value: int) -> None:
    out.append(0x61)
    out += _pack_int16(value)


def _encode_uint(out: bytearray, value: int) -> None:
    if value == 0:
        out.append(0x43)
    elif value < 256:
        out.append(0x52)
        out.append(value)
    else:
        out.append(0x70)
        out += _pack_uint32(value)


def _encode_int32(out: bytearray, value: int) -> None:
    if -128 <= value <= 127:
        out.append(0x54)
        out += _pack_byte(value)
    else:
        out.append(0x71)
        out += _pack_int32(value)


def _encode_ulong(out: bytearray, value: int) -> None:
    if value == 0:
        out.append(0x44)
    elif value < 256:
        out.append(0x53)
        out.append(value)
    else:
        out.append(0x80)
        out += _pack_uint64(value)


def _encode_float32(out: bytearray, value: float) -> None:
    out.append(0x72)
    out += _pack_float(value)


def _encode_char(out: bytearray, value: str) -> None:
    out.append(0x73)
    out += value.encode("utf-32-be")


def _encode_timestamp(out: bytearray, value: int) -> None:
    out.append(0x83)
    out += _pack_int64(value)


def _encode_decimal32(out: bytearray, value: int) -> None:
    out.append(0x74)
    out += _pack_uint32(value)


def _encode_decimal64(out: bytearray, value: int) -> None:
    out.append(0x84)
    out += _pack_uint64(value)


def _encode_decimal128(out: bytearray, value: bytes) -> None:
    out.append(0x94)
    out += value


def _finish_compound(out: bytearray, start: int, count: int, code8: int) -> None:
    """Put the constructor, size and count in front of the items written from `start`.

    The width is only known once the items are written, so the header is inserted
    afterwards: a memmove of the items, far cheaper than encoding them twice.
    """
    size = len(out) - start
    if size < 255 and count < 256:
        out[start:start] = _pack_compound8(code8, size + 1, count)
    else:
        out[start:start] = _pack_compound32(code8 + 0x10, size + 4, count)


def _encode_items(out: bytearray, items: Any) -> None:
    """Encode each of `items`, with the commonest types inlined (this is the hot loop of
    every list and map)."""
    encoders = _ENCODERS
    for item in items:
        kind = type(item)
        if kind is str:
            raw = item.encode("utf-8")
            if len(raw) < 256:
                out.append(0xA1)
                out.append(len(raw))
                out += raw
            else:
                _encode_string(out, item)
        elif item is None:
            out.append(0x40)
        elif kind is int and -128 <= item <= 127:
            out.append(0x55)
            out += _pack_byte(item)
        else:
            encoder = encoders.get(kind) or _encoder_for_subclass(kind)
            try:
                encoder(out, item)
            except struct.error as exc:
                raise EncodeError(f"{item!r} is out of range for its AMQP type: {exc}") from None


def _encode_list(out: bytearray, value: list[Any] | tuple[Any, ...]) -> None:
    if not value:
        out.append(0x45)
        return
    start = len(out)
    _encode_items(out, value)
    _finish_compound(out, start, len(value), 0xC0)


def _encode_map(out: bytearray, value: dict[Any, Any]) -> None:
    start = len(out)
    _encode_items(out, chain.from_iterable(value.items()))
    _finish_compound(out, start, 2 * len(value), 0xC1)


def _encode_described(out: bytearray, value: Described) -> None:
    out.append(0x00)
    _encode_value(out, value.descriptor)
    _encode_value(out, value.value)


def _encode_value(out: bytearray, value: Any) -> None:
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        encoder = _encoder_for_subclass(type(value))
    try:
        encoder(out, value)
    except struct.error as exc:
        raise EncodeError(f"{value!r} is out of range for its AMQP type: {exc}") from None


def _encoder_for_subclass(cls: type) -> Encoder:
    """Find the encoder for a subclass of a supported type (an IntEnum, a str subclass,
    a spec class derived from Described) and remember it."""
    for base in cls.__mro__[1:]:
        encoder = _ENCODERS.get(base)
        if encoder is not None:
            _ENCODERS[cls] = encoder
            return encoder
    raise EncodeError(f"no AMQP encoding for Python type {cls.__qualname__}")


# Array elements: the constructor and the body writer for each element type. Arrays
# share one constructor between all elements, so fixed widths are used except where a
# narrower encoding (smalluint, str8, list8 ...) fits every element.


def _fixed_element(
    code: int, packer: Callable[[Any], bytes]
) -> Callable[[list[Any]], tuple[int, list[bytes]]]:
    def encode_elements(elements: list[Any]) -> tuple[int, list[bytes]]:
        return code, [packer(element) for element in elements]

    return encode_elements


def _small_or_wide(
    small_code: int,
    small: Callable[[Any], bytes],
    wide_code: int,
    wide: Callable[[Any], bytes],
    fits_small: Callable[[Any], bool],
) -> Callable[[list[Any]], tuple[int, list[bytes]]]:
    def encode_elements(elements: list[Any]) -> tuple[int, list[bytes]]:
        if all(fits_small(element) for element in elements):
            return small_code, [small(element) for element in elements]
        return wide_code, [wide(element) for element in elements]

    return encode_elements


def _variable_elements(
    code8: int, to_raw: Callable[[Any], bytes]
) -> Callable[[list[Any]], tuple[int, list[bytes]]]:
    def encode_elements(elements: list[Any]) -> tuple[int, list[bytes]]:
        raws = [to_raw(element) for element in elements]
        if all(len(raw) < 256 for raw in raws):
            return code8, [bytes((len(raw),)) + raw for raw in raws]
        return code8 + 0x10, [_pack_uint32(len(raw)) + raw for raw in raws]

    return encode_elements


def _compound_parts(raw: bytes) -> tuple[int, bytes]:
    """Split an encoded list, map or array into its count and the bytes after the count."""
    if raw[0] == 0x45:
        return 0, b""
    if raw[0] in (0xC0, 0xC1, 0xE0):
        return raw[2], raw[3:]
    return _unpack_uint32(raw, 5)[0], raw[9:]


def _compound_elements(code8: int) -> Callable[[list[Any]], tuple[int, list[bytes]]]:
    """Lists, maps and arrays as array elements share one width: 8-bit if all fit."""

    def encode_elements(elements: list[Any]) -> tuple[int, list[bytes]]:
        parts = [_compound_parts(encode(element)) for element in elements]
        if all(len(body) < 255 and count < 256 for count, body in parts):
            return code8, [bytes((len(body) + 1, count)) + body for count, body in parts]
        return code8 + 0x10, [
            _pack_uint32(len(body) + 4) + _pack_uint32(count) + body for count, body in parts
        ]

    return encode_elements


def _encode_symbol_raw(value: str) -> bytes:
    return value.encode("utf-8")  # see _symbol


_ARRAY_ELEMENTS: dict[AMQPType, Callable[[list[Any]], tuple[int, list[bytes]]]] = {
    AMQPType.NULL: lambda elements: (0x40, [b"" for _ in elements]),
    AMQPType.BOOL: _fixed_element(0x56, lambda value: b"\x01" if value else b"\x00"),
    AMQPType.UBYTE: _fixed_element(0x50, lambda value: bytes((value,))),
    AMQPType.BYTE: _fixed_element(0x51, _pack_byte),
    AMQPType.USHORT: _fixed_element(0x60, _pack_uint16),
    AMQPType.SHORT: _fixed_element(0x61, _pack_int16),
    AMQPType.UINT: _small_or_wide(
        0x52, lambda v: bytes((v,)), 0x70, _pack_uint32, lambda v: 0 <= v < 256
    ),
    AMQPType.INT: _small_or_wide(0x54, _pack_byte, 0x71, _pack_int32, lambda v: -128 <= v <= 127),
    AMQPType.ULONG: _small_or_wide(
        0x53, lambda v: bytes((v,)), 0x80, _pack_uint64, lambda v: 0 <= v < 256
    ),
    AMQPType.LONG: _small_or_wide(0x55, _pack_byte, 0x81, _pack_int64, lambda v: -128 <= v <= 127),
    AMQPType.CHAR: _fixed_element(0x73, lambda value: value.encode("utf-32-be")),
    AMQPType.TIMESTAMP: _fixed_element(0x83, _pack_int64),
    AMQPType.FLOAT: _fixed_element(0x72, _pack_float),
    AMQPType.DOUBLE: _fixed_element(0x82, _pack_double),
    AMQPType.DECIMAL32: _fixed_element(0x74, _pack_uint32),
    AMQPType.DECIMAL64: _fixed_element(0x84, _pack_uint64),
    AMQPType.DECIMAL128: _fixed_element(0x94, bytes),
    AMQPType.UUID: _fixed_element(0x98, lambda value: value.bytes),
    AMQPType.BINARY: _variable_elements(0xA0, bytes),
    AMQPType.STRING: _variable_elements(0xA1, lambda value: value.encode("utf-8")),
    AMQPType.SYMBOL: _variable_elements(0xA3, _encode_symbol_raw),
    AMQPType.LIST: _compound_elements(0xC0),
    AMQPType.MAP: _compound_elements(0xC1),
    AMQPType.ARRAY: _compound_elements(0xE0),
}


def _encode_array(out: bytearray, value: Array) -> None:
    elements_encoder = _ARRAY_ELEMENTS.get(value.type)
    if elements_encoder is None:
        raise EncodeError(
            f"arrays of {value.type.name} are not supported; give the descriptor instead"
        )
    try:
        code, bodies = elements_encoder(list(value.elements))
    except (TypeError, ValueError, AttributeError, OverflowError, struct.error) as exc:
        raise EncodeError(
            f"array of {value.type.name} holds a value it cannot encode: {exc}"
        ) from None
    start = len(out)
    if value.descriptor is not UNDESCRIBED:
        out.append(0x00)
        _encode_value(out, value.descriptor)
    out.append(code)
    for body in bodies:
        out += body
    _finish_compound(out, start, len(bodies), 0xE0)


_ENCODERS: dict[type, Encoder] = {
    type(None): _encode_null,
    bool: _encode_bool,
    int: _encode_long,
    float: _encode_double,
    str: _encode_string,
    bytes: _encode_binary,
    bytearray: _encode_binary,
    memoryview: lambda out, value: _encode_binary(out, value.tobytes()),
    uuid.UUID: _encode_uuid,
    list: _encode_list,
    tuple: _encode_list,
    dict: _encode_map,
    ubyte: _encode_ubyte,
    byte: _encode_byte,
    ushort: _encode_ushort,
    short: _encode_short,
    uint: _encode_uint,
    int32: _encode_int32,
    ulong: _encode_ulong,
    float32: _encode_float32,
    char: _encode_char,
    timestamp: _encode_timestamp,
    decimal32: _encode_decimal32,
    decimal64: _encode_decimal64,
    decimal128: _encode_decimal128,
    symbol: _encode_symbol,
    Described: _encode_described,
    Array: _encode_array,
}


def encode(value: Any) -> bytes:
    """Encode one value. Raises `EncodeError` for a value with no AMQP encoding."""
    out = bytearray()
    _encode_value(out, value)
    return bytes(out)


def encode_into(out: bytearray, value: Any) -> None:
    """Append the encoding of `value` to `out` (for callers building frames)."""
    _encode_value(out, value)


# ---------------------------------------------------------------------------------------
# Decoding
#
# Each reader takes (data, pos, depth) with `pos` just past the constructor byte and
# returns (value, next_pos). `data` is always `bytes`.

_unpack_uint16 = struct.Struct(">H").unpack_from
_unpack_int16 = struct.Struct(">h").unpack_from
_unpack_uint32 = struct.Struct(">I").unpack_from
_unpack_int32 = struct.Struct(">i").unpack_from
_unpack_uint64 = struct.Struct(">Q").unpack_from
_unpack_int64 = struct.Struct(">q").unpack_from
_unpack_float = struct.Struct(">f").unpack_from
_unpack_double = struct.Struct(">d").unpack_from
_unpack_byte = struct.Struct(">b").unpack_from
_unpack_size_count32 = struct.Struct(">II").unpack_from

Reader = Callable[[bytes, int, int], tuple[Any, int]]

_CONSTANTS: dict[int, Any] = {
    0x40: None,
    0x41: True,
    0x42: False,
    0x43: uint(0),
    0x44: ulong(0),
    0x45: [],  # copied on each read: a decoded list is the caller's to change
}


def _truncated(what: str, pos: int) -> DecodeError:
    return DecodeError(f"truncated {what}: input ends before its end", pos)


def _fixed_reader(width: int, convert: Callable[[bytes, int], Any], what: str) -> Reader:
    def read(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
        end = pos + width
        if end > len(data):
            raise _truncated(what, pos - 1)
        return convert(data, pos), end

    return read


def _variable_reader(
    size_width: int, convert: Callable[[bytes, int, int], Any], what: str
) -> Reader:
    def read(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
        if size_width == 1:
            if pos >= len(data):
                raise _truncated(what, pos - 1)
            size = data[pos]
        else:
            if pos + 4 > len(data):
                raise _truncated(what, pos - 1)
            (size,) = _unpack_uint32(data, pos)
        start = pos + size_width
        end = start + size
        if end > len(data):
            raise DecodeError(
                f"{what} of {size} bytes is longer than the {len(data) - start} bytes left", pos
            )
        return convert(data, start, end), end

    return read


def _utf8(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"string is not valid UTF-8 ({exc.reason})", start + exc.start) from None


def _symbol(data: bytes, start: int, end: int) -> symbol:
    # AMQP's symbols are ASCII, but Proton's Message writes a content type, subject or
    # annotation key it was given in UTF-8 and reads it back so: a message from a Proton
    # program must not be undecodable here. So symbols are UTF-8 both ways.
    try:
        return str.__new__(symbol, data[start:end].decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeError(f"symbol is not valid UTF-8 ({exc.reason})", start + exc.start) from None


def _char(data: bytes, pos: int) -> char:
    (code_point,) = _unpack_uint32(data, pos)
    if code_point > 0x10FFFF or 0xD800 <= code_point <= 0xDFFF:
        raise DecodeError(f"char U+{code_point:X} is not a Unicode scalar value", pos)
    return str.__new__(char, chr(code_point))


def _wrap(
    cls: type, unpack: Callable[[bytes, int], tuple[Any, ...]]
) -> Callable[[bytes, int], Any]:
    """A converter giving a wrapper instance without re-checking its range: the
    encoding's width already bounds the value."""
    base_new = int.__new__ if issubclass(cls, int) else float.__new__
    return lambda data, pos: base_new(cls, unpack(data, pos)[0])


def _read_compound_header(data: bytes, pos: int, wide: bool, what: str) -> tuple[int, int, int]:
    """Read size and count; return (count, position of the first item, end position)."""
    if wide:
        if pos + 8 > len(data):
            raise _truncated(what, pos - 1)
        size, count = _unpack_size_count32(data, pos)
        first = pos + 8
        end = pos + 4 + size
        if size < 4:
            raise DecodeError(f"{what} size {size} cannot hold its count", pos)
    else:
        if pos + 2 > len(data):
            raise _truncated(what, pos - 1)
        size = data[pos]
        count = data[pos + 1]
        first = pos + 2
        end = pos + 1 + size
        if size < 1:
            raise DecodeError(f"{what} size {size} cannot hold its count", pos)
    if end > len(data):
        raise DecodeError(
            f"{what} of {size} bytes is longer than the {len(data) - pos} bytes left", pos
        )
    return count, first, end


def _too_deep(pos: int) -> DecodeError:
    return DecodeError(f"values nested more than {MAX_NESTING} deep", pos)


def _read_items(data: bytes, pos: int, count: int, depth: int) -> tuple[list[Any], int]:
    """Read `count` values from `pos`, with the commonest constructors inlined (this is
    the hot loop of every list and map). A constructor byte past the end of the input
    raises IndexError, which `decode_from` reports as truncation."""
    items: list[Any] = []
    append = items.append
    readers = _READERS
    size = len(data)
    for _ in range(count):
        code = data[pos]
        if code == 0xA1:  # str8
            start = pos + 2
            pos = start + data[pos + 1]
            if pos > size:
                raise _truncated("string", start - 2)
            try:
                append(data[start:pos].decode("utf-8"))
            except UnicodeDecodeError:
                append(_utf8(data, start, pos))  # raises, with the offset
        elif code == 0x40:
            append(None)
            pos += 1
        elif code == 0x55:  # smalllong
            number = data[pos + 1]
            append(number - 256 if number > 127 else number)
            pos += 2
        elif code == 0x53:  # smallulong
            append(_SMALL_ULONGS[data[pos + 1]])
            pos += 2
        else:
            item, pos = readers[code](data, pos + 1, depth)
            append(item)
    return items, pos


_SMALL_ULONGS = [int.__new__(ulong, n) for n in range(256)]


def _read_list(data: bytes, pos: int, depth: int, wide: bool = False) -> tuple[list[Any], int]:
    size = len(data)
    if wide or pos + 2 > size:
        count, pos, end = _read_compound_header(data, pos, wide, "list")
    else:
        count = data[pos + 1]
        end = pos + 1 + data[pos]
        pos += 2
        if end > size or end < pos:
            _read_compound_header(data, pos - 2, wide, "list")  # raises, with the reason
    # Every item takes at least one byte (its constructor).
    if count > end - pos:
        raise DecodeError(f"list count {count} is more than its {end - pos} bytes could hold", pos)
    if depth >= MAX_NESTING:
        raise _too_deep(pos)
    items, pos = _read_items(data, pos, count, depth + 1)
    if pos != end:
        raise DecodeError(f"list items end at {pos}, not where its size says ({end})", pos)
    return items, pos


def _read_map(data: bytes, pos: int, depth: int, wide: bool = False) -> tuple[dict[Any, Any], int]:
    size = len(data)
    if wide or pos + 2 > size:
        count, pos, end = _read_compound_header(data, pos, wide, "map")
    else:
        count = data[pos + 1]
        end = pos + 1 + data[pos]
        pos += 2
        if end > size or end < pos:
            _read_compound_header(data, pos - 2, wide, "map")  # raises, with the reason
    if count > end - pos or count % 2:
        raise DecodeError(
            f"map count {count} is odd or more than its {end - pos} bytes could hold", pos
        )
    if depth >= MAX_NESTING:
        raise _too_deep(pos)
    start = pos
    items, pos = _read_items(data, pos, count, depth + 1)
    if pos != end:
        raise DecodeError(f"map items end at {pos}, not where its size says ({end})", pos)
    pairs = iter(items)
    try:
        return dict(zip(pairs, pairs)), pos  # noqa: B905 - pairs from one iterator
    except TypeError:
        bad = next(key for key in items[::2] if not _hashable(key))
        raise DecodeError(f"map key of type {type(bad).__name__} cannot be a key", start) from None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _read_described(data: bytes, pos: int, depth: int) -> tuple[Described, int]:
    if depth >= MAX_NESTING:
        raise _too_deep(pos)
    if pos >= len(data):
        raise _truncated("described value", pos - 1)
    descriptor, pos = _READERS[data[pos]](data, pos + 1, depth + 1)
    if pos >= len(data):
        raise _truncated("described value", pos)
    value, pos = _READERS[data[pos]](data, pos + 1, depth + 1)
    return Described(descriptor, value), pos


# The AMQP type of each constructor, to label arrays.
_ELEMENT_TYPES: dict[int, AMQPType] = {
    0x40: AMQPType.NULL,
    0x41: AMQPType.BOOL,
    0x42: AMQPType.BOOL,
    0x56: AMQPType.BOOL,
    0x50: AMQPType.UBYTE,
    0x51: AMQPType.BYTE,
    0x60: AMQPType.USHORT,
    0x61: AMQPType.SHORT,
    0x43: AMQPType.UINT,
    0x52: AMQPType.UINT,
    0x70: AMQPType.UINT,
    0x54: AMQPType.INT,
    0x71: AMQPType.INT,
    0x44: AMQPType.ULONG,
    0x53: AMQPType.ULONG,
    0x80: AMQPType.ULONG,
    0x55: AMQPType.LONG,
    0x81: AMQPType.LONG,
    0x72: AMQPType.FLOAT,
    0x82: AMQPType.DOUBLE,
    0x73: AMQPType.CHAR,
    0x83: AMQPType.TIMESTAMP,
    0x74: AMQPType.DECIMAL32,
    0x84: AMQPType.DECIMAL64,
    0x94: AMQPType.DECIMAL128,
    0x98: AMQPType.UUID,
    0xA0: AMQPType.BINARY,
    0xB0: AMQPType.BINARY,
    0xA1: AMQPType.STRING,
    0xB1: AMQPType.STRING,
    0xA3: AMQPType.SYMBOL,
    0xB3: AMQPType.SYMBOL,
    0x45: AMQPType.LIST,
    0xC0: AMQPType.LIST,
    0xD0: AMQPType.LIST,
    0xC1: AMQPType.MAP,
    0xD1: AMQPType.MAP,
    0xE0: AMQPType.ARRAY,
    0xF0: AMQPType.ARRAY,
}


def _read_array(data: bytes, pos: int, depth: int, wide: bool = False) -> tuple[Array, int]:
    count, pos, end = _read_compound_header(data, pos, wide, "array")
    if depth >= MAX_NESTING:
        raise _too_deep(pos)
    depth += 1
    descriptor: Any = UNDESCRIBED
    if pos >= end:
        raise DecodeError("array has no element constructor", pos)
    if data[pos] == 0x00:
        if pos + 1 >= end:
            raise DecodeError("array ends inside its element descriptor", pos)
        descriptor, pos = _READERS[data[pos + 1]](data, pos + 2, depth)
        if pos >= end:
            raise DecodeError("array ends inside its element constructor", pos)
    code = data[pos]
    element_type = _ELEMENT_TYPES.get(code)
    if element_type is None:
        raise DecodeError(f"array element constructor 0x{code:02x} is not a primitive type", pos)
    pos += 1
    if code in _CONSTANTS:
        # Zero-width elements cost nothing in the input, so bound them by its size.
        if count > MAX_ZERO_WIDTH_ELEMENTS:
            raise DecodeError(
                f"array count {count} of zero-width elements exceeds the limit of "
                f"{MAX_ZERO_WIDTH_ELEMENTS}",
                pos,
            )
        value = _CONSTANTS[code]
        elements = [[] for _ in range(count)] if code == 0x45 else [value] * count
    else:
        if count > end - pos:
            raise DecodeError(
                f"array count {count} is more than its {end - pos} bytes could hold", pos
            )
        read = _READERS[code]
        elements = []
        for _ in range(count):
            element, pos = read(data, pos, depth)
            elements.append(element)
    if pos != end:
        raise DecodeError(f"array elements end at {pos}, not where its size says ({end})", pos)
    return Array(descriptor, element_type, *elements), pos


def _unknown(code: int) -> Reader:
    def read(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
        raise DecodeError(f"unknown constructor 0x{code:02x}", pos - 1)

    return read


def _constant(code: int) -> Reader:
    value = _CONSTANTS[code]
    if code == 0x45:
        return lambda data, pos, depth: ([], pos)
    return lambda data, pos, depth: (value, pos)


def _build_readers() -> list[Reader]:
    readers: list[Reader] = [_unknown(code) for code in range(256)]
    for code in _CONSTANTS:
        readers[code] = _constant(code)
    fixed: dict[int, tuple[int, Callable[[bytes, int], Any], str]] = {
        0x56: (1, lambda d, p: d[p] == 1 if d[p] <= 1 else _bad_boolean(d, p), "boolean"),
        0x50: (1, lambda d, p: int.__new__(ubyte, d[p]), "ubyte"),
        0x51: (1, _wrap(byte, _unpack_byte), "byte"),
        0x60: (2, _wrap(ushort, _unpack_uint16), "ushort"),
        0x61: (2, _wrap(short, _unpack_int16), "short"),
        0x52: (1, lambda d, p: int.__new__(uint, d[p]), "uint"),
        0x70: (4, _wrap(uint, _unpack_uint32), "uint"),
        0x54: (1, _wrap(int32, _unpack_byte), "int"),
        0x71: (4, _wrap(int32, _unpack_int32), "int"),
        0x53: (1, lambda d, p: int.__new__(ulong, d[p]), "ulong"),
        0x80: (8, _wrap(ulong, _unpack_uint64), "ulong"),
        0x55: (1, lambda d, p: _unpack_byte(d, p)[0], "long"),
        0x81: (8, lambda d, p: _unpack_int64(d, p)[0], "long"),
        0x72: (4, _wrap(float32, _unpack_float), "float"),
        0x82: (8, lambda d, p: _unpack_double(d, p)[0], "double"),
        0x73: (4, _char, "char"),
        0x83: (8, _wrap(timestamp, _unpack_int64), "timestamp"),
        0x74: (4, _wrap(decimal32, _unpack_uint32), "decimal32"),
        0x84: (8, _wrap(decimal64, _unpack_uint64), "decimal64"),
        0x94: (16, lambda d, p: bytes.__new__(decimal128, d[p : p + 16]), "decimal128"),
        0x98: (16, lambda d, p: uuid.UUID(bytes=d[p : p + 16]), "uuid"),
    }
    for code, (width, convert, what) in fixed.items():
        readers[code] = _fixed_reader(width, convert, what)
    variable: dict[int, tuple[int, Callable[[bytes, int, int], Any], str]] = {
        0xA0: (1, lambda d, s, e: d[s:e], "binary"),
        0xB0: (4, lambda d, s, e: d[s:e], "binary"),
        0xA1: (1, _utf8, "string"),
        0xB1: (4, _utf8, "string"),
        0xA3: (1, _symbol, "symbol"),
        0xB3: (4, _symbol, "symbol"),
    }
    for code, (size_width, convert_variable, what) in variable.items():
        readers[code] = _variable_reader(size_width, convert_variable, what)
    readers[0x00] = _read_described
    # The 32-bit forms differ only in their header; arrays hold elements without
    # constructors, so the width cannot be read back from the input.
    readers[0xC0], readers[0xD0] = _read_list, partial(_read_list, wide=True)
    readers[0xC1], readers[0xD1] = _read_map, partial(_read_map, wide=True)
    readers[0xE0], readers[0xF0] = _read_array, partial(_read_array, wide=True)
    return readers


def _bad_boolean(data: bytes, pos: int) -> bool:
    raise DecodeError(f"boolean byte 0x{data[pos]:02x} is neither 0x00 nor 0x01", pos)


_READERS = _build_readers()


def decode_from(data: bytes, pos: int = 0) -> tuple[Any, int]:
    """Decode one value starting at `pos`; return it and the position after it."""
    if pos >= len(data):
        raise DecodeError("no value: the input ends where a value should start", pos)
    return read_value(data, pos)


def read_value(data: bytes, pos: int) -> tuple[Any, int]:
    """`decode_from` without the check that a value starts before the end of `data`,
    for callers in a hot loop that made it themselves."""
    try:
        return _READERS[data[pos]](data, pos + 1, 0)
    except IndexError:
        # Every reader checks its bounds before reading; this catches a compound
        # whose last item's constructor byte lies past the end of the input.
        raise DecodeError("truncated value: input ends inside a compound", len(data)) from None


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one value; trailing bytes are an error."""
    if not isinstance(data, bytes):
        data = bytes(data)
    value, end = decode_from(data)
    if end != len(data):
        raise DecodeError(f"{len(data) - end} trailing bytes after the value", end)
    return value
