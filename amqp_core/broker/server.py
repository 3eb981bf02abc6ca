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

Durability: with `BrokerConfig.data_dir`, a durable message sent to a queue is written
to the store (`amqp_core.broker.store`) before it is accepted, loaded back at start, and
removed once a consumer accepted it. Topics keep nothing, so they store nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqp_core import Condition, symbol
from amqp_core.broker.filters import requested_selector
from amqp_core.broker.queues import AddressStats, Consumer, Queue, Topic
from amqp_core.broker.selector import SelectorError
from amqp_core.broker.store import MessageStore, StoreError
from amqp_core.handlers import MessagingHandler, Reject
from amqp_core.message import Message

log = logging.getLogger(__name__)

#: Credit granted to each producer link at a time (Proton's default prefetch).
PRODUCER_CREDIT_WINDOW = 10


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
    #: credit (a topic: its fullest subscriber); None: no limit. Senders without a
    #: target (ANONYMOUS-RELAY) are not held back: their credit serves every address.
    max_queue_depth: int | None = None
    #: Credit granted to each producer link at a time.
    producer_credit_window: int = PRODUCER_CREDIT_WINDOW
    #: Where durable messages are stored; None: every message stays in memory only.
    data_dir: Path | None = None


class Broker(MessagingHandler):
    """An AMQP 1.0 broker; run it with `Container(Broker(config)).run()`."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        # No prefetch: producers' credit is granted here, as the queues have room.
        super().__init__(prefetch=0)
        self.config = config or BrokerConfig()
        self.nodes: dict[str, Queue | Topic] = {}
        self.consumers: dict[Any, tuple[Queue | Topic, Consumer, Queue]] = {}
        self.producers: dict[Any, str | None] = {}  # incoming link -> its target address
        self.acceptor: Any = None
        self.store: MessageStore | None = None

    # -- nodes ----------------------------------------------------------------------------

    def node(self, address: str) -> Queue | Topic:
        """The queue or topic at `address`, created if nobody used it before."""
        node = self.nodes.get(address)
        if node is None:
            if address.startswith(self.config.topic_prefix):
                node = Topic(address)
            else:
                node = Queue(address)
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
            )
            for address, node in self.nodes.items()
        }

    def _forget_if_idle(self, address: str) -> None:
        node = self.nodes.get(address)
        if node is not None and node.idle and address not in self.producers.values():
            del self.nodes[address]
            if isinstance(node, Queue) and node.store_ids and self.store is not None:
                # A dynamic queue's messages go with it.
                self.store.remove_many(node.store_ids.values())

    # -- connections and links ------------------------------------------------------------

    def on_start(self, event: Any) -> None:
        if self.config.data_dir is not None:
            self.store = MessageStore.open(self.config.data_dir)
            self._load(self.store)
        self.acceptor = event.container.listen(self.config.address)

    def _load(self, store: MessageStore) -> None:
        """Put the stored durable messages back on their queues, in their order."""
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
            message.delivery_count = stored.delivery_count
            node.publish(message, stored.store_id)

    def close(self) -> None:
        """Close the store, once the container has stopped."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def on_connection_opening(self, event: Any) -> None:
        event.connection.offered_capabilities = [symbol("ANONYMOUS-RELAY")]

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_receiver:
            # No target address: ANONYMOUS-RELAY, each message names its own address.
            address = link.remote_target.address
            link.target.address = address
            self.producers[link] = address
            if address is not None:
                self.node(address)
            return
        source = link.remote_source
        if source.dynamic:
            address = str(uuid.uuid4())
            self.nodes[address] = Queue(address, dynamic=True)
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
        self.consumers[link] = (node, consumer, queue)

    def on_link_opened(self, event: Any) -> None:
        if event.link in self.producers:
            self._grant_credit(event.link)

    def _grant_credit(self, link: Any) -> None:
        """Top a producer's credit up to the window, as far as its queue has room."""
        window = self.config.producer_credit_window
        address = self.producers.get(link)
        limit = self.config.max_queue_depth
        wanted = window - link.credit
        if address is not None and limit is not None:
            promised = sum(
                other.credit for other, target in self.producers.items() if target == address
            )
            wanted = min(wanted, limit - self.node(address).depth - promised)
        if wanted > 0:
            link.flow(wanted)

    def _resume_producers(self, address: str) -> None:
        for link, target in list(self.producers.items()):
            if target == address:
                self._grant_credit(link)

    def on_link_closing(self, event: Any) -> None:
        self._detach(event.link)

    def on_connection_closing(self, event: Any) -> None:
        self._drop_connection(event.connection)

    def on_disconnected(self, event: Any) -> None:
        self._drop_connection(event.connection)

    def _drop_connection(self, connection: Any) -> None:
        link = connection.link_head(0)
        while link:
            self._detach(link)
            link = link.next(0)

    def _detach(self, link: Any) -> None:
        if link in self.producers:
            address = self.producers.pop(link)
            if address is not None:
                self._forget_if_idle(address)
            return
        entry = self.consumers.pop(link, None)
        if entry is None:
            return
        node, consumer, queue = entry
        queue.unsubscribe(consumer)
        if isinstance(node, Topic):
            node.unsubscribe(consumer)
        self._resume_producers(node.address)
        self._forget_if_idle(node.address)

    # -- messages ---------------------------------------------------------------------------

    def on_message(self, event: Any) -> None:
        link = event.link
        address = link.target.address or event.message.address
        if address is None:
            raise Reject()
        node = self.node(address)
        message = event.message
        if isinstance(node, Queue) and message.durable and self.store is not None:
            try:
                store_id = self.store.add(address, message.encode())
            except StoreError as error:
                log.error("%s", error)
                raise Reject() from error
            node.publish(message, store_id)
        else:
            node.publish(message)
        if link in self.producers:
            self._grant_credit(link)

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
        entry = self.consumers.get(event.link)
        if entry is None:
            return
        node, consumer, queue = entry
        if event.delivery not in consumer.unsettled:
            return
        sequence, message = consumer.unsettled.pop(event.delivery)
        if outcome == "released":
            disposition = event.delivery.remote
            if disposition.failed:
                message.delivery_count += 1
                store_id = queue.store_ids.get(sequence)
                if store_id is not None and self.store is not None:
                    self.store.update_delivery_count(store_id, message.delivery_count)
            if disposition.undeliverable:
                consumer.refused.add(sequence)
            queue.put_back(sequence, message)
        else:
            store_id = queue.consumed(sequence)
            if outcome == "rejected":
                self._dead_letter(message)
            if store_id is not None and self.store is not None:
                self.store.remove(store_id)
            self._resume_producers(node.address)
        queue.dispatch()

    def _dead_letter(self, message: Any) -> None:
        """Move a rejected message to the dead-letter address, stored first if durable."""
        address = self.config.dead_letter_address
        node = self.node(address)
        if isinstance(node, Topic):
            node.publish(message)
            return
        store_id = None
        if message.durable and self.store is not None:
            store_id = self.store.add(address, message.encode())
        node.publish(message, store_id)


def _refuse(link: Any, reason: str) -> None:
    """Answer a peer's attach, then detach at once with an error."""
    link.condition = Condition("amqp:invalid-field", reason)
    link.open()
    link.close()
