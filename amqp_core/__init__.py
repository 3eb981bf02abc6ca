"""amqp_core: a pure-Python AMQP 1.0 library with the API of Qpid Proton's Python binding.

Programs written for Proton's tutorial run with ``proton`` replaced by ``amqp_core`` in
their imports. This package needs nothing beyond the standard library.
"""

from .message import DataSections, Message, SequenceSections
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
    "UNDESCRIBED",
    "AMQPType",
    "Array",
    "DataSections",
    "Described",
    "Message",
    "SequenceSections",
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
