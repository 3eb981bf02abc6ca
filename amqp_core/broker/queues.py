"""The broker's nodes: queues (anycast, each message to one consumer) and topics
(multicast, each subscriber gets a copy), their consumers, and dispatch.

A message stays owned by its queue until the consumer it was sent to settles it as
accepted: until then it counts in the queue's depth, and released, modified or
unsettled-at-detach messages go back to their old place in the order.

Order: higher priority first, then arrival. A message whose time to live or absolute
expiry time has passed is never delivered: it is dropped from the queue when dispatch
reaches it or when the broker sweeps the queue, and counted as expired.
"""

from __future__ import annotations

import bisect
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AddressStats:
    """What `Broker.stats()` reports for one address."""

    depth: int
    enqueued: int
    dequeued: int
    consumers: int
    producers: int
    #: Bytes of the messages counted in `depth` (encoded as they arrived).
    depth_bytes: int = 0
    #: Messages dropped because their time to live or expiry time passed.
    expired: int = 0


@dataclass(eq=False, slots=True)
class Entry:
    """One message on a queue: the decoded message (to route and select on) and the
    bytes it arrived as (sent on as they are, and stored as they are)."""

    message: Any
    encoded: bytes
    #: Wall-clock time (time.time()) after which it is dropped, or None.
    deadline: float | None = None
    #: Its row in the durable store, or None.
    store_id: int | None = None
    #: Arrival number on its queue, set by `Queue.publish`.
    sequence: int = 0
    #: Sort key: higher priority first, then arrival.
    order: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, message: Any, encoded: bytes, now: float) -> Entry:
        """An entry for a message that arrived at `now` (its ttl counts from then)."""
        deadline = None
        if message.ttl:
            deadline = now + message.ttl
        if message.expiry_time:
            deadline = min(deadline or message.expiry_time, message.expiry_time)
        return cls(message, encoded, deadline)

    def copy(self) -> Entry:
        """The same message for another subscriber (which counts its own deliveries)."""
        return Entry(self.message, self.encoded, self.deadline)

    def count_failed_delivery(self) -> None:
        message = copy.copy(self.message)  # the original may be shared with other queues
        message.delivery_count += 1
        self.message = message
        self.encoded = message.encode()


def _order_of(entry: Entry) -> tuple[int, int]:
    return entry.order


@dataclass(eq=False)
class Consumer:
    """One outgoing link on a queue: what it selects, and what it has not settled."""

    link: Any
    selector: Any = None
    browsing: bool = False
    #: A browser's place: the order key of the last message it was shown a copy of.
    last_browsed: tuple[int, int] = (-256, 0)
    #: delivery -> entry, until the peer settles it.
    unsettled: dict[Any, Entry] = field(default_factory=dict)
    #: Sequence numbers the peer said are undeliverable here: never offered again.
    refused: set[int] = field(default_factory=set)

    def wants(self, entry: Entry) -> bool:
        if entry.sequence in self.refused:
            return False
        return self.selector is None or self.selector.matches(entry.message)


