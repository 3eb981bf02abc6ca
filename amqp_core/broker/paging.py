"""Paging: the broker's messages beyond its memory bound stay on disk only, and are read
back a slice at a time as consumers catch up (`BrokerConfig.max_memory`, ``--max-memory``).
A restart uses the same path: it counts each queue's stored messages in one query and
reads them back as consumers ask, so that the broker listens at once.

`Pager` counts the bytes of the messages that queues hold in memory (each with
`MESSAGE_OVERHEAD`). Once they pass the bound, a message that arrives at a queue stays
on disk only, in the message store (unless it can go straight out: nothing waits and a
consumer has credit), and so does every later one of that queue until all are read
back: a queue keeps arrival order across what is in memory and what is on disk.
Non-durable messages are paged too, stored as *transient*: they are never read back
after a restart (RabbitMQ's lazy queues and Artemis's paging keep them on disk the same
way, rather than holding producers back). A dynamic queue, deleted with its consumer,
and a topic's subscriptions are not paged: what they hold stays in memory, and counts.

Reading back: a queue with messages on disk asks for the next ones when fewer than
`PAGE_IN_BELOW` wait in memory and a consumer has credit (it gets them even when the
memory is over the bound, or one queue's backlog could starve another's consumers);
and while the memory is below the bound, queues with messages on disk read them back in
turn (after a restart without a bound, until every message is in memory again). Each
read is one slice of `PAGE_SLICE` messages at most, one per pass of the event loop.

What that means for a consumer, as with Artemis: priorities order what is in memory,
so a message of higher priority that arrives while its queue has messages on disk
waits behind them. A selector or a browser sees the messages in memory, and those on
disk as they are read back; over the bound, a queue whose `PAGE_IN_BELOW` first
messages in memory are taken by nobody reads no more until they are. A message on disk
expires when it is read back, if its time has come by then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from amqp_core.broker.queues import Queue, deadline_of
from amqp_core.broker.store import MessageStore, StoredMessage, StoreError
from amqp_core.message import Message

__all__ = ["PAGE_SLICE", "Pager"]

log = logging.getLogger(__name__)

#: Messages read back in one slice, at most: a read of a millisecond or so, and as much
#: decoding (priority, expiry) again.
PAGE_SLICE = 256

#: Bytes read back in one slice, at most (but one message, however large).
PAGE_SLICE_BYTES = 1024 * 1024

#: Transient messages left by a broker that was killed, deleted in one pass, at most.
STALE_SLICE = 1024

#: Seconds to wait before reading again after the store failed to read.
RETRY_AFTER_FAILURE = 1.0


class Pager:
    """The memory the queues' messages take, and reading back those on disk.

    `max_memory` None: no bound, nothing is paged out; messages on disk after a restart
    are still read back through here.
    """

    def __init__(
        self, max_memory: int | None, schedule: Callable[[float, Callable[[], None]], None]
    ) -> None:
        """`schedule(delay, function)` calls `function` in a later pass of the event loop,
        `delay` seconds from now."""
        self.max_memory = max_memory
        #: Bytes of the messages queues hold in memory, each with its overhead.
        self.used = 0
        self._schedule_call = schedule
        self._store: MessageStore | None = None
        #: When the store was opened: the time to live of a message stored without a
        #: deadline counts from then.
        self._opened_at = 0.0
        #: Queues with messages on disk, in turn.
        self._paged: dict[Queue, None] = {}
        #: Those of them that a consumer waits on: first served.
        self._short: dict[Queue, None] = {}
        self._stale_left = False
        self._scheduled = False

    def start(self, store: MessageStore) -> None:
        """Page with `store`, just opened; delete in slices the transient messages a
        killed broker left there."""
        self._store = store
        self._opened_at = time.time()
        self._stale_left = True
        self._schedule()

    def stop(self) -> None:
        """The store is closing: read nothing more."""
        self._store = None

    @property
    def full(self) -> bool:
        """Whether the messages in memory reached the bound."""
        return self.max_memory is not None and self.used >= self.max_memory

    def pages(self, queue: Queue, coming: int = 0) -> bool:
        """Whether a message arriving at `queue` now stays on disk only, when `coming`
        more bytes are about to be held in memory: behind others on disk, or over the
        bound (unless a consumer waits for it: it leaves at once)."""
        if self._store is None or queue.dynamic:
            return False
        if queue.paged:
            return True
        over = self.max_memory is not None and self.used + coming >= self.max_memory
        return over and not queue.awaited

    def page_out(self, queue: Queue, messages: int, size: int, after: int) -> None:
        """`messages` of `queue` (`size` bytes in all) are on disk only, with store ids
        above `after`."""
        queue.page_out(messages, size, after)
        self._paged[queue] = None
        if not self.full:
            self._schedule()

    def held(self, change: int) -> None:
        """The queues hold `change` bytes more in memory (fewer when negative)."""
        self.used += change
        if change < 0 and self._paged and not self._scheduled and not self.full:
            self._schedule()

    def short(self, queue: Queue) -> None:
        """`queue` has few messages in memory and a consumer with credit."""
        if queue in self._paged:
            self._short[queue] = None
            self._schedule()

    def _schedule(self, delay: float = 0) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._schedule_call(delay, self._run)

    def _run(self) -> None:
        """One slice of work: read back for a queue that is short, else for the next
        queue in turn while there is room, else delete stale transient messages."""
        self._scheduled = False
        store = self._store
        if store is None:
            return
        try:
            if self._short:
                queue = next(iter(self._short))
                del self._short[queue]
                self._read_back(store, queue)
            elif self._paged and not self.full:
                queue = next(iter(self._paged))
                del self._paged[queue]
                self._paged[queue] = None  # to the back of the turn
                self._read_back(store, queue)
            elif self._stale_left:
                self._stale_left = store.drop_stale(STALE_SLICE)
        except StoreError as error:
            log.error("%s (messages on disk wait)", error)
            self._schedule(RETRY_AFTER_FAILURE)
            return
        if self._short or self._stale_left or (self._paged and not self.full):
            self._schedule()

    def _read_back(self, store: MessageStore, queue: Queue) -> None:
        rows = store.page(
            queue.address, queue.paged_after, min(PAGE_SLICE, queue.paged), PAGE_SLICE_BYTES
        )
        if not rows:
            # Never expected: the store lost what the queue counts on disk.
            log.error(
                "%s: %d messages counted on disk after store id %d are not in the store",
                queue.address,
                queue.paged,
                queue.paged_after,
            )
            self._paged.pop(queue, None)
            return
        queue.page_in([self._entry(row) for row in rows])
        if not queue.paged:
            self._paged.pop(queue, None)
            self._short.pop(queue, None)

    def _entry(self, row: StoredMessage) -> tuple[int, bytes, int, float | None, int]:
        """What `Queue.page_in` takes for a stored message: its priority and deadline
        read from it, and the delivery count the store has put in."""
        encoded = row.encoded
        message = Message()
        message.decode(encoded, body=bool(row.delivery_count))
        if row.delivery_count and row.delivery_count != message.delivery_count:
            message.delivery_count = row.delivery_count
            encoded = message.encode()
        deadline = row.deadline
        if deadline is None:
            deadline = deadline_of(message, self._opened_at)
        return (row.store_id, encoded, message.priority, deadline, len(row.encoded))
