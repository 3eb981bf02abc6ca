"""An awaitable API over the same Container, for asyncio programs and the gateway.

    connection = await aio.connect("amqp://localhost:5672")
    sender = await connection.open_sender("examples")
    outcome = await sender.send(Message(body="hi"))      # Outcome(state=ACCEPTED, ...)
    receiver = await connection.open_receiver("examples", credit=10)
    async for delivery in receiver:                      # credit is topped up as you go
        print(delivery.message.body)
        delivery.accept()
    reply = await connection.request(Message(address="service", body="x"), timeout=5)

Everything runs on the running event loop: a Container started with `start()`, so no
thread and no hop per message. Credit is backpressure: a receiver never holds more
unsettled messages than its credit window, however slowly it is iterated.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .codec import DecodeError
from .engine.endpoints import (
    Condition,
    Connection,
    Delivery,
    Endpoint,
    Receiver,
    Sender,
    Session,
)
from .exceptions import ConnectionException, LinkException, ProtonException, Timeout
from .handlers import Handler, read_message
from .message import Message, MessageReader
from .reactor.container import Container
from .reactor.options import LinkOption

log = logging.getLogger("amqp_core.aio")

__all__ = [
    "AsyncConnection",
    "AsyncReceiver",
    "AsyncSender",
    "Outcome",
    "ReceivedMessage",
    "connect",
]

_OUTCOME_NAMES = {
    Delivery.ACCEPTED: "accepted",
    Delivery.REJECTED: "rejected",
    Delivery.RELEASED: "released",
    Delivery.MODIFIED: "modified",
}


@dataclass(frozen=True)
class Outcome:
    """How the peer settled a message we sent."""

    state: int
    condition: Condition | None = None
    delivery_failed: bool = False
    undeliverable_here: bool = False
    annotations: dict[Any, Any] | None = None

    @property
    def name(self) -> str:
        """ "accepted", "rejected", "released", "modified" (or "settled" for no outcome)."""
        return _OUTCOME_NAMES.get(self.state, "settled")

    @property
    def accepted(self) -> bool:
        return self.state == Delivery.ACCEPTED

    @classmethod
    def of(cls, delivery: Delivery) -> Outcome:
        remote = delivery.remote
        return cls(
            delivery.remote_state,
            remote.condition,
            remote.failed,
            remote.undeliverable,
            remote.annotations,
        )


class _LinkHandler(Handler):
    """Wakes the futures of one link as its events arrive."""

    def __init__(self, owner: _AsyncLink) -> None:
        self.owner = owner

    def on_link_remote_open(self, event: Any) -> None:
        self.owner._opened()

    def on_link_remote_close(self, event: Any) -> None:
        self.owner._closed(event.link.remote_condition)

    def on_link_remote_detach(self, event: Any) -> None:
        self.owner._closed(event.link.remote_condition)

    def on_link_flow(self, event: Any) -> None:
        self.owner._flow()

    def on_delivery(self, event: Any) -> None:
        self.owner._delivery(event.delivery)


class _AsyncLink:
    def __init__(self, connection: AsyncConnection, link: Any) -> None:
        self._connection = connection
        self.link = link
        self._open: asyncio.Future[None] = connection._loop.create_future()
        #: Why the link cannot be used any more: a LinkException when the peer closed
        #: it (or its session), a ConnectionException when the connection went.
        self.error: ProtonException | None = None
        link.handler = _LinkHandler(self)
        connection._links.add(self)

    def _opened(self) -> None:
        if not self._open.done():
            self._open.set_result(None)

    def _closed(self, condition: Condition | None) -> None:
        kind = "sender" if self.link.is_sender else "receiver"
        text = f"{kind} {self.link.name} closed"
        error = LinkException(f"{text}: {condition}" if condition else text)
        error.condition = condition  # type: ignore[attr-defined]
        if self.link._local != Endpoint.LOCAL_CLOSED:
            self.link.close()
        self._fail(error)

    def _fail(self, error: ProtonException) -> None:
        """The link is gone (closed by the peer, or its session or connection ended):
        wake everyone waiting on it with `error`."""
        self._connection._links.discard(self)
        if self.error is None:
            self.error = error
        if not self._open.done():
            _fail_future(self._open, self.error)
        self._fail_waiters(self.error)

    def _fail_waiters(self, error: Exception) -> None:
        """Subclasses wake whoever waits on the link."""

    def _flow(self) -> None:
        pass

    def _delivery(self, delivery: Delivery) -> None:
        pass

    async def _wait_open(self, timeout: float | None) -> None:
        try:
            await _bounded(self._open, timeout, f"attaching link {self.link.name}")
        except BaseException:
            # Given up (a timeout, a cancellation) or refused: the link must not attach
            # later unseen, nor stay among the connection's links.
            if self.link._local != Endpoint.LOCAL_CLOSED:
                self.link.close()
            self._connection._links.discard(self)
            raise
        if self.link._remote == Endpoint.REMOTE_CLOSED:
            raise self.error or LinkException(f"link {self.link.name} was refused")

    async def close(self) -> None:
        self.link.close()


class AsyncSender(_AsyncLink):
    """Send messages and await their outcomes."""

    link: Sender

    def __init__(self, connection: AsyncConnection, link: Sender) -> None:
        super().__init__(connection, link)
        self._credit_waiters: deque[asyncio.Future[None]] = deque()
        self._pending: dict[Delivery, asyncio.Future[Outcome]] = {}

    @property
    def address(self) -> str | None:
        return self.link.target.address

    async def send(self, message: Message, timeout: float | None = None) -> Outcome:
        """Send and wait until the peer settles the message; return its outcome.

        Waits for credit first, so a peer that grants none holds the caller back.
        """
        await self.wait_for_credit(timeout)
        delivery = self.link.send(message)
        future: asyncio.Future[Outcome] = self._connection._loop.create_future()
        self._pending[delivery] = future
        try:
            return await _bounded(future, timeout, "waiting for the outcome")
        finally:
            self._pending.pop(delivery, None)

    def send_presettled(self, message: Message) -> Delivery:
        """Send at most once: settled at once, no outcome to wait for."""
        if self.error is not None:
            raise self.error
        delivery = self.link.send(message)
        delivery.settle()
        return delivery

    async def wait_for_credit(self, timeout: float | None = None) -> None:
        while self.link.credit <= 0:
            if self.error is not None:
                raise self.error
            waiter: asyncio.Future[None] = self._connection._loop.create_future()
            self._credit_waiters.append(waiter)
            await _wait(waiter, timeout, "waiting for credit")
        if self.error is not None:
            raise self.error

    def _flow(self) -> None:
        while self._credit_waiters and self.link.credit > 0:
            waiter = self._credit_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if self.link.drain_mode:
            self.link.drained()

    def _delivery(self, delivery: Delivery) -> None:
        if not delivery.settled:
            return
        future = self._pending.get(delivery)
        delivery.settle()
        if future is not None and not future.done():
            future.set_result(Outcome.of(delivery))

    def _fail_waiters(self, error: Exception) -> None:
        for waiter in self._credit_waiters:
            if not waiter.done():
                _fail_future(waiter, error)
        self._credit_waiters.clear()
        for future in self._pending.values():
            if not future.done():
                _fail_future(future, error)


class ReceivedMessage:
    """A message with the delivery it came in, to settle with an outcome."""

    def __init__(self, receiver: AsyncReceiver, message: Message, delivery: Delivery) -> None:
        self.message = message
        self.delivery = delivery
        self._receiver = receiver

    @property
    def settled(self) -> bool:
        return self.delivery.local_settled

    def accept(self) -> None:
        self.settle(Delivery.ACCEPTED)

    def reject(self, condition: Condition | None = None) -> None:
        self.delivery.local.condition = condition
        self.settle(Delivery.REJECTED)

    def release(self) -> None:
        self.settle(Delivery.RELEASED)

    def modify(
        self,
        delivery_failed: bool = True,
        undeliverable_here: bool = False,
        annotations: dict[Any, Any] | None = None,
    ) -> None:
        local = self.delivery.local
        local.failed = delivery_failed
        local.undeliverable = undeliverable_here
        local.annotations = annotations
        self.settle(Delivery.MODIFIED)

    def settle(self, state: int | None = None) -> None:
        if self.delivery.local_settled:
            return
        if state:
            self.delivery.update(state)
        self.delivery.settle()
        self._receiver._settled()


class AsyncReceiver(_AsyncLink):
    """Receive messages with `async for` or `await receive()`.

    `credit` is the window: at most that many messages are in flight or waiting
    to be settled; credit comes back as the application settles them.
    `async for` ends when the peer closes the link, and raises ConnectionException
    when the connection is lost.
    """

    link: Receiver
    #: The delivery arriving in several frames and its reader (`read_message`); on the
    #: class while there is none, so that an idle receiver does not hold the slot.
    _reading: tuple[Delivery, MessageReader] | None = None

    def __init__(self, connection: AsyncConnection, link: Receiver, credit: int) -> None:
        super().__init__(connection, link)
        self.credit_window = credit
        self._ready: deque[ReceivedMessage] = deque()
        # Usually one (an idle stream's) or none: a list costs a tenth of a deque.
        self._waiters: list[asyncio.Future[None]] = []
        self._unsettled = 0

    @property
    def address(self) -> str | None:
        return self.link.remote_source.address or self.link.source.address

    @property
    def unsettled(self) -> int:
        """Messages received and not settled yet (waiting to be read, or read)."""
        return self._unsettled

    def _top_up(self) -> None:
        link = self.link
        if link._local != Endpoint.LOCAL_ACTIVE:
            return
        wanted = self.credit_window - self._unsettled - link.credit
        if wanted > 0:
            link.flow(wanted)

    def _delivery(self, delivery: Delivery) -> None:
        link = self.link
        if not delivery.readable:
            return
        reading = self._reading
        if reading is not None:
            del self._reading  # back to the class's None
        if delivery.aborted:
            link.advance()
            delivery.settle()
            return
        try:
            reader = reading[1] if reading is not None and reading[0] is delivery else None
            message, reader = read_message(link, delivery, reader)
            if message is None:
                assert reader is not None
                self._reading = (delivery, reader)
                return
        except DecodeError as error:
            # One peer's malformed message is that message's problem: rejected, and the
            # connection and this receiver go on, as Proton's do.
            link.advance()
            delivery.local.condition = Condition("amqp:decode-error", str(error))
            delivery.update(Delivery.REJECTED)
            delivery.settle()
            self._top_up()
            log.warning(
                "rejected a message from %r that cannot be decoded: %s", self.address, error
            )
            return
        link.advance()
        self._unsettled += 1
        self._ready.append(ReceivedMessage(self, message, delivery))
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break

    def _settled(self) -> None:
        self._unsettled -= 1
        self._top_up()

    def _fail_waiters(self, error: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                _fail_future(waiter, error)
        self._waiters.clear()

    async def receive(self, timeout: float | None = None) -> ReceivedMessage:
        """The next message; the caller settles it (accept(), reject(), ...)."""
        while not self._ready:
            if self.error is not None:
                raise self.error
            waiter: asyncio.Future[None] = self._connection._loop.create_future()
            self._waiters.append(waiter)
            await _wait(waiter, timeout, "waiting for a message")
        return self._ready.popleft()

    def __aiter__(self) -> AsyncIterator[ReceivedMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ReceivedMessage]:
        while True:
            try:
                yield await self.receive()
            except LinkException:
                if self._ready:
                    continue
                return

    async def close(self) -> None:
        """Detach; messages received but not settled go back to the sender (released)."""
        for pending in list(self._ready):
            pending.release()
        self._ready.clear()
        self.link.close()


class _ConnectionHandler(Handler):
    def __init__(self, owner: AsyncConnection) -> None:
        self.owner = owner

    def on_connection_remote_open(self, event: Any) -> None:
        self.owner._set_open()

    def on_connection_remote_close(self, event: Any) -> None:
        if event.connection._local != Endpoint.LOCAL_CLOSED:
            event.connection.close()
        self.owner._set_closed(event.connection.remote_condition)

    def on_session_remote_close(self, event: Any) -> None:
        # Some brokers (RabbitMQ) refuse an attach or report a link's error by ending
        # the whole session: every link on it is gone, and none will hear a detach.
        session = event.session
        if session._local != Endpoint.LOCAL_CLOSED:
            session.close()  # so that the next link opens on a new session
        self.owner._session_closed(session, session.remote_condition)

    def on_transport_closed(self, event: Any) -> None:
        transport = event.transport
        self.owner._set_closed(transport.condition if transport is not None else None)
        if not self.owner._transport_closed.done():
            self.owner._transport_closed.set_result(None)


class AsyncConnection:
    """A connection used from coroutines. Make one with `await connect(url)`."""

    def __init__(self, container: Container, connection: Connection) -> None:
        self.container = container
        self.connection = connection
        self._loop = asyncio.get_running_loop()
        self._open: asyncio.Future[None] = self._loop.create_future()
        self._transport_closed: asyncio.Future[None] = self._loop.create_future()
        self.error: ConnectionException | None = None
        self._reply_receiver: AsyncReceiver | None = None
        self._reply_sender: AsyncSender | None = None
        self._replies: dict[Any, asyncio.Future[Message]] = {}
        self._correlation_ids = itertools.count(1)
        self._reply_task: asyncio.Task[None] | None = None
        self._links: set[_AsyncLink] = set()
        connection.handler = _ConnectionHandler(self)

    def _set_open(self) -> None:
        if not self._open.done():
            self._open.set_result(None)

    def _set_closed(self, condition: Any) -> None:
        if self.error is None:
            text = f"connection closed: {condition}" if condition else "connection closed"
            self.error = ConnectionException(text)
        if not self._open.done():
            _fail_future(self._open, self.error)
        for future in self._replies.values():
            if not future.done():
                _fail_future(future, self.error)
        # The engine tells links nothing when the transport goes: wake their waiters
        # here, or a send would wait for an outcome that can no longer come.
        for link in list(self._links):
            link._fail(self.error)

    def _session_closed(self, session: Session, condition: Condition | None) -> None:
        for link in list(self._links):
            if link.link.session is session:
                link._closed(condition)

    @property
    def is_open(self) -> bool:
        return self.error is None and self._open.done() and self._open.exception() is None

    async def wait_closed(self) -> None:
        """Return once the connection is gone: closed by either side, or its socket lost."""
        await asyncio.shield(self._transport_closed)

    def open_session(self) -> Session:
        """A new session, for links that should not share the fate of the default
        session's (a broker that ends a session over one link's error ends them all)."""
        self._check()
        session = self.connection.session()
        session.open()
        return session

    async def open_sender(
        self,
        address: str | None,
        name: str | None = None,
        options: LinkOption | list[LinkOption] | None = None,
        timeout: float | None = 30,
        session: Session | None = None,
    ) -> AsyncSender:
        """Attach a sender to `address` (None: ANONYMOUS-RELAY), on `session` or else
        the connection's default session; raise LinkException if the peer refuses."""
        self._check()
        link = self.container.create_sender(
            session or self.connection, address, name=name, options=options
        )
        sender = AsyncSender(self, link)
        await sender._wait_open(timeout)
        return sender

    async def open_receiver(
        self,
        address: str | None,
        credit: int = 10,
        name: str | None = None,
        dynamic: bool = False,
        options: LinkOption | list[LinkOption] | None = None,
        timeout: float | None = 30,
        session: Session | None = None,
    ) -> AsyncReceiver:
        """Attach a receiver from `address` (or a dynamic node) with a window of
        `credit` messages, on `session` or else the connection's default session."""
        self._check()
        link = self.container.create_receiver(
            session or self.connection, address, name=name, dynamic=dynamic, options=options
        )
        receiver = AsyncReceiver(self, link, credit)
        receiver._top_up()
        await receiver._wait_open(timeout)
        return receiver

    async def request(self, message: Message, timeout: float | None = 30) -> Message:
        """Send `message` to its address with a fresh correlation id and our reply
        address, and wait for the reply."""
        await self._ensure_reply_path(timeout)
        assert self._reply_receiver is not None and self._reply_sender is not None
        correlation_id = f"{uuid.uuid4()}:{next(self._correlation_ids)}"
        message.reply_to = self._reply_receiver.address
        message.correlation_id = correlation_id
        future: asyncio.Future[Message] = self._loop.create_future()
        self._replies[correlation_id] = future
        try:
            outcome = await self._reply_sender.send(message, timeout)
            if not outcome.accepted:
                raise LinkException(f"request was {outcome.name}: {outcome.condition}")
            return await _bounded(future, timeout, "waiting for the reply")
        finally:
            self._replies.pop(correlation_id, None)

    async def _ensure_reply_path(self, timeout: float | None) -> None:
        if self._reply_receiver is None:
            self._reply_receiver = await self.open_receiver(
                None, credit=100, dynamic=True, timeout=timeout
            )
            self._reply_task = self._loop.create_task(self._route_replies(self._reply_receiver))
        if self._reply_sender is None:
            self._reply_sender = await self.open_sender(None, timeout=timeout)

    async def _route_replies(self, receiver: AsyncReceiver) -> None:
        # The connection's end fails the waiting requests itself (_set_closed).
        with contextlib.suppress(ConnectionException):
            async for received in receiver:
                received.accept()
                future = self._replies.get(received.message.correlation_id)
                if future is not None and not future.done():
                    future.set_result(received.message)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    async def close(self, timeout: float | None = 10) -> None:
        """Close and wait (boundedly) for the peer's close."""
        if self._reply_task is not None:
            self._reply_task.cancel()
        self.connection.close()
        with contextlib.suppress(Timeout):
            await _bounded(self._transport_closed, timeout, "closing the connection")


