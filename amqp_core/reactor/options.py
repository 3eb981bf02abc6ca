"""Link options: small objects passed as ``options=`` to ``create_sender`` or
``create_receiver`` that configure the new link before it is opened, as in Proton
(``Selector("colour = 'green'")``, ``Copy()``, ``AtMostOnce()`` ...).

The container calls ``option.apply(link)`` for each option whose ``option.test(link)``
is true. An option only touches the attributes of `LinkLike`, so it works on any link
object that has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..engine.terminus import RCV_FIRST, SND_SETTLED, SND_UNSETTLED, Terminus
from ..types import Described, symbol

__all__ = [
    "AtLeastOnce",
    "AtMostOnce",
    "Copy",
    "DurableSubscription",
    "DynamicNodeProperties",
    "Filter",
    "LinkLike",
    "LinkOption",
    "Move",
    "ReceiverOption",
    "SELECTOR_FILTER",
    "Selector",
    "SenderOption",
]

#: The descriptor of the JMS-style selector filter (AMQP filter registry).
SELECTOR_FILTER = symbol("apache.org:selector-filter:string")


class LinkLike(Protocol):
    """What an option may read or change on a link."""

    @property
    def is_sender(self) -> bool: ...

    @property
    def is_receiver(self) -> bool: ...

    @property
    def source(self) -> Terminus: ...

    @property
    def target(self) -> Terminus: ...

    snd_settle_mode: int
    rcv_settle_mode: int


class LinkOption:
    """Base of link options: `apply` configures a link, `test` says whether it should."""

    def apply(self, link: LinkLike) -> None:
        """Configure `link`; the base class does nothing."""

    def test(self, link: LinkLike) -> bool:
        """Whether this option applies to `link`; the base class applies to every link."""
        return True


class AtMostOnce(LinkOption):
    """Messages are sent settled: none is sent twice, any may be lost."""

    def apply(self, link: LinkLike) -> None:
        link.snd_settle_mode = SND_SETTLED


class AtLeastOnce(LinkOption):
    """Messages are sent unsettled and the receiver settles first: each arrives, maybe
    more than once."""

    def apply(self, link: LinkLike) -> None:
        link.snd_settle_mode = SND_UNSETTLED
        link.rcv_settle_mode = RCV_FIRST


class SenderOption(LinkOption):
    """Base of options that apply only to senders."""

    def test(self, link: LinkLike) -> bool:
        return link.is_sender


class ReceiverOption(LinkOption):
    """Base of options that apply only to receivers."""

    def test(self, link: LinkLike) -> bool:
        return link.is_receiver


class DynamicNodeProperties(LinkOption):
    """Ask for a dynamic node with these properties (str keys become symbols): set on
    the source of a receiver and the target of a sender."""

    def __init__(self, props: Mapping[Any, Any] | None = None) -> None:
        self.properties = {symbol(key): value for key, value in (props or {}).items()}

    def apply(self, link: LinkLike) -> None:
        terminus = link.source if link.is_receiver else link.target
        terminus.properties.put_dict(self.properties)


class Filter(ReceiverOption):
    """Set a receiver's filter set: symbol keys, usually `Described` filter values."""

    def __init__(self, filter_set: Mapping[Any, Any] | None = None) -> None:
        self.filter_set = dict(filter_set or {})

    def apply(self, link: LinkLike) -> None:
        link.source.filter.put_dict(self.filter_set)


class Selector(Filter):
    """Receive only messages matching a selector (a SQL-like condition on headers and
    properties), under the filter name `name`."""

    def __init__(self, value: str, name: str = "selector") -> None:
        super().__init__({symbol(name): Described(SELECTOR_FILTER, value)})


class DurableSubscription(ReceiverOption):
    """Keep the subscription and its unsettled state across detaches and restarts:
    durability DELIVERIES, expiry policy NEVER."""

    def apply(self, link: LinkLike) -> None:
        link.source.durability = Terminus.DELIVERIES
        link.source.expiry_policy = Terminus.EXPIRE_NEVER


class Move(ReceiverOption):
    """Take messages from the node (distribution mode move): receivers compete."""

    def apply(self, link: LinkLike) -> None:
        link.source.distribution_mode = Terminus.DIST_MODE_MOVE


class Copy(ReceiverOption):
    """Browse: receive copies and leave the messages on the node (distribution mode
    copy)."""

    def apply(self, link: LinkLike) -> None:
        link.source.distribution_mode = Terminus.DIST_MODE_COPY
