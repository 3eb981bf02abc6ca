"""amqp_core: a pure-Python AMQP 1.0 library with the API of Qpid Proton's Python binding.

Programs written for Proton's tutorial run with ``proton`` replaced by ``amqp_core`` in
their imports. This package needs nothing beyond the standard library.
"""

from .data import Data
from .engine import (
    SASL,
    Collector,
    Condition,
    Connection,
    Delivery,
    Disposition,
    Endpoint,
    Event,
    Link,
    Receiver,
    Sender,
    Session,
    Terminus,
    Transport,
)
from .exceptions import (
    ConnectionException,
    LinkException,
    MessageException,
    ProtonException,
    SessionException,
    Timeout,
)
from .handlers import Handler
from .message import DataSections, Message, SequenceSections
from .sslconfig import SSL, SSLDomain
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
from .url import Url

__all__ = [
    "SASL",
    "SSL",
    "SSLDomain",
    "Collector",
    "Condition",
    "Connection",
    "ConnectionException",
    "LinkException",
    "MessageException",
    "ProtonException",
    "SessionException",
    "Timeout",
    "Data",
    "Delivery",
    "Disposition",
    "Endpoint",
    "Event",
    "Handler",
    "Link",
    "Receiver",
    "Sender",
    "Session",
    "Terminus",
    "Transport",
    "Url",
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
