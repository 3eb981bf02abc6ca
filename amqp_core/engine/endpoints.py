"""Connections, sessions, links and deliveries: the AMQP endpoints, as Proton models them.

These objects hold local state that the application changes (open, close, flow, send,
settle) and remote state that the `Transport` fills in from frames. Changing local
state never writes anything: it marks the object as having work, and the transport
turns all pending work into frames when its output is next taken, so many small
changes (credit top-ups, settlements) leave in few frames.
"""

from __future__ import annotations

import heapq
import io
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .. import spec
from ..types import symbol
from .events import Collector, Event, EventType
from .terminus import (
    RCV_FIRST,
    RCV_SECOND,
    SND_MIXED,
    SND_SETTLED,
    SND_UNSETTLED,
    Terminus,
)

if TYPE_CHECKING:
    from ..message import Message
    from .transport import Transport

__all__ = [
    "Condition",
    "Connection",
    "Delivery",
    "Disposition",
    "Endpoint",
    "Link",
    "NumberPool",
    "Receiver",
    "Sender",
    "Session",
]


class Condition:
    """An error condition: a symbolic name, a description and extra info (spec 2.8.14)."""

    def __init__(self, name: str, description: str | None = None, info: Any = None) -> None:
        self.name = name
        self.description = description
        self.info = info

    def __repr__(self) -> str:
        parts = [repr(str(self.name))]
        if self.description is not None:
            parts.append(repr(self.description))
        if self.info is not None:
            parts.append(repr(self.info))
        return f"Condition({', '.join(parts)})"

    def __str__(self) -> str:
        return f"{self.name}: {self.description}" if self.description else str(self.name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Condition):
            return NotImplemented
        return (self.name, self.description, self.info) == (
            other.name,
            other.description,
            other.info,
        )

    __hash__ = None  # type: ignore[assignment]

    def to_spec(self) -> Any:
        return spec.Error(condition=symbol(self.name), description=self.description, info=self.info)

    @classmethod
    def from_spec(cls, error: Any) -> Condition | None:
        if error is None:
            return None
        return cls(str(error.condition), error.description, error.info)


class NumberPool:
    """Hands out the lowest free number (a channel, a handle) in O(log n): numbers given
    back wait in a heap, and past them the pool counts up."""

    __slots__ = ("_returned", "_next")

    def __init__(self) -> None:
        self._returned: list[int] = []
        self._next = 0

    def take(self, limit: int) -> int | None:
        """The lowest free number up to `limit`, or None if all are taken."""
        returned = self._returned
        if returned and returned[0] <= limit:
            return heapq.heappop(returned)
        number = self._next
        if number > limit:
            return None
        self._next = number + 1
        return number

    def give_back(self, number: int) -> None:
        heapq.heappush(self._returned, number)


class Endpoint:
    """Local and remote open/closed state, as bit flags that combine (Proton's values)."""

    LOCAL_UNINIT = 1
    LOCAL_ACTIVE = 2
    LOCAL_CLOSED = 4
    REMOTE_UNINIT = 8
    REMOTE_ACTIVE = 16
    REMOTE_CLOSED = 32
    LOCAL_MASK = LOCAL_UNINIT | LOCAL_ACTIVE | LOCAL_CLOSED
    REMOTE_MASK = REMOTE_UNINIT | REMOTE_ACTIVE | REMOTE_CLOSED

    # Slots for what every endpoint has (links: see Link), and a __dict__ for whatever
    # an application hangs on them, made only when it does.
    __slots__ = (
        "_local",
        "_remote",
        "condition",
        "remote_condition",
        "handler",
        "context",
        "__dict__",
        "__weakref__",
    )

    def __init__(self) -> None:
        self._local = Endpoint.LOCAL_UNINIT
        self._remote = Endpoint.REMOTE_UNINIT
        self.condition: Condition | None = None
        self.remote_condition: Condition | None = None
        self.handler: Any = None
        self.context: Any = None

    @property
    def state(self) -> int:
        return self._local | self._remote

    def _put(self, event_type: EventType) -> None:
        self.connection._emit(self, event_type)

    @property
    def connection(self) -> Connection:  # pragma: no cover - overridden
        raise NotImplementedError