class Queue:
    """Messages in delivery order, each with a sequence number, and their consumers.

    Credit is shared fairly: consumers with credit take one message each in turn,
    and each dispatch starts with the consumer after the one served first last time.
    `discard` is called with each message the queue drops because it expired.
    """

    def __init__(
        self,
        address: str,
        dynamic: bool = False,
        discard: Callable[[Entry], None] | None = None,
    ) -> None:
        self.address = address
        self.dynamic = dynamic
        self.discard = discard
        self.entries: list[Entry] = []  # waiting, sorted by `order`
        self.consumers: list[Consumer] = []
        self.last_sequence = 0
        self.enqueued = 0
        self.dequeued = 0
        self.expired = 0
        #: Bytes of every message the queue owns (waiting or unsettled).
        self.depth_bytes = 0
        #: Messages waiting that have a deadline: when none do, sweeps cost nothing.
        self.expiring = 0
        self._next_consumer = 0

    @property
    def depth(self) -> int:
        """Messages the queue still owns: waiting, or sent and not yet settled."""
        return len(self.entries) + sum(len(c.unsettled) for c in self.consumers)

    def publish(self, entry: Entry) -> None:
        """Add a message behind those of its priority or higher."""
        self.last_sequence += 1
        self.enqueued += 1
        self.depth_bytes += len(entry.encoded)
        entry.sequence = self.last_sequence
        entry.order = (-entry.message.priority, entry.sequence)
        self._insert(entry)
        self.dispatch()

    def _insert(self, entry: Entry) -> None:
        if entry.deadline is not None:
            self.expiring += 1
        entries = self.entries
        if not entries or entries[-1].order < entry.order:
            entries.append(entry)  # the usual case: one priority, in arrival order
        else:
            bisect.insort(entries, entry, key=_order_of)

    def put_back(self, entry: Entry) -> None:
        """Return a message that was sent but not consumed to its old place."""
        self._insert(entry)

    def consumed(self, entry: Entry) -> None:
        """Count a message its consumer accepted (or that left for the dead letters)."""
        self.dequeued += 1
        self.depth_bytes -= len(entry.encoded)
        for consumer in self.consumers:
            consumer.refused.discard(entry.sequence)

    def subscribe(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def unsubscribe(self, consumer: Consumer) -> None:
        """Remove a consumer, returning what it had not settled to the queue."""
        self.consumers.remove(consumer)
        for entry in consumer.unsettled.values():
            self.put_back(entry)
        consumer.unsettled.clear()
        self.dispatch()

    def dispatch(self) -> None:
        """Give each consumer with credit one message in turn until none can take more."""
        count = len(self.consumers)
        if not count or not self.entries:
            return
        start = self._next_consumer % count
        order = self.consumers[start:] + self.consumers[:start]
        self._next_consumer = start + 1
        progress = True
        while progress and self.entries:
            progress = False
            for consumer in order:
                if consumer.link.credit and self._send_one(consumer):
                    progress = True

    def _send_one(self, consumer: Consumer) -> bool:
        entries = self.entries
        index = 0
        if consumer.browsing:
            index = bisect.bisect_right(entries, consumer.last_browsed, key=_order_of)
        now = time.time() if self.expiring else 0.0
        while index < len(entries):
            entry = entries[index]
            if self.expiring and entry.deadline is not None and entry.deadline <= now:
                del entries[index]
                self._expire(entry)
                continue
            if consumer.wants(entry):
                link = consumer.link
                delivery = link.delivery(link.delivery_tag())
                link.stream(entry.encoded)
                link.advance()
                if consumer.browsing:
                    consumer.last_browsed = entry.order
                    delivery.settle()  # a copy: nothing to wait for
                else:
                    del entries[index]
                    if entry.deadline is not None:
                        self.expiring -= 1
                    consumer.unsettled[delivery] = entry
                return True
            index += 1
        return False

    def sweep(self, now: float) -> None:
        """Drop the waiting messages whose deadline has passed."""
        if not self.expiring:
            return
        kept = []
        for entry in self.entries:
            if entry.deadline is not None and entry.deadline <= now:
                self._expire(entry)
            else:
                kept.append(entry)
        self.entries = kept

    def _expire(self, entry: Entry) -> None:
        self.expiring -= 1
        self.expired += 1
        self.depth_bytes -= len(entry.encoded)
        if self.discard is not None:
            self.discard(entry)

    @property
    def idle(self) -> bool:
        """True when nothing would be lost by forgetting this queue."""
        return not self.consumers and (self.dynamic or not self.entries)


class Topic:
    """A multicast address: each subscriber has a queue of its own that gets a copy of
    every message published while it is subscribed. Nothing is kept for nobody."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.subscriptions: dict[Consumer, Queue] = {}
        self.enqueued = 0
        self._dequeued_by_former_subscribers = 0
        self._expired_for_former_subscribers = 0

    @property
    def depth(self) -> int:
        """The deepest subscription: the one that holds publishers back."""
        return max((queue.depth for queue in self.subscriptions.values()), default=0)

    @property
    def depth_bytes(self) -> int:
        return max((queue.depth_bytes for queue in self.subscriptions.values()), default=0)

    @property
    def dequeued(self) -> int:
        current = sum(queue.dequeued for queue in self.subscriptions.values())
        return self._dequeued_by_former_subscribers + current

    @property
    def expired(self) -> int:
        current = sum(queue.expired for queue in self.subscriptions.values())
        return self._expired_for_former_subscribers + current

    @property
    def consumers(self) -> list[Consumer]:
        return list(self.subscriptions)

    def publish(self, entry: Entry) -> None:
        self.enqueued += 1
        for queue in self.subscriptions.values():
            queue.publish(entry.copy())

    def subscribe(self, consumer: Consumer) -> Queue:
        queue = Queue(self.address, dynamic=True)
        queue.subscribe(consumer)
        self.subscriptions[consumer] = queue
        return queue

    def unsubscribe(self, consumer: Consumer) -> None:
        queue = self.subscriptions.pop(consumer, None)
        if queue is not None:
            self._dequeued_by_former_subscribers += queue.dequeued
            self._expired_for_former_subscribers += queue.expired

    def sweep(self, now: float) -> None:
        for queue in self.subscriptions.values():
            queue.sweep(now)

    @property
    def idle(self) -> bool:
        return not self.subscriptions
