"""The broker as a MessagingHandler: it listens, routes what producers send to queues
and topics, hands messages to consumers, and settles with producers and consumers.

Addressing:
- an address starting with `BrokerConfig.topic_prefix` (default ``topic/``) is a
  topic: every receiver attached at that moment gets a copy, nothing is kept;
- any other address is a queue, created on first use (anycast);
- a dynamic receiver gets a queue with a generated address, deleted on detach;
- a sender with no target (ANONYMOUS-RELAY) routes each message by its `address`.

Outcomes from consumers: accepted removes the message; released puts it back in its
place; modified counts a failed delivery (delivery-failed) and, with
undeliverable-here, never offers it to that link again; rejected moves it to the
dead-letter address (default ``DLQ``).

Limits: a full queue (`max_queue_depth` messages or `max_queue_bytes` bytes) gets no
more credit for its producers; an ANONYMOUS-RELAY sender, whose credit serves every
address, gets its message to a full queue released instead. Connections, links per
connection and message size are limited too, each refused with
``amqp:resource-limit-exceeded`` (``amqp:link:message-size-exceeded`` for size).

Durability: with `BrokerConfig.data_dir`, a durable message sent to a queue is written
to the store (`amqp_core.broker.store`) before it is accepted, loaded back at start, and
removed once a consumer accepted it. Store writes are batched: what arrives in one
pass of the event loop is written in one transaction when the container runs out of
events (``on_reactor_quiesced``), before anything is written back to a peer. Topics
keep nothing, so they store nothing.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqp_core import Condition, Delivery, symbol
from amqp_core.broker.filters import requested_selector
from amqp_core.broker.queues import AddressStats, Consumer, Entry, Queue, Topic
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

#: How often queues are swept for expired messages, in seconds.
EXPIRY_SWEEP_INTERVAL = 1.0

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
    #: Open connections at a time; None: no limit.
    max_connections: int | None = None
    #: Links attached on one connection at a time; None: no limit.
    max_links_per_connection: int | None = None
    #: Largest message accepted, in bytes (announced in each producer's attach).
    max_message_size: int = MAX_MESSAGE_SIZE


class Broker(MessagingHandler):
    """An AMQP 1.0 broker; run it with `Container(Broker(config)).run()`."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        # No prefetch: producers' credit is granted here, as the queues have room.
        super().__init__(prefetch=0)
        # Incoming messages are read here (`on_delivery`), keeping the bytes they came as.
        self.handlers = [h for h in self.handlers if not isinstance(h, IncomingMessageHandler)]
        self.config = config or BrokerConfig()
        self.nodes: dict[str, Queue | Topic] = {}
        self.consumers: dict[Any, tuple[Queue | Topic, Consumer, Queue]] = {}
        self.producers: dict[Any, str | None] = {}  # incoming link -> its target address
        self.connections: dict[Any, int] = {}  # open connection -> links attached on it
        self.acceptor: Any = None
        self.store: MessageStore | None = None
        self.container: Any = None
        # Waiting for the next store write: (how to settle with the producer, node, entry).
        self._arrivals: list[tuple[Settle | None, Queue | Topic, Entry]] = []
        self._store_write_scheduled = False
        self._removals: list[int] = []
        self._delivery_counts: list[tuple[int, int]] = []

    # -- nodes ----------------------------------------------------------------------------

    def node(self, address: str) -> Queue | Topic:
        """The queue or topic at `address`, created if nobody used it before."""
        node = self.nodes.get(address)
        if node is None:
            if address.startswith(self.config.topic_prefix):
                node = Topic(address)
            else:
                node = Queue(address, discard=self._discard)
            self.nodes[address] = node
        return node

    def stats(self) -> dict[str, AddressStats]:
        """Per-address statistics: depth, enqueued, dequeued, consumers, producers."""
        producers: dict[str, int] = {}
        for address in self.producers.values():
            if address is not None:
                producers[address] = producers.get(address, 0) + 1
        return {
            address: AddressStats(
                depth=node.depth,
                enqueued=node.enqueued,
                dequeued=node.dequeued,
                consumers=len(node.consumers),
                producers=producers.get(address, 0),
                depth_bytes=node.depth_bytes,
                expired=node.expired,
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
        if node is not None and node.idle and address not in self.producers.values():
            del self.nodes[address]
            if isinstance(node, Queue):
                # A dynamic queue's messages go with it.
                self._removals.extend(e.store_id for e in node.entries if e.store_id is not None)

    def _discard(self, entry: Entry) -> None:
        """A queue dropped an expired message."""
        if entry.store_id is not None:
            self._removals.append(entry.store_id)

    def on_timer_task(self, event: Any) -> None:
        now = time.time()
        for node in self.nodes.values():
            node.sweep(now)
        for address in list(self.nodes):
            self._resume_producers(address)
        event.container.schedule(EXPIRY_SWEEP_INTERVAL, self)

    # -- connections and links ------------------------------------------------------------

    def on_start(self, event: Any) -> None:
        if self.config.data_dir is not None:
            self.store = MessageStore.open(self.config.data_dir)
            self._load(self.store)
        self.container = event.container
        self.acceptor = event.container.listen(self.config.address)
        event.container.schedule(EXPIRY_SWEEP_INTERVAL, self)

    def _load(self, store: MessageStore) -> None:
        """Put the stored durable messages back on their queues, in their order.

        A time to live counts again from the restart: the store keeps no arrival time.
        """
        now = time.time()
        for stored in store.load():
            node = self.node(stored.address)
            if isinstance(node, Topic):
                log.warning(
                    "stored messages for %s left in the store: it is a topic now",
                    stored.address,
                )
                continue
            message = Message()
            message.decode(stored.encoded)
            entry = Entry.of(message, stored.encoded, now)
            if stored.delivery_count != message.delivery_count:
                message.delivery_count = stored.delivery_count
                entry.encoded = message.encode()
            entry.store_id = stored.store_id
            node.publish(entry)

    def close(self) -> None:
        """Close the store, once the container has stopped."""
        if self.store is not None:
            self._write_store()
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
            self.producers[link] = address
            if address is not None:
                self.node(address)
            return
        source = link.remote_source
        if source.dynamic:
            address = str(uuid.uuid4())
            self.nodes[address] = Queue(address, dynamic=True, discard=self._discard)
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
        if event.link in self.producers:
            self._grant_credit(event.link)

    def _grant_credit(self, link: Any) -> None:
        """Top a producer's credit up to the window, as far as its queue has room."""
        wanted = self.config.producer_credit_window - link.credit
        address = self.producers.get(link)
        if address is not None and wanted > 0:
            node = self.node(address)
            limit = self.config.max_queue_depth
            if limit is not None:
                promised = sum(
                    other.credit for other, target in self.producers.items() if target == address
                )
                wanted = min(wanted, limit - node.depth - promised)
            byte_limit = self.config.max_queue_bytes
            if byte_limit is not None and node.depth_bytes >= byte_limit:
                wanted = 0
        if wanted > 0:
            link.flow(wanted)

    def _resume_producers(self, address: str) -> None:
        for link, target in list(self.producers.items()):
            if target == address:
                self._grant_credit(link)

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
        if link in self.producers:
            self._count_link(link, -1)
            address = self.producers.pop(link)
            if address is not None:
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
            return
        if delivery.partial or not delivery.readable:
            return
        encoded = link.recv(delivery.pending) or b""
        link.advance()
        message = Message()
        try:
            message.decode(encoded)
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
        entry = Entry.of(message, encoded, time.time())
        if self._arrivals or (
            message.durable and self.store is not None and isinstance(node, Queue)
        ):
            # Accepted once stored (keeping the queue's order): on_reactor_quiesced, or
            # at once for a message published from outside the container's dispatch.
            self._arrivals.append((settle, node, entry))
            if not self._store_write_scheduled and self.container is not None:
                self._store_write_scheduled = True
                self.container.schedule(0, _StoreWrite(self))
            return
        node.publish(entry)
        settle(Delivery.ACCEPTED, None)

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
        durable = [
            (node.address, entry)
            for _, node, entry in arrivals
            if entry.message.durable and isinstance(node, Queue)
        ]
        failure: StoreError | None = None
        try:
            ids = store.apply([(a, entry.encoded) for a, entry in durable], removals, counts)
        except StoreError as error:
            log.error("%s (settled messages may come back after a restart)", error)
            failure = error
        else:
            for (_, entry), store_id in zip(durable, ids, strict=True):
                entry.store_id = store_id
        for settle, node, entry in arrivals:
            if failure is not None and entry.message.durable and isinstance(node, Queue):
                if settle is not None:
                    settle(Delivery.REJECTED, Condition("amqp:internal-error", str(failure)))
                continue
            node.publish(entry)
            if settle is not None:
                settle(Delivery.ACCEPTED, None)

    def on_sendable(self, event: Any) -> None:
        entry = self.consumers.get(event.link)
        if entry is not None:
            entry[2].dispatch()

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
        if outcome == "released":
            disposition = event.delivery.remote
            if disposition.failed:
                entry.count_failed_delivery()
                if entry.store_id is not None:
                    self._delivery_counts.append((entry.store_id, entry.message.delivery_count))
            if disposition.undeliverable:
                consumer.refused.add(entry.sequence)
            queue.put_back(entry)
        else:
            queue.consumed(entry)
            if outcome == "rejected":
                self._dead_letter(entry)
            if entry.store_id is not None:
                self._removals.append(entry.store_id)
            self._resume_producers(node.address)
        queue.dispatch()

    def _dead_letter(self, entry: Entry) -> None:
        """Move a rejected message to the dead-letter address, stored first if durable."""
        node = self.node(self.config.dead_letter_address)
        moved = Entry(entry.message, entry.encoded, entry.deadline)
        if self.store is not None and entry.message.durable and isinstance(node, Queue):
            self._arrivals.append((None, node, moved))
        else:
            node.publish(moved)


class _StoreWrite:
    """A timer task that writes what `Broker.publish` left waiting for the store."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def on_timer_task(self, event: Any) -> None:
        self.broker._write_store()


def _refuse(link: Any, reason: str, condition: str = "amqp:invalid-field") -> None:
    """Answer a peer's attach, then detach at once with an error."""
    link.condition = Condition(condition, reason)
    link.open()
    link.close()