class Connection(Endpoint):
    """One AMQP connection. Bind it to a `Transport` to exchange frames."""

    def __init__(self) -> None:
        super().__init__()
        self.container: str | None = None
        self.hostname: str | None = None
        self.user: str | None = None
        self.password: str | None = None
        self.properties: dict[Any, Any] | None = None
        self.offered_capabilities: list[Any] | None = None
        self.desired_capabilities: list[Any] | None = None
        self.remote_container: str | None = None
        self.remote_hostname: str | None = None
        self.remote_properties: dict[Any, Any] | None = None
        self.remote_offered_capabilities: list[Any] | None = None
        self.remote_desired_capabilities: list[Any] | None = None
        self.transport: Transport | None = None
        self._collector: Collector | None = None
        # An insertion-ordered set: a session leaves once it has ended at both ends.
        self._sessions: dict[Session, None] = {}
        # Every link, oldest first, as a doubly linked list (Proton's endpoint list), so
        # that `link.next()` and forgetting a link cost the same among 10,000 links.
        self._first_link: Link | None = None
        self._last_link: Link | None = None
        # Sessions with work for the transport, in the order the work arose.
        self._dirty: dict[Session, None] = {}
        self._needs_output = False
        #: Called with this connection when it first has work for its transport; the
        #: I/O driver uses it to know which connections to write.
        self.work_listener: Callable[[Connection], None] | None = None

    @property
    def connection(self) -> Connection:
        return self

    def collect(self, collector: Collector) -> None:
        self._collector = collector
        self._emit(self, Event.CONNECTION_INIT)

    def _emit(self, context: Any, event_type: EventType) -> None:
        if self._collector is not None:
            self._collector.put(context, event_type)

    def open(self) -> None:
        if self._local == Endpoint.LOCAL_UNINIT:
            self._local = Endpoint.LOCAL_ACTIVE
            self._emit(self, Event.CONNECTION_LOCAL_OPEN)
            self._wake()

    def close(self) -> None:
        if self._local != Endpoint.LOCAL_CLOSED:
            self._local = Endpoint.LOCAL_CLOSED
            self._emit(self, Event.CONNECTION_LOCAL_CLOSE)
            self._wake()

    def session(self) -> Session:
        session = Session(self)
        self._sessions[session] = None
        self._emit(session, Event.SESSION_INIT)
        return session

    def sessions(self, mask: int = 0) -> list[Session]:
        return [session for session in self._sessions if _matches(session, mask)]

    def links(self, mask: int = 0) -> list[Link]:
        found = []
        link = self._first_link
        while link is not None:
            if _matches(link, mask):
                found.append(link)
            link = link._next_link
        return found

    def session_head(self, mask: int) -> Session | None:
        return next(iter(self.sessions(mask)), None)

    def link_head(self, mask: int) -> Link | None:
        link = self._first_link
        while link is not None and not _matches(link, mask):
            link = link._next_link
        return link

    def _add_link(self, link: Link) -> None:
        last = self._last_link
        link._prev_link = last
        if last is None:
            self._first_link = link
        else:
            last._next_link = link
        self._last_link = link

    def _remove_link(self, link: Link) -> None:
        before, after = link._prev_link, link._next_link
        if before is None:
            if self._first_link is not link:
                return  # not in the list (removed already)
            self._first_link = after
        else:
            before._next_link = after
        if after is None:
            self._last_link = before
        else:
            after._prev_link = before
        link._prev_link = link._next_link = None

    def free(self) -> None:
        """Kept for Proton compatibility: Python's collector frees endpoints."""

    def _forget_session(self, session: Session) -> None:
        """The session ended at both ends (its channels are free): drop it, and its
        links with it, as Proton's pn_session_free does. Objects the application still
        holds keep their state, and events already put for them still dispatch; they
        are only no longer found by `sessions()`, `links()`, `session_head` and
        `link_head`. Deliveries left unsettled on it are dropped: the delivery state of
        a link ended without being resumed is lost."""
        self._sessions.pop(session, None)
        for link in session._links:
            self._remove_link(link)
        session._outgoing_unsettled.clear()
        session._incoming_unsettled.clear()

    def _mark(self, session: Session) -> None:
        self._dirty[session] = None
        self._wake()

    def _wake(self) -> None:
        if not self._needs_output:
            self._needs_output = True
            if self.work_listener is not None:
                self.work_listener(self)

    def __repr__(self) -> str:
        return f"Connection({self.container!r} -> {self.hostname!r})"


