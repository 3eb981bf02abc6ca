"""The broker's nodes: queues (anycast, each message to one consumer) and topics
(multicast, each subscriber gets a copy), their consumers, and dispatch.

A message stays owned by its queue until the consumer it was sent to settles it as
accepted: until then it counts in the queue's depth, and released, modified or
unsettled-at-detach messages go back to their old place in the order.

Order: higher priority first, then arrival. Each message gets a key that says both
(`entry_key`), and a queue's waiting messages are a `SortedList` by key, so enqueue,
dispatch, removal and putting back cost O(log n) wherever the message is, whatever the
depth. A message whose time to live or absolute expiry time has passed is never
delivered: it is dropped when the broker's sweep finds it due in `Deadlines` (one index of
every queue's deadlines, in time order) or when dispatch reaches it, and counted as
expired.

A consumer with a selector keeps a cursor, the key of the last waiting message it
examined, and goes on from there: it examines each message once while the message waits.
Only a message that comes back behind its cursor (released, or of a higher priority) is
examined again, and those it remembers in a small heap. A consumer that refused messages
(modified, undeliverable-here) is served the same way.

Dispatch examines or sends at most `DISPATCH_SLICE` messages at a time and leaves the
rest to a later pass of the event loop: a selector matching nothing in a deep queue, or a
consumer granting a thousand credits at once, never holds the loop for long.

A waiting message is a plain tuple, `Entry`: (key, bytes as they arrived, deadline, store
id). Python's garbage collector stops tracking a tuple of immutable values, so a million
waiting messages add nothing to a full collection; and a message costs its bytes plus
about a hundred. Selectors decode what they read, on demand.

Paging (`amqp_core.broker.paging`): a queue may keep its newest messages on disk only.
It then holds their count and bytes (part of its depth) and the store id after which
they are; every message that arrives goes behind them, on disk too, until they are all
read back. A queue whose consumers have credit and whose messages in memory run short
asks for the next ones (`QueueContext.on_short`); they come back in arrival order and
take their place by priority among those in memory.
"""

from __future__ import annotations

import heapq
import itertools
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amqp_core.broker.sortedlist import SortedList
from amqp_core.message import Message

#: A waiting or unsettled message: (key, encoded, deadline, store id). The key orders it
#: (`entry_key`); the deadline (time.time()) is when it expires, or None; the store id is
#: its row in the durable store, or None.
Entry = tuple[int, bytes, float | None, int | None]

#: The key holds the priority above the arrival number: 2**48 arrivals per queue (nine
#: years at a million messages a second) before an arrival number could reach it.
PRIORITY_SHIFT = 48

#: Messages one dispatch examines (against selectors) or sends, at most: a few
#: milliseconds of work. The rest goes on in a later pass of the event loop.
DISPATCH_SLICE = 256

#: Decoded messages a queue keeps while its consumers scan, so that several selectors
#: examining the same messages decode each once.
DECODED_CACHE = 4 * DISPATCH_SLICE

#: Keys a consumer remembers to examine again before it starts over from the front (when
#: the queue holds fewer messages than that).
BEHIND_LIMIT = 1024

#: What a message in memory costs beyond its bytes, as counted against the broker's
#: memory bound: its tuple, its key, its slot in the sorted list (measured: 281 bytes of
#: RSS for a message of 113 bytes).
MESSAGE_OVERHEAD = 170

#: A queue with messages on disk asks for more when fewer than this wait in memory and a
#: consumer has credit: enough that a consumer granting a few hundred credits at once
#: finds them ready while the next slice is read.
PAGE_IN_BELOW = 512


def entry_key(priority: int, sequence: int) -> int:
    """The order of a message of `priority` (0-255, higher first) and arrival number."""
    return ((255 - min(max(priority, 0), 255)) << PRIORITY_SHIFT) | sequence


def priority_of(key: int) -> int:
    """The priority a key was made with."""
    return 255 - (key >> PRIORITY_SHIFT)


