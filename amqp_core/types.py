"""AMQP 1.0 scalar wrappers and compound containers, named as in Qpid Proton.

Python's own types carry the AMQP types they map to naturally (None, bool, int as
long, float as double, str, bytes, uuid.UUID, list, dict). Every other AMQP type has a
small wrapper here, so a value keeps its exact AMQP type through a decode/encode round
trip. The wrappers check their range on construction: a value that cannot be encoded
fails where it was made, not later inside a frame.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, ClassVar, Self

__all__ = [
    "AMQPType",
    "Array",
    "Described",
    "UNDESCRIBED",
    "byte",
    "char",
    "decimal32",
    "decimal64",
    "decimal128",
    "float32",
    "int32",
    "short",
    "symbol",
    "timestamp",
    "ubyte",
    "uint",
    "ulong",
    "ushort",
]


class AMQPType(enum.IntEnum):
    """Type codes for `Array` elements; the numbers are Proton's `Data.NULL` ... `Data.MAP`."""

    NULL = 1
    BOOL = 2
    UBYTE = 3
    BYTE = 4
    USHORT = 5
    SHORT = 6
    UINT = 7
    INT = 8
    CHAR = 9
    ULONG = 10
    LONG = 11
    TIMESTAMP = 12
    FLOAT = 13
    DOUBLE = 14
    DECIMAL32 = 15
    DECIMAL64 = 16
    DECIMAL128 = 17
    UUID = 18
    BINARY = 19
    STRING = 20
    SYMBOL = 21
    DESCRIBED = 22
    ARRAY = 23
    LIST = 24
    MAP = 25


class _BoundedInt(int):
    """An int that accepts only values in [LOW, HIGH] and shows its AMQP type in repr."""

    __slots__ = ()
    LOW: ClassVar[int]
    HIGH: ClassVar[int]

    def __new__(cls, value: Any = 0) -> Self:
        number = int.__new__(cls, value)
        if not cls.LOW <= number <= cls.HIGH:
            raise ValueError(
                f"{cls.__name__} must be in [{cls.LOW}, {cls.HIGH}], not {int(number)}"
            )
        return number

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int.__repr__(self)})"


class ubyte(_BoundedInt):
    LOW, HIGH = 0, 2**8 - 1


class ushort(_BoundedInt):
    LOW, HIGH = 0, 2**16 - 1


class uint(_BoundedInt):
    LOW, HIGH = 0, 2**32 - 1


class ulong(_BoundedInt):
    LOW, HIGH = 0, 2**64 - 1


class byte(_BoundedInt):
    LOW, HIGH = -(2**7), 2**7 - 1


class short(_BoundedInt):
    LOW, HIGH = -(2**15), 2**15 - 1


class int32(_BoundedInt):
    LOW, HIGH = -(2**31), 2**31 - 1


class timestamp(_BoundedInt):
    """Milliseconds since the Unix epoch, signed 64 bits."""

    LOW, HIGH = -(2**63), 2**63 - 1


class decimal32(_BoundedInt):
    """The raw IEEE 754-2008 decimal32 bit pattern, as an unsigned integer."""

    LOW, HIGH = 0, 2**32 - 1


class decimal64(_BoundedInt):
    """The raw IEEE 754-2008 decimal64 bit pattern, as an unsigned integer."""

    LOW, HIGH = 0, 2**64 - 1


_FLOAT32 = struct.Struct(">f")


class float32(float):
    """A 32-bit IEEE 754 float. The value is rounded to single precision when made,
    so it compares equal to itself after a round trip."""

    __slots__ = ()

    def __new__(cls, value: Any = 0.0) -> float32:
        try:
            rounded = _FLOAT32.unpack(_FLOAT32.pack(float(value)))[0]
        except OverflowError:
            raise ValueError(f"float32 out of range: {value!r}") from None
        return float.__new__(cls, rounded)

    def __repr__(self) -> str:
        return f"float32({float.__repr__(self)})"


class decimal128(bytes):
    """The raw 16-byte IEEE 754-2008 decimal128 bit pattern."""

    __slots__ = ()

    def __new__(cls, value: bytes = bytes(16)) -> decimal128:
        self = bytes.__new__(cls, value)
        if len(self) != 16:
            raise ValueError(f"decimal128 takes exactly 16 bytes, not {len(self)}")
        return self

    def __repr__(self) -> str:
        return f"decimal128({bytes.__repr__(self)})"


class symbol(str):
    """A symbolic value from a constrained domain: ASCII text."""

    __slots__ = ()

    def __new__(cls, value: Any = "") -> symbol:
        if type(value) is cls:
            return value  # checked when made (or decoded: see codec._symbol)
        self = str.__new__(cls, value)
        if not self.isascii():
            raise ValueError(f"symbol must be ASCII: {str(self)!r}")
        return self

    def __repr__(self) -> str:
        return f"symbol({str.__repr__(self)})"


class char(str):
    """A single Unicode code point, sent as UTF-32BE."""

    __slots__ = ()

    def __new__(cls, value: Any = "\0") -> char:
        self = str.__new__(cls, value)
        if len(self) != 1:
            raise ValueError(f"char takes exactly one character, not {str(self)!r}")
        return self

    def __repr__(self) -> str:
        return f"char({str.__repr__(self)})"


class _Undescribed:
    """The descriptor of an `Array` whose elements are not described (Proton's name)."""

    _instance: _Undescribed | None = None

    def __new__(cls) -> _Undescribed:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDESCRIBED"

    def __reduce__(self) -> str:
        return "UNDESCRIBED"


UNDESCRIBED = _Undescribed()


class Described:
    """A value with a descriptor (a ulong code or a symbol) saying what it means."""

    __slots__ = ("descriptor", "value")

    def __init__(self, descriptor: Any, value: Any) -> None:
        self.descriptor = descriptor
        self.value = value

    def __repr__(self) -> str:
        return f"Described({self.descriptor!r}, {self.value!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Described):
            return NotImplemented
        return self.descriptor == other.descriptor and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.descriptor, self.value))


class Array:
    """A sequence of values of one AMQP type, optionally all with one descriptor.

    As in Proton: ``Array(UNDESCRIBED, AMQPType.INT, 1, 2, 3)``. A descriptor of
    ``None`` is a real descriptor (null), not the absence of one.
    """

    __slots__ = ("descriptor", "type", "elements")

    def __init__(self, descriptor: Any, type: int, *elements: Any) -> None:
        self.descriptor = descriptor
        self.type = AMQPType(type)
        self.elements = elements

    def __iter__(self) -> Any:
        return iter(self.elements)

    def __len__(self) -> int:
        return len(self.elements)

    def __repr__(self) -> str:
        items = "".join(f", {element!r}" for element in self.elements)
        return f"Array({self.descriptor!r}, {self.type.name}{items})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (
            self.descriptor == other.descriptor
            and self.type == other.type
            and list(self.elements) == list(other.elements)
        )

    def __hash__(self) -> int:
        return hash((self.descriptor, self.type, tuple(self.elements)))
