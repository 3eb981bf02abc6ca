"""`Data`: a small stand-in for the parts of Proton's `Data` that applications touch.

Proton exposes terminus fields that hold arbitrary AMQP values (a source's filter,
capabilities, outcomes and dynamic-node properties) as `Data` objects: a sequence of
values with a cursor, filled with ``put_*`` calls and read with ``next()`` and
``get_*``. This class keeps that model and its cursor rules but holds plain Python
values (those `amqp_core.codec` encodes) instead of a tree of typed nodes, so there is
no ``enter``/``exit``: compound values are put and got whole (``put_dict``,
``put_sequence``, ``put_py_array``, ``put_object``).

Cursor rules, as in Proton: a put writes the value after the current one (replacing the
value there if there is one) and makes it current; ``next`` and ``prev`` move the cursor
and return the new current value's type, or None without moving at either end;
``rewind`` moves before the first value.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from . import codec
from .types import (
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

__all__ = ["Data", "amqp_type_of"]

_TYPE_OF: dict[type, AMQPType] = {
    type(None): AMQPType.NULL,
    bool: AMQPType.BOOL,
    ubyte: AMQPType.UBYTE,
    byte: AMQPType.BYTE,
    ushort: AMQPType.USHORT,
    short: AMQPType.SHORT,
    uint: AMQPType.UINT,
    int32: AMQPType.INT,
    char: AMQPType.CHAR,
    ulong: AMQPType.ULONG,
    int: AMQPType.LONG,
    timestamp: AMQPType.TIMESTAMP,
    float32: AMQPType.FLOAT,
    float: AMQPType.DOUBLE,
    decimal32: AMQPType.DECIMAL32,
    decimal64: AMQPType.DECIMAL64,
    decimal128: AMQPType.DECIMAL128,
    uuid.UUID: AMQPType.UUID,
    bytes: AMQPType.BINARY,
    bytearray: AMQPType.BINARY,
    memoryview: AMQPType.BINARY,
    str: AMQPType.STRING,
    symbol: AMQPType.SYMBOL,
    Described: AMQPType.DESCRIBED,
    Array: AMQPType.ARRAY,
    list: AMQPType.LIST,
    tuple: AMQPType.LIST,
    dict: AMQPType.MAP,
}


def amqp_type_of(value: Any) -> AMQPType:
    """The AMQP type `codec.encode` gives `value`; `codec.EncodeError` if it has none."""
    for cls in type(value).__mro__:
        amqp_type = _TYPE_OF.get(cls)
        if amqp_type is not None:
            return amqp_type
    raise codec.EncodeError(f"no AMQP encoding for Python type {type(value).__qualname__}")


class Data:
    """A sequence of AMQP values with a cursor (see the module docstring)."""

    NULL = AMQPType.NULL
    BOOL = AMQPType.BOOL
    UBYTE = AMQPType.UBYTE
    BYTE = AMQPType.BYTE
    USHORT = AMQPType.USHORT
    SHORT = AMQPType.SHORT
    UINT = AMQPType.UINT
    INT = AMQPType.INT
    CHAR = AMQPType.CHAR
    ULONG = AMQPType.ULONG
    LONG = AMQPType.LONG
    TIMESTAMP = AMQPType.TIMESTAMP
    FLOAT = AMQPType.FLOAT
    DOUBLE = AMQPType.DOUBLE
    DECIMAL32 = AMQPType.DECIMAL32
    DECIMAL64 = AMQPType.DECIMAL64
    DECIMAL128 = AMQPType.DECIMAL128
    UUID = AMQPType.UUID
    BINARY = AMQPType.BINARY
    STRING = AMQPType.STRING
    SYMBOL = AMQPType.SYMBOL
    DESCRIBED = AMQPType.DESCRIBED
    ARRAY = AMQPType.ARRAY
    LIST = AMQPType.LIST
    MAP = AMQPType.MAP

    __slots__ = ("_values", "_current")

    def __init__(self, capacity: int = 16) -> None:
        # Proton sizes its node buffer with `capacity`; a Python list grows by itself.
        self._values: list[Any] = []
        self._current = -1

    @classmethod
    def type_name(cls, amqp_type: int) -> str:
        """The lower-case name of a type constant: ``Data.type_name(Data.MAP) == "map"``."""
        return "bool" if amqp_type == AMQPType.BOOL else AMQPType(amqp_type).name.lower()

    # Navigation

    def clear(self) -> None:
        """Remove every value."""
        self._values.clear()
        self._current = -1

    def rewind(self) -> None:
        """Move the cursor before the first value."""
        self._current = -1

    def next(self) -> AMQPType | None:
        """Move to the next value and return its type; None (not moving) at the end."""
        if self._current + 1 >= len(self._values):
            return None
        self._current += 1
        return self.type()

    def prev(self) -> AMQPType | None:
        """Move to the previous value and return its type; None (not moving) at the start."""
        if self._current <= 0:
            return None
        self._current -= 1
        return self.type()

    def type(self) -> AMQPType | None:
        """The type of the current value, or None before the first."""
        if self._current < 0:
            return None
        return amqp_type_of(self._values[self._current])

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        """The values, first to last; the cursor does not move."""
        return iter(self._values)

    def __repr__(self) -> str:
        return f"Data({', '.join(repr(value) for value in self._values)})"

    def copy(self, source: Data) -> None:
        """Replace the values with those of `source` (compound values are copied)."""
        self._values = [_copy_value(value) for value in source._values]
        self._current = -1

    # Putting values

    def put_object(self, value: Any) -> None:
        """Put any value `codec.encode` accepts; its Python type gives its AMQP type."""
        amqp_type_of(value)
        position = self._current + 1
        if position < len(self._values):
            self._values[position] = value
        else:
            self._values.append(value)
        self._current = position

    def put_dict(self, value: Mapping[Any, Any]) -> None:
        """Put a map."""
        self.put_object(dict(value))

    def put_sequence(self, value: list[Any] | tuple[Any, ...]) -> None:
        """Put a list."""
        self.put_object(list(value))

    def put_py_array(self, value: Array) -> None:
        """Put an `Array`."""
        self.put_object(value)

    def put_py_described(self, value: Described) -> None:
        """Put a `Described` value."""
        self.put_object(value)

    def put_null(self) -> None:
        self.put_object(None)

    def put_bool(self, value: bool) -> None:
        self.put_object(bool(value))

    def put_ubyte(self, value: int) -> None:
        self.put_object(ubyte(value))

    def put_byte(self, value: int) -> None:
        self.put_object(byte(value))

    def put_ushort(self, value: int) -> None:
        self.put_object(ushort(value))

    def put_short(self, value: int) -> None:
        self.put_object(short(value))

    def put_uint(self, value: int) -> None:
        self.put_object(uint(value))

    def put_int(self, value: int) -> None:
        self.put_object(int32(value))

    def put_char(self, value: str) -> None:
        self.put_object(char(value))

    def put_ulong(self, value: int) -> None:
        self.put_object(ulong(value))

    def put_long(self, value: int) -> None:
        self.put_object(int(value))

    def put_timestamp(self, value: int) -> None:
        self.put_object(timestamp(value))

    def put_float(self, value: float) -> None:
        self.put_object(float32(value))

    def put_double(self, value: float) -> None:
        self.put_object(float(value))

    def put_uuid(self, value: uuid.UUID) -> None:
        self.put_object(value)

    def put_binary(self, value: bytes) -> None:
        self.put_object(bytes(value))

    def put_string(self, value: str) -> None:
        self.put_object(str.__str__(value))

    def put_symbol(self, value: str) -> None:
        self.put_object(symbol(value))

    # Getting values

    def get_object(self) -> Any:
        """The current value, or None before the first."""
        return self._values[self._current] if self._current >= 0 else None

    def get_dict(self) -> dict[Any, Any] | None:
        """The current value if it is a map, else None."""
        value = self.get_object()
        return value if isinstance(value, dict) else None

    def get_sequence(self) -> list[Any] | None:
        """The current value if it is a list, else None."""
        value = self.get_object()
        return list(value) if isinstance(value, (list, tuple)) else None

    def get_py_array(self) -> Array | None:
        """The current value if it is an `Array`, else None."""
        value = self.get_object()
        return value if isinstance(value, Array) else None

    def get_py_described(self) -> Described | None:
        """The current value if it is a `Described`, else None."""
        value = self.get_object()
        return value if isinstance(value, Described) else None

    def is_null(self) -> bool:
        """Whether the current value is null."""
        return self._current >= 0 and self._values[self._current] is None

    # Bytes

    def encode(self) -> bytes:
        """The encodings of all values, one after another."""
        out = bytearray()
        for value in self._values:
            codec.encode_into(out, value)
        return bytes(out)

    def decode(self, encoded: bytes | bytearray | memoryview) -> int:
        """Decode one value from the start of `encoded` and put it; return the number
        of bytes it took. Raises `codec.DecodeError` for malformed input."""
        value, end = codec.decode_from(bytes(encoded))
        self.put_object(value)
        return end


def _copy_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_value(item) for item in value]
    if type(value) is Described:
        return Described(value.descriptor, _copy_value(value.value))
    return value
