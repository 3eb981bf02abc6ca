"""The sans-IO AMQP 1.0 protocol engine: endpoints, deliveries, SASL and the transport.

Bytes go in with `Transport.push`, events come out of the connection's `Collector`,
bytes to write come from `Transport.output`, and time only moves when `Transport.tick`
is called with it.
"""

from .endpoints import (
    Condition,
    Connection,
    Delivery,
    Disposition,
    Endpoint,
    Link,
    Receiver,
    Sender,
    Session,
)
from .events import Collector, Event, EventType
from .sasl import SASL
from .terminus import Terminus
from .transport import Transport

__all__ = [
    "SASL",
    "Collector",
    "Condition",
    "Connection",
    "Delivery",
    "Disposition",
    "Endpoint",
    "Event",
    "EventType",
    "Link",
    "Receiver",
    "Sender",
    "Session",
    "Terminus",
    "Transport",
]