def deadline_of(message: Message, arrived: float) -> float | None:
    """When a message that arrived at `arrived` expires (its ttl counts from then), or
    None."""
    deadline = None
    if message.ttl:
        deadline = arrived + message.ttl
    if message.expiry_time:
        deadline = min(deadline or message.expiry_time, message.expiry_time)
    return deadline


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
    #: Messages counted in `depth` that are on disk only (paged out).
    paged: int = 0


class Deadlines:
    """When waiting messages expire, on every queue of a broker, in time order: a sweep
    takes only the ones due, however many queues and messages there are."""

    def __init__(self) -> None:
        self._index = SortedList()  # (deadline, queue number, key)
        self._queues: weakref.WeakValueDictionary[int, Queue] = weakref.WeakValueDictionary()
        self._numbers = itertools.count(1)

    def register(self, queue: Queue) -> int:
        """A number for `queue`, by which its deadlines are filed."""
        number = next(self._numbers)
        self._queues[number] = queue
        return number

    def add(self, deadline: float, number: int, key: int) -> None:
        self._index.add((deadline, number, key))

    def remove(self, deadline: float, number: int, key: int) -> None:
        self._index.remove((deadline, number, key))

    def expire(self, now: float, limit: int) -> bool:
        """Drop at most `limit` waiting messages whose deadline is `now` or earlier;
        return whether more are due."""
        index = self._index
        for _ in range(limit):
            if not index or index.first()[0] > now:
                return False
            _, number, key = index.pop_first()
            queue = self._queues.get(number)
            if queue is not None:  # else it was deleted, its messages with it
                queue.expire(key)
        return bool(index) and index.first()[0] <= now


@dataclass
class QueueContext:
    """What the queues of one broker share with it."""

    deadlines: Deadlines
    #: Called with a queue and each message it dropped because it expired.
    on_expired: Callable[[Queue, Entry], None]
    #: Runs a function in a later pass of the event loop: long work goes on there.
    later: Callable[[Callable[[], None]], None]
    #: Called with each change in the bytes the queues hold in memory (each message
    #: counted with `MESSAGE_OVERHEAD`).
    on_memory: Callable[[int], None]
    #: Called when a queue with messages on disk only has fewer than `PAGE_IN_BELOW` in
    #: memory while a consumer has credit: it wants the next ones.
    on_short: Callable[[Queue], None]


@dataclass(eq=False)
class Consumer:
    """One outgoing link on a queue: what it selects, how far it examined the queue, and
    what it has not settled."""

    link: Any
    selector: Any = None
    browsing: bool = False
    #: Examines messages before taking one: it has a selector, or refused some.
    scanning: bool = False
    #: The key of the last waiting message it examined (a browser: was shown); -1: none.
    cursor: int = -1
    #: A heap of keys that came back behind `cursor`: to examine before going on.
    behind: list[int] = field(default_factory=list)
    #: delivery -> entry, until the peer settles it.
    unsettled: dict[Any, Entry] = field(default_factory=dict)
    #: Keys of the messages the peer said are undeliverable here: never offered again.
    refused: set[int] = field(default_factory=set)
    #: In its queue's turn of consumers with credit.
    ready: bool = False

    def __post_init__(self) -> None:
        self.scanning = self.selector is not None


