"""MessagingHandler and the helpers it is built from, with Proton's names and behaviour.

`MessagingHandler` turns the engine's low-level events into the tutorial's callbacks
(`on_sendable`, `on_message`, `on_accepted`, `on_link_opened`, `on_disconnected`, ...).
Like Proton's, it is composed of small child handlers: a flow controller that keeps
`prefetch` credit on receivers, an endpoint-state handler that answers the peer's
opens and closes, and the incoming and outgoing message handlers that read, accept and
settle. Each child calls back into the user's handler by method name, so a subclass
overrides only the callbacks it cares about.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from .codec import DecodeError
from .engine import Condition
from .engine.endpoints import Delivery, Endpoint, Receiver
from .message import Message, MessageReader

__all__ = [
    "Acking",
    "EndpointStateHandler",
    "FlowController",
    "Handler",
    "Handshaker",
    "IncomingMessageHandler",
    "MessagingHandler",
    "OutgoingMessageHandler",
    "Reject",
    "Release",
]

log = logging.getLogger("amqp_core.handlers")


class Handler:
    """Base of event handlers: `on_<event>` methods, and `on_unhandled` for the rest."""

    handlers: list[Any] = []

    def on_unhandled(self, method: str, event: Any) -> None:
        """Called for an event this handler has no method for."""


def _call(target: Any, method: str, event: Any) -> None:
    """Call `target.method(event)`, or `target.on_unhandled(method, event)`."""
    bound = getattr(target, method, None)
    if bound is not None:
        bound(event)
    else:
        unhandled = getattr(target, "on_unhandled", None)
        if unhandled is not None:
            unhandled(method, event)


class Reject(Exception):
    """Raise from `on_message` to reject the message."""


class Release(Exception):
    """Raise from `on_message` to release the message (it may go to someone else)."""


class Acking:
    """Settle received messages with an outcome."""

    def accept(self, delivery: Delivery) -> None:
        self.settle(delivery, Delivery.ACCEPTED)

    def reject(self, delivery: Delivery) -> None:
        self.settle(delivery, Delivery.REJECTED)

    def release(self, delivery: Delivery, delivered: bool = True) -> None:
        """Give the message back: MODIFIED (its delivery counted) if `delivered`,
        else RELEASED."""
        self.settle(delivery, Delivery.MODIFIED if delivered else Delivery.RELEASED)

    def settle(self, delivery: Delivery, state: int | None = None) -> None:
        if state:
            if state == Delivery.MODIFIED:
                delivery.local.failed = True
            delivery.update(state)
        delivery.settle()


class FlowController(Handler):
    """Keep `window` credit on every receiver, topping up as messages arrive."""

    def __init__(self, window: int = 1024) -> None:
        self._window = window
        self._drained = 0

    def on_link_local_open(self, event: Any) -> None:
        self._flow(event.link)

    def on_link_remote_open(self, event: Any) -> None:
        self._flow(event.link)

    def on_link_flow(self, event: Any) -> None:
        self._flow(event.link)

    def on_delivery(self, event: Any) -> None:
        self._flow(event.link)

    def _flow(self, link: Any) -> None:
        if link.is_receiver and link._local == Endpoint.LOCAL_ACTIVE:
            self._drained += link.drained()
            if self._drained == 0:
                link.flow(self._window - link.credit)


class Handshaker(Handler):
    """Open what the peer opens and close what it closes."""

    @staticmethod
    def on_connection_remote_open(event: Any) -> None:
        if event.connection._local == Endpoint.LOCAL_UNINIT:
            event.connection.open()

    @staticmethod
    def on_session_remote_open(event: Any) -> None:
        if event.session._local == Endpoint.LOCAL_UNINIT:
            event.session.open()

    @staticmethod
    def on_link_remote_open(event: Any) -> None:
        link = event.link
        if link._local == Endpoint.LOCAL_UNINIT:
            link.source.copy(link.remote_source)
            link.target.copy(link.remote_target)
            link.open()

    @staticmethod
    def on_connection_remote_close(event: Any) -> None:
        if event.connection._local != Endpoint.LOCAL_CLOSED:
            event.connection.close()

    @staticmethod
    def on_session_remote_close(event: Any) -> None:
        if event.session._local != Endpoint.LOCAL_CLOSED:
            event.session.close()

    @staticmethod
    def on_link_remote_close(event: Any) -> None:
        if event.link._local != Endpoint.LOCAL_CLOSED:
            event.link.close()


class EndpointStateHandler(Handler):
    """Turn open/close state changes into `on_*_opening/opened/closing/closed/error`
    callbacks on `delegate`, answering the peer's opens and closes."""

    def __init__(self, peer_close_is_error: bool = False, delegate: Any = None) -> None:
        self.delegate = delegate
        self.peer_close_is_error = peer_close_is_error

    @staticmethod
    def print_error(endpoint: Any, kind: str) -> None:
        condition = endpoint.remote_condition
        if condition is not None:
            log.error("%s error: %s", kind, condition)
        elif endpoint._local != Endpoint.LOCAL_CLOSED:
            log.error("%s closed by peer", kind)

    def _callback(self, method: str, event: Any) -> None:
        if self.delegate is not None:
            _call(self.delegate, method, event)

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        if link.remote_condition is not None:
            self._callback("on_link_error", event)
        elif link._local == Endpoint.LOCAL_CLOSED:
            self._callback("on_link_closed", event)
        else:
            self._closing("link", event)
        link.close()

    def on_link_local_close(self, event: Any) -> None:
        if event.link._remote == Endpoint.REMOTE_CLOSED:
            self._callback("on_link_closed", event)

    def on_session_remote_close(self, event: Any) -> None:
        session = event.session
        if session.remote_condition is not None:
            self._callback("on_session_error", event)
        elif session._local == Endpoint.LOCAL_CLOSED:
            self._callback("on_session_closed", event)
        else:
            self._closing("session", event)
        session.close()

    def on_session_local_close(self, event: Any) -> None:
        if event.session._remote == Endpoint.REMOTE_CLOSED:
            self._callback("on_session_closed", event)

    def on_connection_remote_close(self, event: Any) -> None:
        connection = event.connection
        if connection.remote_condition is not None:
            self._callback("on_connection_error", event)
        elif connection._local == Endpoint.LOCAL_CLOSED:
            self._callback("on_connection_closed", event)
        else:
            self._closing("connection", event)
        connection.close()

    def on_connection_local_close(self, event: Any) -> None:
        if event.connection._remote == Endpoint.REMOTE_CLOSED:
            self._callback("on_connection_closed", event)

    def _closing(self, kind: str, event: Any) -> None:
        if self.peer_close_is_error:
            self._callback(f"on_{kind}_error", event)
        else:
            self._callback(f"on_{kind}_closing", event)

    def on_connection_local_open(self, event: Any) -> None:
        if event.connection._remote == Endpoint.REMOTE_ACTIVE:
            self._callback("on_connection_opened", event)

    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        if connection._local == Endpoint.LOCAL_ACTIVE:
            self._callback("on_connection_opened", event)
        elif connection._local == Endpoint.LOCAL_UNINIT:
            self._callback("on_connection_opening", event)
            connection.open()

    def on_session_local_open(self, event: Any) -> None:
        if event.session._remote == Endpoint.REMOTE_ACTIVE:
            self._callback("on_session_opened", event)

    def on_session_remote_open(self, event: Any) -> None:
        session = event.session
        if session._local == Endpoint.LOCAL_ACTIVE:
            self._callback("on_session_opened", event)
        elif session._local == Endpoint.LOCAL_UNINIT:
            self._callback("on_session_opening", event)
            session.open()

    def on_link_local_open(self, event: Any) -> None:
        if event.link._remote == Endpoint.REMOTE_ACTIVE:
            self._callback("on_link_opened", event)

    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if link._local == Endpoint.LOCAL_ACTIVE:
            self._callback("on_link_opened", event)
        elif link._local == Endpoint.LOCAL_UNINIT:
            self._callback("on_link_opening", event)
            link.open()

    def on_transport_tail_closed(self, event: Any) -> None:
        self.on_transport_closed(event)

    def on_transport_closed(self, event: Any) -> None:
        connection = event.connection
        if (
            connection is not None
            and connection._local == Endpoint.LOCAL_ACTIVE
            and not getattr(connection, "_disconnect_reported", False)
        ):
            # Tail-closed and closed both end here: report the disconnect once.
            connection._disconnect_reported = True
            self._callback("on_disconnected", event)

    def on_connection_bound(self, event: Any) -> None:
        event.connection._disconnect_reported = False


