"""The reactor layer: Container, Acceptor, timers, reconnect backoff and link options.

Names as in Proton's `proton.reactor`.
"""

from .backoff import Backoff
from .container import Acceptor, Container, Event, Task
from .options import (
    AtLeastOnce,
    AtMostOnce,
    Copy,
    DurableSubscription,
    DynamicNodeProperties,
    Filter,
    LinkOption,
    Move,
    ReceiverOption,
    Selector,
    SenderOption,
)

__all__ = [
    "Acceptor",
    "AtLeastOnce",
    "AtMostOnce",
    "Backoff",
    "Container",
    "Copy",
    "DurableSubscription",
    "DynamicNodeProperties",
    "Event",
    "Filter",
    "LinkOption",
    "Move",
    "ReceiverOption",
    "Selector",
    "SenderOption",
    "Task",
]
