"""Blocking utilities, as in Proton's `proton.utils`: send and receive without handlers.

`BlockingConnection` runs a private `Container` on its own event loop, and runs that
loop only while a call waits for its result, so a plain script (or a thread) can
`send()` and `receive()` one message at a time. `SyncRequestResponse` adds a dynamic
reply address and correlation ids on top.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

from .engine.endpoints import Connection, Delivery, Endpoint, Link, Receiver, Sender
from .exceptions import ConnectionException, LinkException, Timeout
from .handlers import Handler, IncomingMessageHandler, MessagingHandler
from .message import Message
from .reactor.container import Container
from .url import Url

__all__ = [
    "BlockingConnection",
    "BlockingReceiver",
    "BlockingSender",
    "ConnectionClosed",
    "LinkDetached",
    "SendException",
    "SyncRequestResponse",
]


class SendException(LinkException):
    """The peer did not accept a message sent by `BlockingSender.send`."""

    def __init__(self, state: int) -> None:
        super().__init__(f"send failed: delivery state {state:#x}")
        self.state = state


class LinkDetached(LinkException):
    """The peer closed a link."""

    def __init__(self, link: Link) -> None:
        self.link = link
        kind = "sender" if link.is_sender else "receiver"
        condition = link.remote_condition
        text = f"{kind} {link.name} closed"
        if condition is not None:
            text += f" due to: {condition}"
        super().__init__(text)
        self.condition = condition.name if condition is not None else None


class ConnectionClosed(ConnectionException):
    """The peer closed the connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        condition = connection.remote_condition
        text = "connection closed"
        if condition is not None:
            text += f" due to: {condition}"
        super().__init__(text)
        self.condition = condition.name if condition is not None else None


class BlockingLink:
    """What blocking senders and receivers share: waiting for the attach, closing."""

    def __init__(self, connection: BlockingConnection, link: Any) -> None:
        self.connection = connection
        self.link = link
        connection.wait(
            lambda: not (link.state & Endpoint.REMOTE_UNINIT),
            msg=f"Opening link {link.name}",
        )
        self._check_closed()

    def _wait_for_close(self, timeout: float = 1) -> None:
        with contextlib.suppress(Timeout):
            self.connection.wait(
                lambda: self.link.state & Endpoint.REMOTE_CLOSED,
                timeout=timeout,
                msg="Opening link",
            )
        self._check_closed()

    def _check_closed(self) -> None:
        if self.link.state & Endpoint.REMOTE_CLOSED:
            self.link.close()
            if not self.connection.closing:
                raise LinkDetached(self.link)

    def close(self) -> None:
        self.link.close()
        self.connection.wait(
            lambda: not (self.link.state & Endpoint.REMOTE_ACTIVE),
            msg=f"Closing link {self.link.name}",
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.link, name)


class BlockingSender(BlockingLink):
    """Sends one message at a time, returning once the peer settled it."""

    link: Sender

    def __init__(self, connection: BlockingConnection, sender: Sender) -> None:
        super().__init__(connection, sender)
        wanted = sender.target.address
        if wanted and wanted != sender.remote_target.address:
            self._wait_for_close()
            sender.close()
            raise LinkException(f"Failed to open sender {sender.name}, target does not match")

    def send(
        self,
        msg: Message,
        timeout: float | None | bool = False,
        error_states: list[int] | None = None,
    ) -> Delivery:
        """Send and wait for the outcome; raise SendException for a rejected or released
        message (or one in `error_states`)."""
        delivery = self.link.send(msg)
        self.connection.wait(
            lambda: delivery.settled or self.link.snd_settle_mode == Link.SND_SETTLED,
            msg=f"Sending on sender {self.link.name}",
            timeout=timeout,
        )
        if self.link.snd_settle_mode != Link.SND_SETTLED:
            delivery.settle()
        bad = error_states if error_states is not None else [Delivery.REJECTED, Delivery.RELEASED]
        if delivery.remote_state in bad:
            raise SendException(delivery.remote_state)
        return delivery