def read_message(
    link: Receiver, delivery: Delivery, reader: MessageReader | None
) -> tuple[Message | None, MessageReader | None]:
    """Read what has come of `delivery`, the link's current one. Once all of it came:
    (its message, None). Before: (None, a reader holding what came so far), to pass
    back in as `reader` at its next frame. So a message in many frames is read a frame
    at a time, as it comes, and its large body is never copied whole; a message in one
    frame is simply decoded. DecodeError for a message that is not one."""
    data = link.recv(delivery.pending) or b""
    if delivery.partial:
        reader = reader or MessageReader()
        reader.feed(data)
        return None, reader
    if reader is None:
        message = Message()
        message.decode(data)
        return message, None
    reader.feed(data)
    return reader.message(), None


class IncomingMessageHandler(Handler, Acking):
    """Read complete messages into `event.message`, call `on_message`, and accept
    them (if `auto_accept`) unless it raised `Reject` or `Release`."""

    def __init__(self, auto_accept: bool = True, delegate: Any = None) -> None:
        self.delegate = delegate
        self.auto_accept = auto_accept
        # Messages arriving in several frames, read as they come (`read_message`).
        self._readers: weakref.WeakKeyDictionary[Delivery, MessageReader] = (
            weakref.WeakKeyDictionary()
        )

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        if not link.is_receiver:
            return
        if delivery.aborted:
            self._readers.pop(delivery, None)
            self._callback("on_aborted", event)
            delivery.settle()
        elif delivery.readable:
            try:
                message, reader = read_message(link, delivery, self._readers.pop(delivery, None))
            except DecodeError as error:
                # One peer's malformed message is that message's problem: rejected, and
                # the connection and the link go on (it used to fail the connection).
                link.advance()
                delivery.local.condition = Condition("amqp:decode-error", str(error))
                self.settle(delivery, Delivery.REJECTED)
                log.warning("rejected a message that cannot be decoded: %s", error)
                return
            if message is None:
                assert reader is not None
                self._readers[delivery] = reader
                return
            link.advance()
            event.message = message
            if link._local == Endpoint.LOCAL_CLOSED:
                if self.auto_accept:
                    self.settle(delivery, Delivery.RELEASED)
                return
            try:
                self._callback("on_message", event)
            except Reject:
                self.reject(delivery)
            except Release:
                self.release(delivery, delivered=True)
            else:
                if self.auto_accept and not delivery.local_settled:
                    self.accept(delivery)
        elif delivery.updated and delivery.settled:
            self._callback("on_settled", event)

    def _callback(self, method: str, event: Any) -> None:
        if self.delegate is not None:
            _call(self.delegate, method, event)