async def connect(
    url: str,
    container: Container | None = None,
    timeout: float | None = 30,
    **kwargs: Any,
) -> AsyncConnection:
    """Open a connection on the running loop (a Container is started if none given)."""
    if container is None:
        container = Container()
    container.start()
    kwargs.setdefault("reconnect", False)
    connection = AsyncConnection(container, container.connect(url, **kwargs))
    try:
        await _bounded(connection._open, timeout, f"connecting to {url}")
    except BaseException:
        # Give up on it for good: it must not open later, unseen, or retry forever.
        connection.connection.close()
        raise
    return connection


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    """Fail a future that wakes a waiter. Whoever awaits it still gets `error`; but its
    waiter may have given up (timed out, cancelled), and the error is kept elsewhere
    too (`error` of the link or connection), so asyncio need not report it unretrieved."""
    future.set_exception(error)
    future.exception()


async def _wait(waiter: asyncio.Future[None], timeout: float | None, what: str) -> None:
    """Wait for a wake-up `waiter`; if the wait ends without it (timeout, cancellation),
    cancel it, so that the next wake-up goes to a waiter that is still there."""
    try:
        if timeout is None:
            # The waiter is this wait's alone: no shield or timer needed, and an idle
            # receiver (a stream) holds only this frame while it waits.
            await waiter
        else:
            await _bounded(waiter, timeout, what)
    finally:
        if not waiter.done():
            waiter.cancel()


async def _bounded(future: asyncio.Future[Any], timeout: float | None, what: str) -> Any:
    # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
    # that arrives as the future completes, and the cancelled task then runs on.
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(future)
    except TimeoutError:
        raise Timeout(f"timed out {what}") from None