def _matches(endpoint: Endpoint, mask: int) -> bool:
    if not mask:
        return True
    local = mask & Endpoint.LOCAL_MASK
    remote = mask & Endpoint.REMOTE_MASK
    return (not local or bool(endpoint._local & local)) and (
        not remote or bool(endpoint._remote & remote)
    )


class Session(Endpoint):
    """A session: an ordered channel of transfers with its own flow window."""

    #: The number of transfer frames we let a peer have in flight to us. Credit on each
    #: link is what bounds memory; the session window only needs to stay out of its way.
    INCOMING_WINDOW = 2**31 - 1
    OUTGOING_WINDOW = 2**31 - 1

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._connection = connection
        # An insertion-ordered set: a link leaves once it is detached at both ends.
        self._links: dict[Link, None] = {}
        self.channel: int | None = None
        self.remote_channel: int | None = None
        self.incoming_capacity = 0
        # Transfer numbering (spec 2.5.6), all serial numbers modulo 2**32.
        self.next_outgoing_id = 0
        self.next_incoming_id: int | None = None
        self.remote_incoming_window = 0
        self.remote_outgoing_window = 0
        self._begin_sent = False
        self._end_sent = False
        self._next_delivery_id = 0
        self._outgoing_unsettled: dict[int, Delivery] = {}
        self._incoming_unsettled: dict[int, Delivery] = {}
        self._pending_dispositions: dict[Delivery, None] = {}
        self._dirty_links: dict[Link, None] = {}
        self._flow_needed = False
        self._local_handles: dict[int, Link] = {}
        self._handle_numbers = NumberPool()
        # Links that wait for a handle under the peer's handle-max, oldest first.
        self._waiting_for_handle: dict[Link, None] = {}
        # Our links whose peer has not attached yet, by (name, is_sender): the peer's
        # attach finds its link here, not by a search through every link.
        self._awaiting_attach: dict[tuple[str, bool], Link] = {}
        # Senders held back by the peer's session window, woken when it opens again.
        self._blocked_senders: dict[Link, None] = {}
        self._remote_handles: dict[int, Link] = {}
        self._remote_handle_max = 2**32 - 1

    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def session(self) -> Session:
        return self

    @property
    def transport(self) -> Transport | None:
        return self._connection.transport

    def open(self) -> None:
        if self._local == Endpoint.LOCAL_UNINIT:
            self._local = Endpoint.LOCAL_ACTIVE
            self._put(Event.SESSION_LOCAL_OPEN)
            self._connection._mark(self)

    def close(self) -> None:
        if self._local != Endpoint.LOCAL_CLOSED:
            self._local = Endpoint.LOCAL_CLOSED
            self._put(Event.SESSION_LOCAL_CLOSE)
            self._connection._mark(self)

    def sender(self, name: str) -> Sender:
        return self._new_link(Sender, name)

    def receiver(self, name: str) -> Receiver:
        return self._new_link(Receiver, name)

    def _new_link(self, cls: type[Link], name: str) -> Any:
        link = cls(self, name)
        self._links[link] = None
        self._connection._add_link(link)
        self._awaiting_attach.setdefault((name, link.is_sender), link)
        self._put_for(link, Event.LINK_INIT)
        return link

    def _put_for(self, context: Any, event_type: EventType) -> None:
        self._connection._emit(context, event_type)

    def links(self, mask: int = 0) -> list[Link]:
        return [link for link in self._links if _matches(link, mask)]

    def free(self) -> None:
        """Kept for Proton compatibility."""

    def _forget_link(self, link: Link) -> None:
        """The link is detached at both ends (both handles free): drop it, as Proton's
        pn_link_free does. The Link object keeps its state for whoever holds it and
        events already put for it still dispatch; `links()`, `link_head` and `next`
        no longer return it. Its deliveries still unsettled are dropped with it (a
        detached link's unsettled state is lost unless the link is resumed; the
        application settles its own copies as it likes), so a late disposition for one
        of them finds nothing, as for any unknown delivery-id."""
        if link in self._links:
            del self._links[link]
            self._connection._remove_link(link)
        self._dirty_links.pop(link, None)
        self._waiting_for_handle.pop(link, None)
        self._blocked_senders.pop(link, None)
        key = (link.name, link.is_sender)
        if self._awaiting_attach.get(key) is link:
            del self._awaiting_attach[key]
        if not link.unsettled_count:
            return  # nothing of it in the maps below: skip looking through them
        for unsettled in (self._outgoing_unsettled, self._incoming_unsettled):
            if unsettled:
                for delivery_id in [key for key, d in unsettled.items() if d._link is link]:
                    del unsettled[delivery_id]

    def _mark(self, link: Link | None = None) -> None:
        if link is not None:
            self._dirty_links[link] = None
        self._connection._mark(self)

    def _queue_disposition(self, delivery: Delivery) -> None:
        self._pending_dispositions[delivery] = None
        self._connection._mark(self)

    def __repr__(self) -> str:
        return f"Session(channel={self.channel}, remote_channel={self.remote_channel})"