class OutgoingMessageHandler(Handler):
    """Call `on_sendable` when a sender has credit, and `on_accepted`/`on_rejected`/
    `on_released`/`on_settled` as the peer settles what was sent (settling our side
    too, if `auto_settle`)."""

    def __init__(self, auto_settle: bool = True, delegate: Any = None) -> None:
        self.delegate = delegate
        self.auto_settle = auto_settle

    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if (
            link.is_sender
            and link.credit
            and link._local == Endpoint.LOCAL_ACTIVE
            and link._remote == Endpoint.REMOTE_ACTIVE
        ):
            self._callback("on_sendable", event)
        if link.is_sender and link.drain_mode:
            link.drained()

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        if not delivery.link.is_sender or not delivery.updated:
            return
        state = delivery.remote_state
        if state == Delivery.ACCEPTED:
            self._callback("on_accepted", event)
        elif state == Delivery.REJECTED:
            self._callback("on_rejected", event)
        elif state in (Delivery.RELEASED, Delivery.MODIFIED):
            self._callback("on_released", event)
        if delivery.settled:
            self._callback("on_settled", event)
            if self.auto_settle:
                delivery.settle()

    def _callback(self, method: str, event: Any) -> None:
        if self.delegate is not None:
            _call(self.delegate, method, event)


class MessagingHandler(Handler, Acking):
    """The tutorial's handler: subclass it and define the callbacks you need.

    `prefetch` is the credit kept on each receiver (0: the application grants credit
    itself); `auto_accept` accepts each message after `on_message` returns;
    `auto_settle` settles what we sent once the peer has settled it;
    `peer_close_is_error` reports a peer's plain close as an error.
    """

    def __init__(
        self,
        prefetch: int = 10,
        auto_accept: bool = True,
        auto_settle: bool = True,
        peer_close_is_error: bool = False,
    ) -> None:
        self.handlers: list[Any] = []
        if prefetch:
            self.handlers.append(FlowController(prefetch))
        self.handlers.append(EndpointStateHandler(peer_close_is_error, self))
        self.handlers.append(IncomingMessageHandler(auto_accept, self))
        self.handlers.append(OutgoingMessageHandler(auto_settle, self))
        self.fatal_conditions = ["amqp:unauthorized-access"]

    def on_transport_error(self, event: Any) -> None:
        condition = event.transport.condition if event.transport is not None else None
        if condition is None:
            log.error("transport error")
            return
        log.error("%s", condition)
        if condition.name in self.fatal_conditions and event.connection is not None:
            event.connection.close()

    def on_connection_error(self, event: Any) -> None:
        EndpointStateHandler.print_error(event.connection, "connection")

    def on_session_error(self, event: Any) -> None:
        EndpointStateHandler.print_error(event.session, "session")
        event.connection.close()

    def on_link_error(self, event: Any) -> None:
        EndpointStateHandler.print_error(event.link, "link")
        event.connection.close()

    def on_reactor_init(self, event: Any) -> None:
        self.on_start(event)

    def on_start(self, event: Any) -> None:
        """The container started: connect, listen, create links here."""

    def on_connection_closed(self, event: Any) -> None:
        pass

    def on_session_closed(self, event: Any) -> None:
        pass

    def on_link_closed(self, event: Any) -> None:
        pass

    def on_connection_closing(self, event: Any) -> None:
        pass

    def on_session_closing(self, event: Any) -> None:
        pass

    def on_link_closing(self, event: Any) -> None:
        pass

    def on_disconnected(self, event: Any) -> None:
        pass

    def on_sendable(self, event: Any) -> None:
        pass

    def on_accepted(self, event: Any) -> None:
        pass

    def on_rejected(self, event: Any) -> None:
        pass

    def on_released(self, event: Any) -> None:
        pass

    def on_settled(self, event: Any) -> None:
        pass

    def on_message(self, event: Any) -> None:
        pass
