"""The broker's nodes: queues (anycast, each message to one consumer) and topics
(multicast, each subscriber gets a copy), their consumers, and dispatch.

A message stays owned by its queue until the consumer it was sent to settles it as
accepted: until then it counts in the queue's depth, and released, modified or
unsettled-at-detach messages go back to their old place in the order.
"""

from __future__ import annotations

import bisect
import copy
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


@dataclass(eq=False)
class Consumer:
    """One outgoing link on a queue: what it selects, and what it has not settled."""

    link: Any
    selector: Any = None
    browsing: bool = False
    #: A browser's place: the sequence number of the last message it was shown a copy of.
    last_browsed: int = 0
    #: delivery -> (sequence number, message), until the peer settles it.
    unsettled: dict[Any, tuple[int, Any]] = field(default_factory=dict)
    #: Sequence numbers the peer said are undeliverable here: never offered again.
    refused: set[int] = field(default_factory=set)

    def wants(self, sequence: int, message: Any) -> bool:
        if self.browsing and sequence <= self.last_browsed:
            return False
        if sequence in self.refused:
            return False
        return self.selector is None or self.selector.matches(message)


def _sequence_of(entry: tuple[int, Any]) -> int:
    return entry[0]


class Queue:
    """Messages in arrival order, each with a sequence number, and their consumers.

    Credit is shared fairly: consumers with credit take one message each in turn,
    and each dispatch starts with the consumer after the one served first last time.
    """

    def __init__(self, address: str, dynamic: bool = False) -> None:
        self.address = address
        self.dynamic = dynamic
        self.entries: list[tuple[int, Any]] = []  # (sequence number, message), sorted
        self.consumers: list[Consumer] = []
        self.last_sequence = 0
        self.enqueued = 0
        self.dequeued = 0
        #: sequence number -> store id, for the durable messages the queue holds.
        self.store_ids: dict[int, int] = {}
        self._next_consumer = 0

    @property
    def depth(self) -> int:
        """Messages the queue still owns: waiting, or sent and not yet settled."""
        return len(self.entries) + sum(len(c.unsettled) for c in self.consumers)

    def publish(self, message: Any, store_id: int | None = None) -> None:
        """Add a message at the end (`store_id`: its row in the durable store)."""
        self.last_sequence += 1
        self.enqueued += 1
        self.entries.append((self.last_sequence, message))
        if store_id is not None:
            self.store_ids[self.last_sequence] = store_id
        self.dispatch()

    def put_back(self, sequence: int, message: Any) -> None:
        """Return a message that was sent but not consumed to its old place."""
        bisect.insort(self.entries, (sequence, message), key=_sequence_of)

    def consumed(self, sequence: int) -> int | None:
        """Count a message its consumer accepted (or that left for the dead letters);
        return its store id, if it is durable."""
        self.dequeued += 1
        for consumer in self.consumers:
            consumer.refused.discard(sequence)
        return self.store_ids.pop(sequence, None)

    def subscribe(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def unsubscribe(self, consumer: Consumer) -> None:
        """Remove a consumer, returning what it had not settled to the queue."""
        self.consumers.remove(consumer)
        for sequence, message in consumer.unsettled.values():
            self.put_back(sequence, message)
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
        start = 0
        if consumer.browsing:
            start = bisect.bisect_right(self.entries, consumer.last_browsed, key=_sequence_of)
        for index in range(start, len(self.entries)):
            sequence, message = self.entries[index]
            if consumer.wants(sequence, message):
                delivery = consumer.link.send(message)
                if consumer.browsing:
                    consumer.last_browsed = sequence
                else:
                    del self.entries[index]
                    consumer.unsettled[delivery] = (sequence, message)
                return True
        return False

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

    @property
    def depth(self) -> int:
        """The deepest subscription: the one that holds publishers back."""
        return max((queue.depth for queue in self.subscriptions.values()), default=0)

    @property
    def dequeued(self) -> int:
        current = sum(queue.dequeued for queue in self.subscriptions.values())
        return self._dequeued_by_former_subscribers + current

    @property
    def consumers(self) -> list[Consumer]:
        return list(self.subscriptions)

    def publish(self, message: Any) -> None:
        self.enqueued += 1
        for queue in self.subscriptions.values():
            queue.publish(copy.copy(message))  # its delivery count is its own

    def subscribe(self, consumer: Consumer) -> Queue:
        queue = Queue(self.address, dynamic=True)
        queue.subscribe(consumer)
        self.subscriptions[consumer] = queue
        return queue

    def unsubscribe(self, consumer: Consumer) -> None:
        queue = self.subscriptions.pop(consumer, None)
        if queue is not None:
            self._dequeued_by_former_subscribers += queue.dequeued

    @property
    def idle(self) -> bool:
        return not self.subscriptions