class Disposition:
    """The state of a delivery as one side sees it: an outcome and its details."""

    RECEIVED = 0x23
    ACCEPTED = 0x24
    REJECTED = 0x25
    RELEASED = 0x26
    MODIFIED = 0x27

    def __init__(self) -> None:
        self.type = 0
        self.condition: Condition | None = None
        self.failed = False
        self.undeliverable = False
        self.annotations: dict[Any, Any] | None = None
        self.section_number = 0
        self.section_offset = 0
        self.data: Any = None

    def to_spec(self, state: int) -> Any:
        if state == Disposition.ACCEPTED:
            return _ACCEPTED
        if state == Disposition.RELEASED:
            return _RELEASED
        if state == Disposition.REJECTED:
            error = self.condition.to_spec() if self.condition is not None else None
            return spec.Rejected(error=error)
        if state == Disposition.MODIFIED:
            return spec.Modified(
                delivery_failed=self.failed or None,
                undeliverable_here=self.undeliverable or None,
                message_annotations=self.annotations,
            )
        if state == Disposition.RECEIVED:
            return spec.Received(
                section_number=self.section_number, section_offset=self.section_offset
            )
        return self.data

    def update_from_spec(self, state: Any) -> int:
        """Take the details of a decoded delivery state; return its type code."""
        code = _STATE_CODES.get(type(state), 0)
        if code == Disposition.REJECTED:
            self.condition = Condition.from_spec(state.error)
        elif code == Disposition.MODIFIED:
            self.failed = bool(state.delivery_failed)
            self.undeliverable = bool(state.undeliverable_here)
            self.annotations = state.message_annotations
        elif code == Disposition.RECEIVED:
            self.section_number = state.section_number
            self.section_offset = state.section_offset
        elif code == 0:
            self.data = state
        self.type = code
        return code

    def __repr__(self) -> str:
        return f"Disposition({self.type:#x})"


# Outcomes without fields are the same every time: made once.
_ACCEPTED = cast(Any, spec.CLASSES["accepted"])()
_RELEASED = cast(Any, spec.CLASSES["released"])()
_STATE_CODES: dict[type, int] = {
    spec.Received: Disposition.RECEIVED,
    spec.Accepted: Disposition.ACCEPTED,
    spec.Rejected: Disposition.REJECTED,
    spec.Released: Disposition.RELEASED,
    spec.Modified: Disposition.MODIFIED,
}