class Fetcher(MessagingHandler):
    """Collects the messages a blocking receiver has been given."""

    def __init__(self, connection: BlockingConnection, prefetch: int | None) -> None:
        super().__init__(prefetch=prefetch or 0, auto_accept=False)
        self.connection = connection
        self.incoming: collections.deque[tuple[Message, Delivery]] = collections.deque()
        self.unsettled: collections.deque[Delivery] = collections.deque()

    def on_message(self, event: Any) -> None:
        self.incoming.append((event.message, event.delivery))

    def on_link_error(self, event: Any) -> None:
        if event.link.state & Endpoint.LOCAL_ACTIVE:
            event.link.close()
            if not self.connection.closing:
                raise LinkDetached(event.link)

    def on_connection_error(self, event: Any) -> None:
        if not self.connection.closing:
            raise ConnectionClosed(event.connection)

    @property
    def has_message(self) -> int:
        return len(self.incoming)

    def pop(self) -> Message:
        message, delivery = self.incoming.popleft()
        if not delivery.settled:
            self.unsettled.append(delivery)
        return message

    # Proton's Fetcher settles "the next popped message", not a given delivery.
    def settle(self, state: int | None = None) -> None:  # type: ignore[override]
        delivery = self.unsettled.popleft()
        if state:
            delivery.update(state)
        delivery.settle()


class BlockingReceiver(BlockingLink):
    """Receives one message at a time; `accept()` (or reject, release) settles it."""

    link: Receiver

    def __init__(
        self,
        connection: BlockingConnection,
        receiver: Receiver,
        fetcher: Fetcher | None,
        credit: int | None = 1,
    ) -> None:
        super().__init__(connection, receiver)
        wanted = receiver.source.address
        if wanted and wanted != receiver.remote_source.address:
            self._wait_for_close()
            receiver.close()
            raise LinkException(f"Failed to open receiver {receiver.name}, source does not match")
        if credit:
            receiver.flow(credit)
        self.fetcher = fetcher

    def receive(self, timeout: float | None | bool = False) -> Message:
        fetcher = self.fetcher
        if fetcher is None:
            raise LinkException(
                "this receiver has a handler of its own: receive() is not available"
            )
        if not self.link.credit:
            self.link.flow(1)
        self.connection.wait(
            lambda: fetcher.has_message,
            msg=f"Receiving on receiver {self.link.name}",
            timeout=timeout,
        )
        return fetcher.pop()

    def accept(self) -> None:
        self.settle(Delivery.ACCEPTED)

    def reject(self) -> None:
        self.settle(Delivery.REJECTED)

    def release(self, delivered: bool = True) -> None:
        self.settle(Delivery.MODIFIED if delivered else Delivery.RELEASED)

    def settle(self, state: int | None = None) -> None:
        if self.fetcher is None:
            raise LinkException("this receiver has a handler of its own: settle it there")
        self.fetcher.settle(state)