class Queue:
    """Messages in delivery order, and their consumers.

    Credit is shared fairly: consumers with credit take one message each in turn, and
    the one served last goes to the back of the turn.
    """

    def __init__(self, address: str, context: QueueContext, dynamic: bool = False) -> None:
        self.address = address
        self.dynamic = dynamic
        self.context = context
        self.number = context.deadlines.register(self)
        self.waiting = SortedList()
        self.consumers: list[Consumer] = []
        self.last_sequence = 0
        self.enqueued = 0
        self.dequeued = 0
        self.expired = 0
        #: Messages the queue owns: waiting, or sent and not yet settled.
        self.depth = 0
        #: Bytes of the messages it owns.
        self.depth_bytes = 0
        #: Messages counted in `depth` that are on disk only, their bytes, and the store
        #: id after which they are: each arrival goes there too while there are some.
        self.paged = 0
        self.paged_bytes = 0
        self.paged_after = 0
        self._ready: deque[Consumer] = deque()
        #: Consumers that are scanning and not browsing, whose cursor a message put back
        #: may be behind.
        self._scanning: list[Consumer] = []
        #: No scanning consumer's cursor is past this key.
        self._cursor_bound = -1
        #: key -> the consumers that refused that message.
        self._refusals: dict[int, list[Consumer]] = {}
        self._decoded: dict[int, Message] = {}
        self._continuing = False

    def publish(
        self,
        encoded: bytes,
        priority: int = Message.DEFAULT_PRIORITY,
        deadline: float | None = None,
        store_id: int | None = None,
    ) -> None:
        """Add a message behind those of its priority or higher."""
        self.last_sequence += 1
        self.enqueued += 1
        self.depth += 1
        self.depth_bytes += len(encoded)
        self.context.on_memory(len(encoded) + MESSAGE_OVERHEAD)
        self._insert((entry_key(priority, self.last_sequence), encoded, deadline, store_id))
        self.dispatch()

    def page_out(self, messages: int, size: int, after: int) -> None:
        """Count `messages` (`size` bytes in all) that arrived and are on disk only, with
        store ids above `after`: they come after every other message, and are read back
        with `page_in`."""
        if not self.paged:
            self.paged_after = after
        self.paged += messages
        self.paged_bytes += size
        self.enqueued += messages
        self.depth += messages
        self.depth_bytes += size

    def page_in(self, messages: list[tuple[int, bytes, int, float | None, int]]) -> None:
        """Take back the next messages from disk, in their order: each is (store id,
        bytes, priority, deadline, bytes on disk). The bytes may differ from those on
        disk: they carry the delivery count."""
        now = time.time()
        for store_id, encoded, priority, deadline, stored_size in messages:
            self.paged -= 1
            self.paged_bytes -= stored_size
            self.depth_bytes += len(encoded) - stored_size
            self.paged_after = store_id
            self.context.on_memory(len(encoded) + MESSAGE_OVERHEAD)
            self.last_sequence += 1
            entry = (entry_key(priority, self.last_sequence), encoded, deadline, store_id)
            if deadline is not None and deadline <= now:
                self._dropped(entry)
            else:
                self._insert(entry)
        self.dispatch()

    def _insert(self, entry: Entry) -> None:
        self.waiting.add(entry)
        key, _, deadline, _ = entry
        if deadline is not None:
            self.context.deadlines.add(deadline, self.number, key)
        if key <= self._cursor_bound:
            for consumer in self._scanning:
                if key <= consumer.cursor:
                    self._look_again(consumer, key)

    def _look_again(self, consumer: Consumer, key: int) -> None:
        behind = consumer.behind
        if len(behind) < max(BEHIND_LIMIT, len(self.waiting)):
            heapq.heappush(behind, key)
        else:  # a release storm: starting over costs less than remembering each
            consumer.cursor = -1
            behind.clear()

    def _remove(self, entry: Entry) -> None:
        self.waiting.remove(entry)
        key, _, deadline, _ = entry
        if deadline is not None:
            self.context.deadlines.remove(deadline, self.number, key)

    def release(
        self, consumer: Consumer, entry: Entry, failed: bool = False, undeliverable: bool = False
    ) -> int | None:
        """Put back in its place a message `consumer` gave back (released, modified, or
        left unsettled). `failed` counts a failed delivery: the new delivery count is
        returned. `undeliverable`: never offer it to that consumer again."""
        key, encoded, deadline, store_id = entry
        count = None
        if failed:
            message = Message()
            message.decode(encoded)
            message.delivery_count += 1
            count = message.delivery_count
            entry = (key, message.encode(), deadline, store_id)
            self.depth_bytes += len(entry[1]) - len(encoded)
            self.context.on_memory(len(entry[1]) - len(encoded))
            self._decoded.pop(key, None)
        if undeliverable:
            consumer.refused.add(key)
            self._refusals.setdefault(key, []).append(consumer)
            if not consumer.scanning:
                self._start_scanning(consumer)
        if deadline is not None and deadline <= time.time():
            self._dropped(entry)
        else:
            self._insert(entry)
        return count

    def consumed(self, entry: Entry) -> None:
        """Count a message its consumer accepted (or that left for the dead letters)."""
        self.dequeued += 1
        self._forget(entry)

    def expire(self, key: int) -> None:
        """Drop the waiting message `key`: its deadline passed (`Deadlines` knows)."""
        entry = self.waiting.find((key,))
        if entry is not None:
            self.waiting.remove(entry)
            self._dropped(entry)

    def _dropped(self, entry: Entry) -> None:
        self.expired += 1
        self._forget(entry)
        self.context.on_expired(self, entry)

    def _forget(self, entry: Entry) -> None:
        key, encoded, _, _ = entry
        self.depth -= 1
        self.depth_bytes -= len(encoded)
        self.context.on_memory(-len(encoded) - MESSAGE_OVERHEAD)
        for consumer in self._refusals.pop(key, ()):
            consumer.refused.discard(key)

    def discard(self) -> list[int]:
        """Forget every waiting message, as the queue is deleted (a dynamic queue whose
        consumer left, a topic's subscription); return their store ids."""
        store_ids = []
        for entry in self.waiting:
            self._forget(entry)
            if entry[3] is not None:
                store_ids.append(entry[3])
        self.waiting = SortedList()
        return store_ids

    def subscribe(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        if consumer.scanning and not consumer.browsing:
            self._scanning.append(consumer)
        self.wake(consumer)

    def _start_scanning(self, consumer: Consumer) -> None:
        consumer.scanning = True
        consumer.cursor = -1
        consumer.behind.clear()
        if not consumer.browsing:
            self._scanning.append(consumer)

    def unsubscribe(self, consumer: Consumer) -> None:
        """Remove a consumer, returning what it had not settled to the queue."""
        self.consumers.remove(consumer)
        if consumer in self._scanning:
            self._scanning.remove(consumer)
        if consumer.ready:
            self._ready.remove(consumer)
            consumer.ready = False
        for key in consumer.refused:
            refusing = self._refusals[key]
            refusing.remove(consumer)
            if not refusing:
                del self._refusals[key]
        consumer.refused.clear()
        for entry in consumer.unsettled.values():
            self.release(consumer, entry)
        consumer.unsettled.clear()
        self.dispatch()

    def wake(self, consumer: Consumer) -> None:
        """`consumer` may have credit now: give it its turn, and dispatch."""
        if not consumer.ready and consumer.link.credit:
            consumer.ready = True
            self._ready.append(consumer)
        self.dispatch()

    def dispatch(self) -> None:
        """Give each consumer with credit one message in turn until none can take more,
        or until `DISPATCH_SLICE` messages were examined or sent (then it goes on in a
        later pass)."""
        if self._continuing:
            return
        ready = self._ready
        waiting = self.waiting
        budget = DISPATCH_SLICE
        idle = 0  # consumers in a row that found nothing
        while ready and waiting and idle < len(ready):
            if budget <= 0:
                self._continue_later()
                return
            consumer = ready.popleft()
            link = consumer.link
            if not link.credit:
                consumer.ready = False
                continue
            entry, budget = self._next_for(consumer, budget)
            if entry is None:
                ready.append(consumer)
                if budget > 0:  # it examined all there is for it
                    idle += 1
                continue
            budget -= 1
            deadline = entry[2]
            if deadline is not None and deadline <= time.time():
                self._remove(entry)
                self._dropped(entry)
                ready.appendleft(consumer)
                continue
            self._send(consumer, entry)
            idle = 0
            if link.credit:
                ready.append(consumer)
            else:
                consumer.ready = False
        self._decoded.clear()
        if self.paged and ready and len(waiting) < PAGE_IN_BELOW:
            self.context.on_short(self)

    def _continue_later(self) -> None:
        self._continuing = True
        self.context.later(self._continue)

    def _continue(self) -> None:
        self._continuing = False
        self.dispatch()

    def _next_for(self, consumer: Consumer, budget: int) -> tuple[Entry | None, int]:
        """The next message for `consumer`, if any, and the budget left once the messages
        it examined are counted."""
        waiting = self.waiting
        if not (consumer.scanning or consumer.browsing):
            return waiting.first(), budget
        behind = consumer.behind
        while behind:
            if budget <= 0:
                return None, budget
            entry = waiting.find((heapq.heappop(behind),))
            if entry is not None:
                budget -= 1
                if self._wants(consumer, entry):
                    return entry, budget
        cursor = consumer.cursor
        found = None
        for entry in waiting.starting_at((cursor + 1,)):
            if budget <= 0:
                break
            budget -= 1
            cursor = entry[0]
            if self._wants(consumer, entry):
                found = entry
                break
        consumer.cursor = cursor
        if cursor > self._cursor_bound and not consumer.browsing:
            self._cursor_bound = cursor
        return found, budget

    def _wants(self, consumer: Consumer, entry: Entry) -> bool:
        key = entry[0]
        if key in consumer.refused:
            return False
        selector = consumer.selector
        if selector is None:
            return True
        message = self._decoded.get(key)
        if message is None:
            message = Message()
            message.decode(entry[1], body=False)
            if len(self._decoded) >= DECODED_CACHE:
                del self._decoded[next(iter(self._decoded))]
            self._decoded[key] = message
        return bool(selector.matches(message))

    def _send(self, consumer: Consumer, entry: Entry) -> None:
        link = consumer.link
        delivery = link.delivery(link.delivery_tag())
        link.stream(entry[1])
        link.advance()
        if consumer.browsing:
            delivery.settle()  # a copy: nothing to wait for
        else:
            self._remove(entry)
            consumer.unsettled[delivery] = entry

    @property
    def awaited(self) -> bool:
        """True when no message waits and a consumer has credit: the next one goes
        straight out."""
        return not self.waiting and bool(self._ready)

    @property
    def idle(self) -> bool:
        """True when nothing would be lost by forgetting this queue."""
        return not self.consumers and (self.dynamic or not (self.waiting or self.paged))


class Topic:
    """A multicast address: each subscriber has a queue of its own that gets a copy of
    every message published while it is subscribed. Nothing is kept for nobody."""

    def __init__(self, address: str, context: QueueContext) -> None:
        self.address = address
        self.context = context
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

    @property
    def paged(self) -> int:
        """Messages on disk only: none, a topic's subscriptions keep theirs in memory."""
        return 0

    def publish(
        self,
        encoded: bytes,
        priority: int = Message.DEFAULT_PRIORITY,
        deadline: float | None = None,
    ) -> None:
        self.enqueued += 1
        for queue in self.subscriptions.values():
            queue.publish(encoded, priority, deadline)

    def subscribe(self, consumer: Consumer) -> Queue:
        queue = Queue(self.address, self.context, dynamic=True)
        self.subscriptions[consumer] = queue
        queue.subscribe(consumer)
        return queue

    def unsubscribe(self, consumer: Consumer) -> None:
        queue = self.subscriptions.pop(consumer, None)
        if queue is not None:
            self._dequeued_by_former_subscribers += queue.dequeued
            self._expired_for_former_subscribers += queue.expired
            queue.discard()

    @property
    def idle(self) -> bool:
        return not self.subscriptions