class Delivery:
    """One message on a link, from its first transfer to its settlement.

    As in Proton, `settled` says whether the *peer* settled it, `settle()` settles it
    here, `local_state`/`remote_state` are outcome codes (`Delivery.ACCEPTED`, ...)
    and `local`/`remote` hold their details.
    """

    RECEIVED = Disposition.RECEIVED
    ACCEPTED = Disposition.ACCEPTED
    REJECTED = Disposition.REJECTED
    RELEASED = Disposition.RELEASED
    MODIFIED = Disposition.MODIFIED

    def __init__(self, link: Link, tag: bytes) -> None:
        self.tag = tag
        self._link = link
        self.id: int | None = None
        self.local = Disposition()
        self.remote = Disposition()
        self.local_state = 0
        self.remote_state = 0
        self.settled = False  # by the peer
        self.local_settled = False
        self.updated = False
        self.aborted = False
        self.partial = False
        self.message_format = 0
        self.context: Any = None
        # The bytes not yet framed (sender) or not yet read (receiver), in the pieces
        # they came in, less the first `_offset` bytes of the first piece; `_size` in
        # all. A sender keeps the very bytes objects it is given and frames slices of
        # them, so a 50 MB body is never copied whole. A receiver keeps one frame's
        # payload as it came, and writes any more into `_incoming`, a frame at a time,
        # so that reading a whole large message at its end costs no copy either.
        self._pieces: list[bytes | memoryview] = []
        self._offset = 0
        self._size = 0
        self._incoming: io.BytesIO | None = None
        self._complete = False  # sender: advanced, all bytes given
        self._received = 0  # receiver: bytes of every transfer so far
        self._sent_first = False

    @property
    def link(self) -> Link:
        return self._link

    @property
    def delivery(self) -> Delivery:
        return self

    @property
    def session(self) -> Session:
        return self._link.session

    @property
    def connection(self) -> Connection:
        return self._link.session.connection

    @property
    def transport(self) -> Transport | None:
        return self._link.session.connection.transport

    @property
    def pending(self) -> int:
        """Bytes not yet framed (sender) or not yet read (receiver)."""
        return self._size

    def _append(self, data: bytes | memoryview) -> None:
        """Queue bytes to send, kept as they are: the caller never changes them."""
        self._pieces.append(data)
        self._size += len(data)

    def _receive(self, payload: bytes) -> None:
        """Keep a transfer's payload until the application reads it."""
        incoming = self._incoming
        if incoming is None:
            if not self._pieces:
                self._pieces.append(payload)
                self._size += len(payload)
                return
            incoming = self._incoming = io.BytesIO()
            incoming.write(memoryview(self._pieces.pop())[self._offset :])
            self._offset = 0
        incoming.write(payload)
        self._size += len(payload)

    def _take(self, limit: int) -> bytes | memoryview:
        """Up to `limit` bytes from the front: the first piece itself, or a memoryview
        of it, where they lie in one piece (a sender frames straight from them)."""
        if self._incoming is not None:
            return self._take_incoming(limit)
        pieces = self._pieces
        first = pieces[0]
        offset = self._offset
        end = offset + limit
        if end < len(first):
            self._offset = end
            self._size -= limit
            return memoryview(first)[offset:end]
        if end == len(first) or len(pieces) == 1:
            del pieces[0]
            self._offset = 0
            self._size -= len(first) - offset
            return first if offset == 0 else memoryview(first)[offset:]
        # Across pieces (a sender that streamed small ones): join what one frame takes.
        parts = []
        wanted = min(limit, self._size)
        while wanted:
            part = self._take(min(wanted, len(pieces[0]) - self._offset))
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)

    def _take_incoming(self, limit: int) -> bytes:
        incoming = self._incoming
        assert incoming is not None
        offset = self._offset
        if offset == 0 and limit >= self._size:
            self._incoming = None
            self._size = 0
            return incoming.getvalue()  # the buffer itself: no copy
        with incoming.getbuffer() as view:
            chunk = bytes(view[offset : offset + limit])
        self._offset = offset + len(chunk)
        self._size -= len(chunk)
        if not self._size:
            self._incoming = None
            self._offset = 0
        return chunk

    def _discard(self) -> None:
        self._pieces = []
        self._offset = self._size = 0
        self._incoming = None

    @property
    def readable(self) -> bool:
        link = self._link
        return link.is_receiver and link.current is self

    @property
    def writable(self) -> bool:
        link = self._link
        return isinstance(link, Sender) and link.current is self and link.credit > 0

    @property
    def buffered(self) -> bool:
        return self._link.is_sender and not self._sent_first

    def update(self, state: int) -> None:
        """Set the local outcome (Delivery.ACCEPTED ...), taking details from `local`."""
        self.local_state = state
        self.local.type = state
        if not self.settled and (self._sent_first or self._link.is_receiver):
            self._link.session._queue_disposition(self)

    def settle(self) -> None:
        if self.local_settled:
            return
        self.local_settled = True
        link = self._link
        if link.is_sender:
            link.unsettled_count -= 1
            if self.id is not None:
                link.session._outgoing_unsettled.pop(self.id, None)
        else:
            link.unsettled_count -= 1
            link._forget_incoming(self)
            if link.current is self:
                link.advance()
        if not self.settled and (self._sent_first or link.is_receiver):
            link.session._queue_disposition(self)

    def abort(self) -> None:
        """Abandon a message part-way (spec 2.6.14): the peer discards what it got."""
        self._link._abort(self)

    def __repr__(self) -> str:
        return f"Delivery(tag={self.tag!r}, id={self.id})"