class BlockingConnection(Handler):
    """A connection driven by the calling thread: each call runs the event loop until
    its result is in, or `timeout` seconds pass (Timeout)."""

    def __init__(
        self,
        url: str | Url | None = None,
        timeout: float | None = None,
        container: Container | None = None,
        ssl_domain: Any = None,
        heartbeat: float | None = None,
        urls: list[str] | None = None,
        reconnect: Any = None,
        **kwargs: Any,
    ) -> None:
        self.disconnected: Any = False
        self.closing = False
        self.timeout = timeout or 60
        self.url = str(url) if url is not None else None
        self._loop = asyncio.new_event_loop()
        self._wake: asyncio.Event | None = None
        self.container = container or Container()
        self.container._stop_on_error = False
        self.container._after_process.append(self._woken)
        self._loop.run_until_complete(self._start())
        if url is not None and urls is None and reconnect is None:
            reconnect = False
        self.conn: Connection | None = None
        failed = True
        try:
            self.conn = self.container.connect(
                url=url,
                urls=urls,
                handler=self,
                ssl_domain=ssl_domain,
                reconnect=reconnect,
                heartbeat=heartbeat,
                **kwargs,
            )
            connection = self.conn
            self.wait(
                lambda: not (connection.state & Endpoint.REMOTE_UNINIT), msg="Opening connection"
            )
            failed = False
        finally:
            if failed:
                self.close()

    async def _start(self) -> None:
        self.container.start()

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def create_sender(
        self,
        address: str | None,
        handler: Any = None,
        name: str | None = None,
        options: Any = None,
    ) -> BlockingSender:
        assert self.conn is not None
        sender = self.container.create_sender(
            self.conn, address, name=name, handler=handler, options=options
        )
        return BlockingSender(self, sender)

    def create_receiver(
        self,
        address: str | None = None,
        credit: int | None = None,
        dynamic: bool = False,
        handler: Any = None,
        name: str | None = None,
        options: Any = None,
    ) -> BlockingReceiver:
        assert self.conn is not None
        prefetch = credit
        fetcher: Fetcher | None = None
        if handler is not None:
            if prefetch is None:
                prefetch = 1
        else:
            fetcher = Fetcher(self, credit)
        receiver = self.container.create_receiver(
            self.conn,
            address,
            name=name,
            dynamic=dynamic,
            handler=handler or fetcher,
            options=options,
        )
        return BlockingReceiver(self, receiver, fetcher, credit=prefetch)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        try:
            connection = self.conn
            if connection is not None and not self.disconnected:
                connection.close()
                self.wait(
                    lambda: (
                        not (connection.state & Endpoint.REMOTE_ACTIVE) or bool(self.disconnected)
                    ),
                    msg="Closing connection",
                )
        finally:
            self.container.stop()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def run(self) -> None:
        """Hand the thread to the event loop until the container has nothing left."""
        self.container._auto_stop = True
        self.container._check_idle()
        self._loop.run_until_complete(self.container.wait())

    def wait(
        self,
        condition: Callable[[], Any],
        timeout: float | None | bool = False,
        msg: str | None = None,
    ) -> None:
        """Run the event loop until `condition()` is true; Timeout after `timeout`."""
        if timeout is False:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        self._loop.run_until_complete(self._wait(condition, deadline, msg))
        if self.disconnected and not self._is_closed():
            raise ConnectionException(f"Connection {self.url} disconnected: {self.disconnected}")

    async def _wait(
        self, condition: Callable[[], Any], deadline: float | None, msg: str | None
    ) -> None:
        self._wake = asyncio.Event()
        try:
            while True:
                self._raise_pending()
                if condition() or self.disconnected:
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    text = f"Connection {self.url} timed out"
                    raise Timeout(f"{text}: {msg}" if msg else text)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
        finally:
            self._wake = None

    def _raise_pending(self) -> None:
        error = self.container._error
        if error is not None:
            self.container._error = None
            raise error

    def _is_closed(self) -> bool:
        connection = self.conn
        return connection is None or bool(
            connection.state & (Endpoint.LOCAL_CLOSED | Endpoint.REMOTE_CLOSED)
        )

    def on_link_remote_close(self, event: Any) -> None:
        if event.link.state & Endpoint.LOCAL_ACTIVE:
            event.link.close()
            if not self.closing:
                raise LinkDetached(event.link)

    def on_connection_remote_close(self, event: Any) -> None:
        if event.connection.state & Endpoint.LOCAL_ACTIVE:
            event.connection.close()
            if not self.closing:
                raise ConnectionClosed(event.connection)

    def on_transport_tail_closed(self, event: Any) -> None:
        self.on_transport_closed(event)

    def on_transport_head_closed(self, event: Any) -> None:
        self.on_transport_closed(event)

    def on_transport_closed(self, event: Any) -> None:
        if not self.closing:
            transport = event.transport
            self.disconnected = (
                transport.condition if transport is not None else None
            ) or "unknown"


class SyncRequestResponse(IncomingMessageHandler):
    """Call a request/response service: `call(request)` returns the reply."""

    def __init__(self, connection: BlockingConnection, address: str | None = None) -> None:
        super().__init__()
        self.delegate = self
        self.connection = connection
        self.address = address
        self.sender = connection.create_sender(address)
        self.receiver = connection.create_receiver(None, dynamic=True, credit=1, handler=self)
        self.response: Message | None = None
        self._correlation_ids = itertools.count(1)

    def call(self, request: Message) -> Message:
        if not self.address and not request.address:
            raise ValueError(f"Request message has no address: {request}")
        request.reply_to = self.reply_to
        correlation_id = str(next(self._correlation_ids))
        request.correlation_id = correlation_id
        self.sender.send(request)
        self.connection.wait(
            lambda: self.response is not None and self.response.correlation_id == correlation_id,
            msg="Waiting for response",
        )
        response = self.response
        assert response is not None
        self.response = None
        self.receiver.flow(1)
        return response

    @property
    def reply_to(self) -> str:
        return str(self.receiver.remote_source.address)

    def on_message(self, event: Any) -> None:
        self.response = event.message
