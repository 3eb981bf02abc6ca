"""The broker as a MessagingHandler: it listens, routes what producers send to queues
and topics, hands messages to consumers, and settles with producers and consumers.

Addressing:
- an address starting with `BrokerConfig.topic_prefix` (default ``topic/``) is a
  topic: every receiver attached at that moment gets a copy, nothing is kept;
- any other address is a queue, created on first use (anycast);
- a dynamic receiver gets a queue with a generated address, deleted on detach;
- a sender with no target (ANONYMOUS-RELAY) routes each message by its `address`.

Messages are kept and forwarded as the bytes they came as. The broker reads the
sections before the body (header and properties: routing, priority, expiry, selectors)
and never the body, which it neither decodes nor checks: a body that is not valid AMQP
is its consumer's to reject.

Outcomes from consumers: accepted removes the message; released puts it back in its
place; modified counts a failed delivery (delivery-failed) and, with
undeliverable-here, never offers it to that link again; rejected moves it to the
dead-letter address (default ``DLQ``).

Limits: a full queue (`max_queue_depth` messages or `max_queue_bytes` bytes) gets no
more credit for its producers; an ANONYMOUS-RELAY sender, whose credit serves every
address, gets its message to a full queue released instead. Connections, links per
connection and message size are limited too, each refused with
``amqp:resource-limit-exceeded`` (``amqp:link:message-size-exceeded`` for size).

Costs: the credit of each address's producers is counted as it is granted and used, and
the producers held back by a full queue are remembered; when room comes (a message
consumed or expired, a producer gone) only those get credit. Once a second the broker
drops the expired messages, which `Deadlines` hands over in time order: nothing runs per
address, per producer or per connection, so idle links cost nothing.

Durability: with `BrokerConfig.data_dir`, a durable message sent to a queue is written
to the store (`amqp_core.broker.store`) before it is accepted, and removed once a
consumer accepted it. Store writes are batched: what arrives in one pass of the event
loop is written in one transaction when the container runs out of events
(``on_reactor_quiesced``), before anything is written back to a peer. Topics keep
nothing, so they store nothing.

Memory (`amqp_core.broker.paging`): with `BrokerConfig.max_memory`, a queue's messages
beyond the bound stay in the store only, non-durable ones too, and are read back as
consumers catch up. At start the broker counts each queue's stored messages (one query)
and listens at once; the messages are read back the same way, a slice at a time.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqp_core import Condition, Delivery, symbol
from amqp_core.broker.filters import requested_selector
from amqp_core.broker.paging import Pager
from amqp_core.broker.queues import (
    MESSAGE_OVERHEAD,
    AddressStats,
    Consumer,
    Deadlines,
    Entry,
    Queue,
    QueueContext,
    Topic,
    deadline_of,
    priority_of,
)
from amqp_core.broker.selector import SelectorError
from amqp_core.broker.store import MessageStore, StoreError
from amqp_core.codec import DecodeError
from amqp_core.handlers import IncomingMessageHandler, MessagingHandler
from amqp_core.message import Message

log = logging.getLogger(__name__)

#: Credit granted to each producer link at a time: a durable burst of this many
#: messages is one store transaction (RabbitMQ grants 65536, Artemis 1000).
PRODUCER_CREDIT_WINDOW = 100

#: Largest message accepted by default: big enough for any sensible payload, small
#: enough that one peer cannot make the broker buffer without bound.
MAX_MESSAGE_SIZE = 64 * 1024 * 1024

#: How often the broker drops the messages whose deadline passed, in seconds.
EXPIRY_SWEEP_INTERVAL = 1.0

#: Expired messages dropped in one pass of the event loop, at most (a few milliseconds):
#: when a million expire at once, the others go on in the next passes.
EXPIRY_SLICE = 256

RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
MESSAGE_SIZE = "amqp:link:message-size-exceeded"

#: How the broker tells a producer what became of its message: (Delivery state, condition).
Settle = Callable[[int, Condition | None], None]


@dataclass
class BrokerConfig:
    """How the broker listens, names its addresses, and limits its queues."""

    #: Where to listen, HOST:PORT.
    address: str = "localhost:5672"
    #: Addresses starting with this are topics (multicast); the others are queues.
    topic_prefix: str = "topic/"
    #: Where rejected messages go.
    dead_letter_address: str = "DLQ"
    #: Messages a queue holds (waiting or unsettled) before its producers get no more
    #: credit (a topic: its fullest subscriber); None: no limit.
    max_queue_depth: int | None = None
    #: Bytes a queue holds before its producers get no more credit; None: no limit.
    #: Credit already granted may take a queue past it by one credit window.
    max_queue_bytes: int | None = None
    #: Credit granted to each producer link at a time.
    producer_credit_window: int = PRODUCER_CREDIT_WINDOW
    #: Where durable messages are stored; None: every message stays in memory only.
    data_dir: Path | None = None
    #: Bytes of messages (each counted with `queues.MESSAGE_OVERHEAD`) that queues hold
    #: in memory before further ones stay on disk only (`paging`); needs `data_dir`.
    #: None: no bound.
    max_memory: int | None = None
    #: Open connections at a time; None: no limit.
    max_connections: int | None = None
    #: Links attached on one connection at a time; None: no limit.
    max_links_per_connection: int | None = None
    #: Largest message accepted, in bytes (announced in each producer's attach).
    max_message_size: int = MAX_MESSAGE_SIZE


@dataclass(eq=False, slots=True)
class _Producer:
    """A producer link: its target address (None: ANONYMOUS-RELAY), and the credit
    granted to it that it has not used yet."""

    address: str | None
    credit: int = 0


@dataclass(eq=False)
class _Producers:
    """The producer links of one address."""

    count: int = 0
    #: Credit granted to them and not used yet, in all.
    credit: int = 0
    #: The links given less than their window for want of room, in the order they asked:
    #: the ones to give credit to when room comes.
    held: dict[Any, None] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Arrival:
    """A message routed to a node, and what the node needs to queue it."""

    #: How to settle with its producer, or None (a dead letter).
    settle: Settle | None
    node: Queue | Topic
    encoded: bytes
    priority: int
    deadline: float | None
    durable: bool
    #: Its row in the durable store, once written there.
    store_id: int | None = None
    #: Kept on disk only (`paging`).
    paged: bool = False


class Broker(MessagingHandler):
    """An AMQP 1.0 broker; run it with `Container(Broker(config)).run()`."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        # No prefetch: producers' credit is granted here, as the queues have room.
        super().__init__(prefetch=0)
        # Incoming messages are read here (`on_delivery`), keeping the bytes they came as.
        self.handlers = [h for h in self.handlers if not isinstance(h, IncomingMessageHandler)]
        self.config = config or BrokerConfig()
        if self.config.max_memory is not None and self.config.data_dir is None:
            raise ValueError("max_memory needs a data_dir: messages beyond it go to the store")
        self.nodes: dict[str, Queue | Topic] = {}
        self.consumers: dict[Any, tuple[Queue | Topic, Consumer, Queue]] = {}
        self.producers: dict[Any, _Producer] = {}  # incoming link -> its producer
        self._producers_at: dict[str, _Producers] = {}  # address -> its producers
        self.connections: dict[Any, int] = {}  # open connection -> links attached on it
        self.acceptor: Any = None
        self.store: MessageStore | None = None
        self.container: Any = None
        self.deadlines = Deadlines()
        self.pager = Pager(self.config.max_memory, self._after)
        self._queue_context = QueueContext(
            self.deadlines, self._expired, self._later, self.pager.held, self.pager.short
        )
        # Waiting for the next store write.
        self._arrivals: list[_Arrival] = []
        self._store_write_scheduled = False
        self._removals: list[int] = []
        self._delivery_counts: list[tuple[int, int]] = []

    # -- nodes ----------------------------------------------------------------------------

    def node(self, address: str) -> Queue | Topic:
        """The queue or topic at `address`, created if nobody used it before."""
        node = self.nodes.get(address)
        if node is None:
            if address.startswith(self.config.topic_prefix):
                node = Topic(address, self._queue_context)
            else:
                node = Queue(address, self._queue_context)
            self.nodes[address] = node
        return node

    def stats(self) -> dict[str, AddressStats]:
        """Per-address statistics: depth, enqueued, dequeued, consumers, producers."""
        producers = self._producers_at
        return {
            address: AddressStats(
                depth=node.depth,
                enqueued=node.enqueued,
                dequeued=node.dequeued,
                consumers=len(node.consumers),
                producers=producers[address].count if address in producers else 0,
                depth_bytes=node.depth_bytes,
                expired=node.expired,
                paged=node.paged,
            )
            for address, node in self.nodes.items()
        }

    def _full(self, node: Queue | Topic) -> bool:
        config = self.config
        return (config.max_queue_depth is not None and node.depth >= config.max_queue_depth) or (
            config.max_queue_bytes is not None and node.depth_bytes >= config.max_queue_bytes
        )

    def _forget_if_idle(self, address: str) -> None:
        node = self.nodes.get(address)
        if node is not None and node.idle and address not in self._producers_at:
            del self.nodes[address]
            if isinstance(node, Queue):
                # A dynamic queue's messages go with it.
                self._removals.extend(node.discard())

    def _expired(self, queue: Queue, entry: Entry) -> None:
        """A queue dropped a message whose deadline passed."""
        store_id = entry[3]
        if store_id is not None:
            self._removals.append(store_id)
        self._resume_producers(queue.address)

    def _later(self, function: Callable[[], None]) -> None:
        self.container.schedule(0, _Call(function))

    def _after(self, delay: float, function: Callable[[], None]) -> None:
        self.container.schedule(delay, _Call(function))

    def on_timer_task(self, event: Any) -> None:
        more = self.deadlines.expire(time.time(), EXPIRY_SLICE)
        event.container.schedule(0 if more else EXPIRY_SWEEP_INTERVAL, self)

    # -- connections and links ------------------------------------------------------------

    def on_start(self, event: Any) -> None:
        self.container = event.container
        if self.config.data_dir is not None:
            self.store = MessageStore.open(self.config.data_dir)
            self._recover(self.store)
        self.acceptor = event.container.listen(self.config.address)
        event.container.schedule(EXPIRY_SWEEP_INTERVAL, self)

    def _recover(self, store: MessageStore) -> None:
        """Count the stored messages back on their queues, as on disk only: they are read
        back a slice at a time (`paging`), while the broker already listens."""
        for address, (messages, size) in store.totals().items():
            node = self.node(address)
            if isinstance(node, Topic):
                log.warning("stored messages for %s left in the store: it is a topic now", address)
                continue
            self.pager.page_out(node, messages, size, after=0)
        self.pager.start(store)

    def close(self) -> None:
        """Close the store, once the container has stopped."""
        if self.store is not None:
            self._write_store()
            self.pager.stop()
            self.store.close()
            self.store = None

    def on_transport_error(self, event: Any) -> None:
        # A client that vanished or spoke garbage: its business, not the broker's failure.
        condition = event.transport.condition if event.transport is not None else None
        log.info("connection ended: %s", condition)

    def on_connection_opening(self, event: Any) -> None:
        connection = event.connection
        limit = self.config.max_connections
        if limit is not None and len(self.connections) >= limit:
            connection.condition = Condition(
                RESOURCE_LIMIT, f"this broker accepts at most {limit} connections"
            )
            connection.open()
            connection.close()
            return
        self.connections[connection] = 0
        connection.offered_capabilities = [symbol("ANONYMOUS-RELAY")]

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        limit = self.config.max_links_per_connection
        if limit is not None and self.connections.get(link.connection, 0) >= limit:
            _refuse(link, f"at most {limit} links per connection", RESOURCE_LIMIT)
            return
        if link.is_receiver:
            # No target address: ANONYMOUS-RELAY, each message names its own address.
            address = link.remote_target.address
            link.target.address = address
            link.max_message_size = self.config.max_message_size
            self._count_link(link, +1)
            self.producers[link] = _Producer(address)
            if address is not None:
                self.node(address)
                self._producers_at.setdefault(address, _Producers()).count += 1
            return
        source = link.remote_source
        if source.dynamic:
            address = str(uuid.uuid4())
            self.nodes[address] = Queue(address, self._queue_context, dynamic=True)
        elif source.address:
            address = source.address
        else:
            _refuse(link, "a source address is required")
            return
        link.source.address = address
        try:
            requested = requested_selector(source)
        except SelectorError as error:
            _refuse(link, str(error))
            return
        selector = None
        if requested is not None:
            # Echoed only because it is applied.
            name, value, selector = requested
            link.source.filter.put_dict({name: value})
        browsing = source.distribution_mode == source.DIST_MODE_COPY
        link.source.distribution_mode = source.distribution_mode
        consumer = Consumer(link, selector, browsing)
        node = self.node(address)
        if isinstance(node, Topic):
            queue = node.subscribe(consumer)
        else:
            queue = node
            node.subscribe(consumer)
        self._count_link(link, +1)
        self.consumers[link] = (node, consumer, queue)

    def _count_link(self, link: Any, change: int) -> None:
        connection = link.connection
        if connection in self.connections:
            self.connections[connection] += change

    def on_link_opened(self, event: Any) -> None:
        link = event.link
        if link in self.producers:
            self._grant_credit(link)
        elif link in self.consumers:
            _, consumer, queue = self.consumers[link]
            queue.wake(consumer)

    def _grant_credit(self, link: Any) -> None:
        """Top a producer's credit up to the window, as far as its queue has room; if it
        has not room for that, remember the producer as held back."""
        producer = self.producers.get(link)
        if producer is None:
            return
        wanted = self.config.producer_credit_window - producer.credit
        if wanted <= 0:
            return
        address = producer.address
        if address is not None:
            producers = self._producers_at[address]
            room = self._room(self.node(address), producers)
            if room < wanted:
                producers.held[link] = None
                wanted = room
            else:
                producers.held.pop(link, None)
            if wanted <= 0:
                return
            producers.credit += wanted
        producer.credit += wanted
        link.flow(wanted)

    def _room(self, node: Queue | Topic, producers: _Producers) -> int:
        """Messages the producers of `node` may be granted credit for, beyond theirs."""
        config = self.config
        room = config.producer_credit_window
        if config.max_queue_depth is not None:
            room = min(room, config.max_queue_depth - node.depth - producers.credit)
        if config.max_queue_bytes is not None and node.depth_bytes >= config.max_queue_bytes:
            room = 0
        return room

    def _credit_used(self, link: Any) -> None:
        """A producer sent a transfer: one credit less."""
        producer = self.producers.get(link)
        if producer is not None and producer.credit > 0:
            producer.credit -= 1
            if producer.address is not None:
                self._producers_at[producer.address].credit -= 1

    def _resume_producers(self, address: str) -> None:
        """Room may have come at `address`: grant credit to the producers held back, in
        turn, while there is room. Costs nothing when none is held back."""
        producers = self._producers_at.get(address)
        if producers is None:
            return
        held = producers.held
        while held:
            link = next(iter(held))
            self._grant_credit(link)
            if link in held:
                return  # no more room

    def on_link_closing(self, event: Any) -> None:
        self._detach(event.link)

    def on_link_error(self, event: Any) -> None:
        # The client closed its link with an error: that link ends, its connection stays.
        self._detach(event.link)

    def on_link_remote_detach(self, event: Any) -> None:
        # Detached without closing (a JMS durable subscriber does): gone all the same.
        self._detach(event.link)
        event.link.detach()

    def on_session_closing(self, event: Any) -> None:
        self._drop_session(event.session)

    def on_session_error(self, event: Any) -> None:
        self._drop_session(event.session)

    def on_connection_error(self, event: Any) -> None:
        self._drop_connection(event.connection)

    def _drop_session(self, session: Any) -> None:
        """An ended session detaches its links."""
        link = session.connection.link_head(0)
        while link:
            if link.session is session:
                self._detach(link)
            link = link.next(0)

    def on_connection_closing(self, event: Any) -> None:
        self._drop_connection(event.connection)

    def on_disconnected(self, event: Any) -> None:
        self._drop_connection(event.connection)

    def _drop_connection(self, connection: Any) -> None:
        link = connection.link_head(0)
        while link:
            self._detach(link)
            link = link.next(0)
        self.connections.pop(connection, None)

    def _detach(self, link: Any) -> None:
        producer = self.producers.pop(link, None)
        if producer is not None:
            self._count_link(link, -1)
            address = producer.address
            if address is not None:
                producers = self._producers_at[address]
                producers.count -= 1
                producers.credit -= producer.credit
                producers.held.pop(link, None)
                if producers.count:
                    self._resume_producers(address)  # its credit is room for the others
                else:
                    del self._producers_at[address]
                self._forget_if_idle(address)
            return
        entry = self.consumers.pop(link, None)
        if entry is None:
            return
        self._count_link(link, -1)
        node, consumer, queue = entry
        queue.unsubscribe(consumer)
        if isinstance(node, Topic):
            node.unsubscribe(consumer)
        self._resume_producers(node.address)
        self._forget_if_idle(node.address)

    # -- messages ---------------------------------------------------------------------------

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        if not link.is_receiver:
            return  # our own sends: the OutgoingMessageHandler child reports those
        if delivery.aborted:
            delivery.settle()
            self._credit_used(link)
            self._grant_credit(link)
            return
        if delivery.partial or not delivery.readable:
            return
        encoded = link.recv(delivery.pending) or b""
        link.advance()
        self._credit_used(link)
        message = Message()
        try:
            # What routing reads (header, properties) and no more: a body of 50 MB is
            # forwarded as it came, never decoded in one long step of the event loop.
            message.decode(encoded, body=False)
        except DecodeError as error:
            condition = Condition("amqp:decode-error", f"not an AMQP message: {error}")
            self._settle_transfer(delivery, Delivery.REJECTED, condition)
            return
        address = link.target.address or message.address
        if address is None:
            condition = Condition("amqp:invalid-field", "no address: set the message's `to`")
            self._settle_transfer(delivery, Delivery.REJECTED, condition)
            return
        settle = functools.partial(self._settle_transfer, delivery)
        # A relay's credit serves every address, so it cannot wait for a full one.
        self._route(address, message, encoded, settle, held_by_credit=bool(link.target.address))

    def publish(self, address: str, message: Message, settle: Settle) -> None:
        """Route a message from inside this process as if a producer had sent it to
        `address`: `settle(state, condition)` is called with ACCEPTED once the broker owns
        it (after the store write, for a durable message to a queue), RELEASED when its
        queue is full, or REJECTED with the condition. In the broker's event loop only."""
        encoded = message.encode()
        limit = self.config.max_message_size
        if len(encoded) > limit:
            condition = Condition(MESSAGE_SIZE, f"message of {len(encoded)} bytes: over {limit}")
            settle(Delivery.REJECTED, condition)
            return
        self._route(address, message, encoded, settle, held_by_credit=False)

    def _route(
        self, address: str, message: Message, encoded: bytes, settle: Settle, held_by_credit: bool
    ) -> None:
        node = self.node(address)
        if not held_by_credit and self._full(node):
            settle(Delivery.RELEASED, None)
            return
        deadline = deadline_of(message, time.time())
        if self._waits_for_store(node, message.durable):
            # Accepted once stored (keeping the queue's order): on_reactor_quiesced, or
            # at once for a message published from outside the container's dispatch.
            arrival = _Arrival(settle, node, encoded, message.priority, deadline, message.durable)
            self._arrivals.append(arrival)
            if not self._store_write_scheduled and self.container is not None:
                self._store_write_scheduled = True
                self.container.schedule(0, _Call(self._write_store))
            return
        node.publish(encoded, message.priority, deadline)
        settle(Delivery.ACCEPTED, None)

    def _waits_for_store(self, node: Queue | Topic, durable: bool) -> bool:
        """Whether a message for `node` is queued at the next store write: it is to be
        stored (durable, or paged out), or others that are must stay ahead of it."""
        return bool(self._arrivals) or (
            self.store is not None
            and isinstance(node, Queue)
            and (durable or self.pager.pages(node))
        )

    def _settle_transfer(self, delivery: Any, state: int, condition: Condition | None) -> None:
        """Settle a producer's transfer, and give its link the credit back."""
        delivery.local.condition = condition
        delivery.update(state)
        delivery.settle()
        self._grant_credit(delivery.link)

    def on_reactor_quiesced(self, event: Any) -> None:
        self._write_store()

    def _write_store(self) -> None:
        """In one transaction: store what arrived in this pass, forget what consumers
        settled, and record delivery counts; then accept what arrived."""
        self._store_write_scheduled = False
        store = self.store
        if store is None:
            return
        arrivals, self._arrivals = self._arrivals, []
        removals, self._removals = self._removals, []
        counts, self._delivery_counts = self._delivery_counts, []
        if not (arrivals or removals or counts):
            return
        stored = self._to_store(arrivals)
        failure: StoreError | None = None
        try:
            ids = store.apply(
                [(a.node.address, a.encoded, a.deadline, not a.durable) for a in stored],
                removals,
                counts,
            )
        except StoreError as error:
            log.error("%s (settled messages may come back after a restart)", error)
            failure = error
        else:
            for arrival, store_id in zip(stored, ids, strict=True):
                arrival.store_id = store_id
        for arrival in arrivals:
            node = arrival.node
            if isinstance(node, Topic):
                node.publish(arrival.encoded, arrival.priority, arrival.deadline)
            elif failure is not None and (arrival.durable or arrival.paged):
                if arrival.settle is not None:
                    condition = Condition("amqp:internal-error", str(failure))
                    arrival.settle(Delivery.REJECTED, condition)
                continue
            elif arrival.paged:
                assert arrival.store_id is not None
                self.pager.page_out(node, 1, len(arrival.encoded), arrival.store_id - 1)
            else:
                node.publish(arrival.encoded, arrival.priority, arrival.deadline, arrival.store_id)
            if arrival.settle is not None:
                arrival.settle(Delivery.ACCEPTED, None)

    def _to_store(self, arrivals: list[_Arrival]) -> list[_Arrival]:
        """The arrivals to write to the store: durable ones for queues, and those that
        stay on disk only (marked `paged`), each of those in turn with every later one
        of its queue."""
        stored = []
        paging: set[Queue] = set()
        coming = 0  # bytes that the arrivals kept in memory will hold
        for arrival in arrivals:
            node = arrival.node
            if not isinstance(node, Queue):
                continue
            if node in paging or self.pager.pages(node, coming):
                arrival.paged = True
                paging.add(node)
                stored.append(arrival)
                continue
            coming += len(arrival.encoded) + MESSAGE_OVERHEAD
            if arrival.durable:
                stored.append(arrival)
        return stored

    def on_sendable(self, event: Any) -> None:
        found = self.consumers.get(event.link)
        if found is not None:
            _, consumer, queue = found
            queue.wake(consumer)

    def on_accepted(self, event: Any) -> None:
        self._settled(event, "accepted")

    def on_rejected(self, event: Any) -> None:
        self._settled(event, "rejected")

    def on_released(self, event: Any) -> None:
        self._settled(event, "released")

    def on_settled(self, event: Any) -> None:
        # Settled with no outcome: the consumer is done with it.
        self._settled(event, "accepted")

    def _settled(self, event: Any, outcome: str) -> None:
        found = self.consumers.get(event.link)
        if found is None:
            return
        node, consumer, queue = found
        entry = consumer.unsettled.pop(event.delivery, None)
        if entry is None:
            return
        store_id = entry[3]
        if outcome == "released":
            disposition = event.delivery.remote
            count = queue.release(
                consumer, entry, disposition.failed, bool(disposition.undeliverable)
            )
            if count is not None and store_id is not None:
                self._delivery_counts.append((store_id, count))
        else:
            queue.consumed(entry)
            if outcome == "rejected":
                self._dead_letter(entry)
            if store_id is not None:
                self._removals.append(store_id)
            self._resume_producers(node.address)
        queue.dispatch()

    def _dead_letter(self, entry: Entry) -> None:
        """Move a rejected message to the dead-letter address, stored first if durable."""
        node = self.node(self.config.dead_letter_address)
        key, encoded, deadline, _ = entry
        message = Message()
        message.decode(encoded, body=False)
        moved = _Arrival(None, node, encoded, priority_of(key), deadline, message.durable)
        if self._waits_for_store(node, moved.durable):
            self._arrivals.append(moved)  # written when the pass ends (on_reactor_quiesced)
        else:
            node.publish(encoded, moved.priority, deadline)


class _Call:
    """A timer task that calls a function: work left for a later pass of the event loop."""

    def __init__(self, function: Callable[[], None]) -> None:
        self.function = function

    def on_timer_task(self, event: Any) -> None:
        self.function()


def _refuse(link: Any, reason: str, condition: str = "amqp:invalid-field") -> None:
    """Answer a peer's attach, then detach at once with an error."""
    link.condition = Condition(condition, reason)
    link.open()
    link.close()