class _NoDeliveries(deque["Delivery"]):
    """The deliveries of every link that never had one: shared, so never added to."""

    def append(self, delivery: Delivery) -> None:
        raise TypeError("NO_DELIVERIES is shared by every idle link: use Link._queue")


NO_DELIVERIES: deque[Delivery] = _NoDeliveries()


class Link(Endpoint):
    """A link: a one-way route for messages between a source and a target."""

    SND_UNSETTLED = SND_UNSETTLED
    SND_SETTLED = SND_SETTLED
    SND_MIXED = SND_MIXED
    RCV_FIRST = RCV_FIRST
    RCV_SECOND = RCV_SECOND

    is_sender = False
    is_receiver = False

    # Over 30 attributes would not fit the compact layout of an instance __dict__:
    # slots make an idle link (two per idle stream) about 2 KiB smaller.
    __slots__ = (
        "_session",
        "name",
        "source",
        "target",
        "remote_source",
        "remote_target",
        "snd_settle_mode",
        "rcv_settle_mode",
        "remote_snd_settle_mode",
        "remote_rcv_settle_mode",
        "max_message_size",
        "remote_max_message_size",
        "properties",
        "offered_capabilities",
        "desired_capabilities",
        "remote_properties",
        "handle",
        "remote_handle",
        "delivery_count",
        "_link_credit",
        "drain_mode",
        "available",
        "unsettled_count",
        "_deliveries",
        "current",
        "_attach_sent",
        "_detach_sent",
        "_closing",
        "_flow_needed",
        "_incoming_partial",
        "_next_link",
        "_prev_link",
    )

    def __init__(self, session: Session, name: str) -> None:
        super().__init__()
        self._session = session
        self.name = name
        self.source = Terminus(Terminus.SOURCE)
        self.target = Terminus(Terminus.TARGET)
        self.remote_source = Terminus(Terminus.UNSPECIFIED)
        self.remote_target = Terminus(Terminus.UNSPECIFIED)
        self.snd_settle_mode = SND_MIXED
        self.rcv_settle_mode = RCV_FIRST
        self.remote_snd_settle_mode = SND_MIXED
        self.remote_rcv_settle_mode = RCV_FIRST
        self.max_message_size = 0
        self.remote_max_message_size = 0
        self.properties: dict[Any, Any] | None = None
        self.offered_capabilities: list[Any] | None = None
        self.desired_capabilities: list[Any] | None = None
        self.remote_properties: dict[Any, Any] | None = None
        self.handle: int | None = None
        self.remote_handle: int | None = None
        self.delivery_count = 0
        # Sender: credit granted by the peer, less deliveries transmitted. Receiver:
        # credit we granted, less deliveries received.
        self._link_credit = 0
        self.drain_mode = False
        self.available = 0
        self.unsettled_count = 0
        # Shared and empty until the first delivery (`_queue`): an idle link (10,000
        # idle streams have two each) does not pay for a deque of its own.
        self._deliveries: deque[Delivery] = NO_DELIVERIES
        self.current: Delivery | None = None
        self._attach_sent = False
        self._detach_sent = False
        self._closing = True  # detach with closed=true (close) or not (detach)
        self._flow_needed = False
        self._incoming_partial: Delivery | None = None
        # Neighbours in the connection's list of links (None at either end, or once
        # the link is forgotten).
        self._next_link: Link | None = None
        self._prev_link: Link | None = None

    @property
    def session(self) -> Session:
        return self._session

    @property
    def link(self) -> Link:
        return self

    @property
    def connection(self) -> Connection:
        return self._session.connection

    @property
    def transport(self) -> Transport | None:
        return self._session.connection.transport

    @property
    def unsettled(self) -> int:
        return self.unsettled_count

    def open(self) -> None:
        if self._local == Endpoint.LOCAL_UNINIT:
            self._local = Endpoint.LOCAL_ACTIVE
            self._put(Event.LINK_LOCAL_OPEN)
            self._session._mark(self)

    def close(self) -> None:
        self._finish(closing=True)

    def detach(self) -> None:
        self._finish(closing=False)

    def _finish(self, closing: bool) -> None:
        if self._local != Endpoint.LOCAL_CLOSED:
            self._local = Endpoint.LOCAL_CLOSED
            self._closing = closing
            self._put(Event.LINK_LOCAL_CLOSE if closing else Event.LINK_LOCAL_DETACH)
            self._session._mark(self)

    def _put(self, event_type: EventType) -> None:
        self._session.connection._emit(self, event_type)

    def _put_delivery(self, delivery: Delivery) -> None:
        self._session.connection._emit(delivery, Event.DELIVERY)

    def free(self) -> None:
        """Kept for Proton compatibility."""

    def _queue(self, delivery: Delivery) -> None:
        deliveries = self._deliveries
        if deliveries is NO_DELIVERIES:
            deliveries = self._deliveries = deque()
        deliveries.append(delivery)

    def advance(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _abort(self, delivery: Delivery) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _forget_incoming(self, delivery: Delivery) -> None:
        if delivery.id is not None:
            self._session._incoming_unsettled.pop(delivery.id, None)

    def next(self, mask: int) -> Link | None:
        link = self._next_link
        while link is not None and not _matches(link, mask):
            link = link._next_link
        return link

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Sender(Link):
    """The sending end of a link."""

    is_sender = True

    __slots__ = ("_tag_counter", "queued", "_unfinished")

    def __init__(self, session: Session, name: str) -> None:
        super().__init__(session, name)
        self._tag_counter = 0
        self.queued = 0  # advanced and not yet transmitted
        # Deliveries in _deliveries neither advanced nor aborted (at most this many: it may
        # be too high after a reset, never too low), so that advance() need not look
        # through thousands of advanced deliveries waiting for credit to find none.
        self._unfinished = 0

    @property
    def credit(self) -> int:
        return self._link_credit - self.queued

    def delivery_tag(self) -> bytes:
        self._tag_counter += 1
        return str(self._tag_counter).encode("ascii")

    def delivery(self, tag: bytes | str) -> Delivery:
        if isinstance(tag, str):
            tag = tag.encode("utf-8")
        delivery = Delivery(self, tag)
        self._queue(delivery)
        self._unfinished += 1
        self.unsettled_count += 1
        if self.current is None:
            self.current = delivery
        return delivery

    def stream(self, data: bytes | bytearray | memoryview) -> int:
        """Add `data` to the current delivery. Bytes are kept as they are, not copied
        (they cannot change); a bytearray or memoryview is copied, as the caller may."""
        current = self.current
        if current is None:
            raise ValueError("no current delivery: call delivery(tag) first")
        if data:
            current._append(data if type(data) is bytes else bytes(data))
        self._session._mark(self)
        return len(data)

    def advance(self) -> bool:
        current = self.current
        if current is None:
            return False
        if not current._complete and not current.aborted:
            self._unfinished -= 1
        current._complete = True
        if not current._sent_first:
            self.queued += 1
        following = None
        if self._unfinished > 0:
            unfinished = 0
            for delivery in self._deliveries:
                if not delivery._complete and not delivery.aborted:
                    if following is None:
                        following = delivery
                    unfinished += 1
            self._unfinished = unfinished
        self.current = following
        self._session._mark(self)
        return True

    def send(self, obj: Message | bytes, tag: bytes | str | None = None) -> Delivery:
        """Send a Message (encoded here) or bytes as one delivery."""
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return self.stream(obj)  # type: ignore[return-value]
        delivery = self.delivery(tag if tag is not None else self.delivery_tag())
        for part in obj.encode_parts():
            delivery._append(part)
        self.advance()
        if self.snd_settle_mode == SND_SETTLED:
            delivery.settle()
        return delivery

    def offered(self, count: int) -> None:
        self.available = count
        self._flow_needed = True
        self._session._mark(self)

    def drained(self) -> int:
        """If the peer asked to drain, give up the credit left; return how much."""
        if not self.drain_mode or self.queued:
            return 0
        left = self._link_credit
        if left > 0:
            self.delivery_count = (self.delivery_count + left) & 0xFFFFFFFF
            self._link_credit = 0
            self._flow_needed = True
            self._session._mark(self)
        return left if left > 0 else 0

    def _abort(self, delivery: Delivery) -> None:
        if not delivery._complete and not delivery.aborted:
            self._unfinished -= 1
        delivery.aborted = True
        delivery._discard()
        if not delivery._sent_first:
            # Nothing left: the peer never heard of it.
            if delivery in self._deliveries:
                self._deliveries.remove(delivery)
                if delivery._complete:
                    self.queued -= 1
            self.unsettled_count -= 1
            delivery.local_settled = True
        if self.current is delivery:
            self.current = None
        self._session._mark(self)


class Receiver(Link):
    """The receiving end of a link."""

    is_receiver = True

    __slots__ = ("_drained",)

    def __init__(self, session: Session, name: str) -> None:
        super().__init__(session, name)
        self._drained = 0

    @property
    def credit(self) -> int:
        return max(self._link_credit, 0) + len(self._deliveries)

    @property
    def queued(self) -> int:
        return len(self._deliveries)

    def flow(self, credit: int) -> None:
        """Grant `credit` more messages to the sender."""
        if credit <= 0:
            return
        self._link_credit += credit
        self._flow_needed = True
        self._session._mark(self)

    def drain(self, credit: int) -> None:
        """Grant `credit` and ask the sender to use it or give it back at once."""
        self._link_credit += credit
        self.drain_mode = True
        self._flow_needed = True
        self._session._mark(self)

    def draining(self) -> bool:
        return self.drain_mode and self._link_credit > 0

    def drained(self) -> int:
        """How much credit the sender gave back (by draining) since the last call."""
        drained, self._drained = self._drained, 0
        return drained

    def set_drain(self, drain: bool) -> None:
        self.drain_mode = drain

    def recv(self, limit: int) -> bytes | None:
        """Take up to `limit` bytes of the current delivery; None at its end."""
        current = self.current
        if current is None:
            return None
        if not current._size:
            return None if not current.partial else b""
        chunk = current._take(limit)
        return chunk if type(chunk) is bytes else bytes(chunk)

    def advance(self) -> bool:
        current = self.current
        if current is None:
            return False
        if self._deliveries and self._deliveries[0] is current:
            self._deliveries.popleft()
        self.current = self._deliveries[0] if self._deliveries else None
        return True

    def _abort(self, delivery: Delivery) -> None:
        raise ValueError("only a sender can abort a delivery")
