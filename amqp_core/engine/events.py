"""Engine events: what changed in the protocol state, queued for the application.

The names and meanings are Proton's (`Event.LINK_FLOW`, `Event.DELIVERY`, ...): the
engine puts an event on the connection's `Collector` whenever local or remote state
changes, and whoever drives the engine (the reactor, a test) pops them in order.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["Collector", "Event", "EventType"]


class EventType:
    """One kind of event. `method` is the handler method it calls: "on_link_flow"."""

    __slots__ = ("name", "method", "number")
    _count = 0

    def __init__(self, name: str) -> None:
        self.name = name
        self.method = "on_" + name.lower()
        EventType._count += 1
        self.number = EventType._count

    def __repr__(self) -> str:
        return self.name


class Event:
    """An event with its context: the endpoint, delivery or transport it concerns.

    `connection`, `session`, `link` and `delivery` are found from the context, as in
    Proton, so a handler can reach any of them from any event below them.
    """

    CONNECTION_INIT = EventType("CONNECTION_INIT")
    CONNECTION_BOUND = EventType("CONNECTION_BOUND")
    CONNECTION_UNBOUND = EventType("CONNECTION_UNBOUND")
    CONNECTION_LOCAL_OPEN = EventType("CONNECTION_LOCAL_OPEN")
    CONNECTION_REMOTE_OPEN = EventType("CONNECTION_REMOTE_OPEN")
    CONNECTION_LOCAL_CLOSE = EventType("CONNECTION_LOCAL_CLOSE")
    CONNECTION_REMOTE_CLOSE = EventType("CONNECTION_REMOTE_CLOSE")
    CONNECTION_FINAL = EventType("CONNECTION_FINAL")
    SESSION_INIT = EventType("SESSION_INIT")
    SESSION_LOCAL_OPEN = EventType("SESSION_LOCAL_OPEN")
    SESSION_REMOTE_OPEN = EventType("SESSION_REMOTE_OPEN")
    SESSION_LOCAL_CLOSE = EventType("SESSION_LOCAL_CLOSE")
    SESSION_REMOTE_CLOSE = EventType("SESSION_REMOTE_CLOSE")
    SESSION_FINAL = EventType("SESSION_FINAL")
    LINK_INIT = EventType("LINK_INIT")
    LINK_LOCAL_OPEN = EventType("LINK_LOCAL_OPEN")
    LINK_REMOTE_OPEN = EventType("LINK_REMOTE_OPEN")
    LINK_LOCAL_CLOSE = EventType("LINK_LOCAL_CLOSE")
    LINK_REMOTE_CLOSE = EventType("LINK_REMOTE_CLOSE")
    LINK_LOCAL_DETACH = EventType("LINK_LOCAL_DETACH")
    LINK_REMOTE_DETACH = EventType("LINK_REMOTE_DETACH")
    LINK_FLOW = EventType("LINK_FLOW")
    LINK_FINAL = EventType("LINK_FINAL")
    DELIVERY = EventType("DELIVERY")
    TRANSPORT = EventType("TRANSPORT")
    TRANSPORT_ERROR = EventType("TRANSPORT_ERROR")
    TRANSPORT_HEAD_CLOSED = EventType("TRANSPORT_HEAD_CLOSED")
    TRANSPORT_TAIL_CLOSED = EventType("TRANSPORT_TAIL_CLOSED")
    TRANSPORT_CLOSED = EventType("TRANSPORT_CLOSED")

    __slots__ = ("type", "context")

    def __init__(self, type: EventType, context: Any) -> None:
        self.type = type
        self.context = context

    @property
    def connection(self) -> Any:
        return getattr(self.context, "connection", None)

    @property
    def session(self) -> Any:
        session = getattr(self.context, "session", None)
        # A Connection's `session` is the method that makes one, not a session.
        return None if callable(session) else session

    @property
    def link(self) -> Any:
        return getattr(self.context, "link", None)

    @property
    def sender(self) -> Any:
        link = self.link
        return link if link is not None and link.is_sender else None

    @property
    def receiver(self) -> Any:
        link = self.link
        return link if link is not None and link.is_receiver else None

    @property
    def delivery(self) -> Any:
        return getattr(self.context, "delivery", None)

    @property
    def transport(self) -> Any:
        return getattr(self.context, "transport", None)

    def __repr__(self) -> str:
        return f"{self.type.name}({self.context!r})"


class Collector:
    """The queue of events an engine produced, oldest first."""

    __slots__ = ("_events",)

    def __init__(self) -> None:
        self._events: deque[Event] = deque()

    def put(self, context: Any, type: EventType) -> None:
        self._events.append(Event(type, context))

    def peek(self) -> Event | None:
        return self._events[0] if self._events else None

    def pop(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def __len__(self) -> int:
        return len(self._events)
