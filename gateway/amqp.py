"""The gateway's AMQP side: one shared connection to a broker, and the embedded broker.

`AmqpClient` holds ONE AMQP 1.0 connection (amqp_core.aio) for every HTTP client of the
gateway, and keeps it up: it reconnects with Proton's backoff (0, 0.1, 0.2, ... 10 s)
whenever the broker is not up yet or the connection drops. While it is down every call
fails at once with `BrokerUnavailable`, so no HTTP request waits on a broker that is
not there. The routes use it like this:

    client = AmqpClient(AmqpClientConfig(url="amqp://guest:guest@rabbit:5672"))
    await client.start()                       # returns at once; connects in the background
    client.connected                           # for /readyz
    outcome = await client.send("orders", Message(body={"id": 1}), timeout=10)
    await client.send_presettled("orders", Message(body="fire and forget"), timeout=10)
    reply = await client.request("examples", Message(body="Twas brillig"), timeout=30)
    stream = await client.open_receiver("orders", selector="colour = 'green'", credit=10)
    async for received in stream:              # a WebSocket's messages
        stream.settle(received.id, "accepted")   # or received.accept()
    await stream.close()                       # what was not settled goes back (released)
    await client.close(grace=10)               # finishes in-flight sends and requests first

- `send` answers the outcome exactly as the broker settled it (accepted, rejected with
  its condition, released, modified), through a sender per address, attached on first
  use and cached; the cache is bounded (least recently used senders are detached) and a
  sender the broker detached is replaced on its next use.
- `request` shares ONE reply receiver among all requests and matches replies by
  correlation id, in whatever order they come. The reply receiver is dynamic; a broker
  that refuses dynamic receivers (RabbitMQ answers amqp:not-implemented) gets a named
  reply queue instead, `gateway-replies-<uuid>` (or `AmqpClientConfig.reply_address`).
- `open_receiver` gives a `StreamReceiver`: one AMQP receiver (one WebSocket or SSE
  stream, or a long-poll) that never has more than `credit` messages in flight or
  unsettled. Credit is granted again only as messages are settled, so a slow client
  holds back the broker, not the gateway's memory.

Sessions: a stream is a link, not a session. The senders share the connection's default
session and the reply receiver has one of its own; the streams' receivers share
sessions of `links_per_session` links each (`_StreamSessions`), so that the streams a
gateway holds are bounded by its memory, not by the broker's channel-max (255 sessions
on RabbitMQ and on amqp_core's broker: at 256 links a session, some 56,000 streams on
the one connection). A broker may end a whole session over one link's error (RabbitMQ
3 does, for an attach to a missing queue or exchange): then every stream on it ends
with `StreamInterrupted`, and its client opens it again. So that one client's bad
address cannot do that to the others, `probe_addresses` first tries each address on a
session of its own, without credit, before the stream's receiver joins a shared one.

`EmbeddedBroker` runs amqp_core's broker in the running event loop (uvicorn's), for a
gateway started without --amqp-url; the gateway's `AmqpClient` then connects to it at
`EmbeddedBroker.url`, where the tutorial's programs meet it too.

Every error is a `GatewayAmqpError` whose text says what happened and what to do:
`BrokerUnavailable` (HTTP 503: nothing was sent, a retry is safe; `StreamInterrupted` is
one), `SendInDoubt` and `SendTimeout` (504: the message was sent and its outcome is
unknown), `RequestTimeout` (504),
`AddressRefused` (by its AMQP condition: 404, 403, 400 ...), `RequestNotAccepted` (as a
send's outcome), `UnknownMessageId` (a stream acknowledgement for no message),
`EmbeddedBrokerError` (the gateway cannot start).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from amqp_core import (
    Condition,
    ConnectionException,
    Endpoint,
    LinkException,
    Message,
    Session,
    Timeout,
    aio,
)
from amqp_core.aio import AsyncConnection, AsyncReceiver, AsyncSender, Outcome, ReceivedMessage
from amqp_core.broker.queues import AddressStats
from amqp_core.broker.server import Broker, BrokerConfig
from amqp_core.reactor import Container
from amqp_core.reactor.backoff import Backoff
from amqp_core.reactor.options import Copy, LinkOption, Selector
from amqp_core.sslconfig import SSLDomain

__all__ = [
    "AddressRefused",
    "AmqpClient",
    "AmqpClientConfig",
    "BrokerUnavailable",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "GatewayAmqpError",
    "Outcome",
    "RequestNotAccepted",
    "RequestTimeout",
    "RequestInDoubt",
    "SendInDoubt",
    "SendTimeout",
    "StreamInterrupted",
    "StreamMessage",
    "StreamReceiver",
    "UnknownMessageId",
]

log = logging.getLogger(__name__)

#: How a stream's client may settle a message: the AMQP outcomes' names.
OutcomeName = Literal["accepted", "rejected", "released", "modified"]
OUTCOME_NAMES: tuple[OutcomeName, ...] = ("accepted", "rejected", "released", "modified")


# -- errors -------------------------------------------------------------------------------


class GatewayAmqpError(Exception):
    """Base of the errors of the gateway's AMQP side; the text is meant for the user."""


class BrokerUnavailable(GatewayAmqpError):
    """Not connected to the broker: it is down or unreachable, refused the connection,
    or the connection was lost during the operation. Retry later (HTTP 503)."""


class StreamInterrupted(BrokerUnavailable):
    """The broker ended the AMQP session that carried this stream's receiver along with
    others' (RabbitMQ ends a whole session over one link's error): open the stream
    again (HTTP 503, WebSocket close code 1013)."""

    def __init__(self, address: str, condition: Condition | None) -> None:
        reason = f" ({condition})" if condition is not None else ""
        super().__init__(
            f"the broker ended the AMQP session that carried the stream from {address!r}"
            f"{reason}; other streams shared it: open the stream again"
        )
        self.address = address
        self.condition = condition


class SendInDoubt(GatewayAmqpError):
    """The message went to the broker, and then the connection or the link was lost
    before the broker settled it: it may or may not have been delivered, and nothing
    the gateway can do now will tell (HTTP 504, its own problem type). Unlike
    BrokerUnavailable, a blind retry may duplicate it."""

    def __init__(self, address: str, message_id: Any, what_happened: str) -> None:
        super().__init__(
            f"the message to {address!r} was sent, and {what_happened}: it may or may not "
            "have been delivered"
        )
        self.address = address
        self.message_id = message_id


class RequestInDoubt(SendInDoubt):
    """A request went to the broker, and then the connection or the link was lost
    before its reply came: the service may or may not have had it (HTTP 504)."""


class SendTimeout(SendInDoubt):
    """The message was sent, and the broker did not settle it within the timeout."""

    def __init__(self, address: str, timeout: float, message_id: Any = None) -> None:
        super().__init__(address, message_id, f"the broker did not settle it within {timeout:g} s")
        self.timeout = timeout


class RequestTimeout(GatewayAmqpError):
    """No reply came within the timeout (HTTP 504)."""

    def __init__(self, address: str, timeout: float) -> None:
        super().__init__(
            f"no reply from {address!r} within {timeout:g} s: is a service consuming from "
            "that address, and does it answer to reply_to with the request's correlation_id?"
        )
        self.address = address
        self.timeout = timeout


class AddressRefused(GatewayAmqpError):
    """The broker refused a link to `address` or closed it; `condition` (an AMQP error
    condition such as amqp:not-found or amqp:unauthorized-access) says why."""

    def __init__(self, address: str, condition: Condition | None) -> None:
        reason = f": {condition}" if condition is not None else ""
        super().__init__(f"the broker refused or closed the link to {address!r}{reason}")
        self.address = address
        self.condition = condition


class RequestNotAccepted(GatewayAmqpError):
    """The broker did not accept the request message: `outcome` says how it settled it
    (rejected, with a condition; released or modified: try again later)."""

    def __init__(self, address: str, outcome: Outcome) -> None:
        reason = f" ({outcome.condition})" if outcome.condition is not None else ""
        super().__init__(f"the request to {address!r} was {outcome.name}{reason}")
        self.address = address
        self.outcome = outcome


class UnknownMessageId(GatewayAmqpError):
    """A stream's client settled a message id it does not hold (HTTP/WebSocket 4xx)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(
            f"no unsettled message with id {message_id} on this stream: "
            "it was settled already, or never sent"
        )
        self.message_id = message_id


class EmbeddedBrokerError(GatewayAmqpError):
    """The embedded broker could not start (its address is taken, its store unusable)."""


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class AmqpClientConfig:
    """The gateway's connection to its broker."""

    #: amqp[s]://[user:password@]host[:port]. With a user, SASL PLAIN; without,
    #: ANONYMOUS. amqps: TLS, checking the broker's certificate and name against the
    #: system's CAs unless `ssl_domain` says otherwise.
    url: str = "amqp://localhost:5672"
    #: The container id the broker sees; default: amqp-gateway-<uuid>.
    container_id: str | None = None
    #: Seconds of silence from the broker after which the connection counts as dead. It
    #: is sent as our idle-time-out, so the broker sends heartbeats at least twice as
    #: often; we send ours at half the broker's (RabbitMQ asks for 60 s and drops
    #: connections that stay silent).
    idle_timeout: float = 60.0
    #: Largest frame we accept; None: the engine's default.
    max_frame_size: int | None = None
    #: SASL mechanisms to allow, space separated ("PLAIN"); None: as the URL implies.
    sasl_mechanisms: str | None = None
    #: TLS settings for amqps (trusted CAs, a client certificate); None: the defaults.
    ssl_domain: SSLDomain | None = None
    #: Seconds to wait for the broker to open the connection.
    connect_timeout: float = 10.0
    #: Seconds to wait for the broker to answer a link's attach.
    attach_timeout: float = 30.0
    #: Longest pause between reconnect attempts (the pause doubles from 0.1 s to this).
    max_reconnect_delay: float = 10.0
    #: Senders kept attached (one per address, least recently used detached first): a
    #: client posting to a million addresses must not cost a million links.
    max_senders: int = 256
    #: Replies the broker may send ahead of the reply receiver (its credit window).
    reply_credit: int = 1000
    #: A named address to receive replies at instead of a dynamic one. It must be this
    #: gateway's own: replies are matched by correlation id, and another consumer of the
    #: same queue would take (and drop) this gateway's replies.
    reply_address: str | None = None
    #: Stream receivers that share one AMQP session: what one session's end takes down
    #: at most (see the module's docstring).
    links_per_session: int = 256
    #: Try each stream's address on a session of its own (attach without credit, then
    #: detach) before its receiver joins a shared session, for brokers that end a whole
    #: session over a bad address. amqp_core's broker detaches just that link: the
    #: gateway's own client to its embedded broker does without.
    probe_addresses: bool = True


def redact(url: str) -> str:
    """`url` with its password hidden, for logs and error messages."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    if parts.password is None:
        return url
    netloc = f"{parts.username}:****@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)).removeprefix("//")


# -- senders ------------------------------------------------------------------------------


class _CachedSender:
    """A sender in the cache: its attach (shared by everyone who waits for it), how many
    operations use it now, and whether it was evicted (detach once they are done)."""

    def __init__(self, opening: asyncio.Task[AsyncSender]) -> None:
        self.opening = opening
        self.in_use = 0
        self.evicted = False
        # Everyone waiting for the attach may have given up: retrieve a failure here so
        # asyncio does not report it as never retrieved.
        opening.add_done_callback(_retrieve_exception)

    @property
    def usable(self) -> bool:
        """Attaching, or attached and not closed since."""
        if not self.opening.done():
            return True
        if self.opening.cancelled() or self.opening.exception() is not None:
            return False
        return self.opening.result().error is None

    def detach_when_unused(self) -> None:
        if self.in_use:
            return
        if self.opening.done():
            _detach_sender(self.opening)
        else:
            self.opening.add_done_callback(_detach_sender)


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _detach_sender(opening: asyncio.Task[AsyncSender]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        sender = opening.result()
        if sender.error is None:
            sender.link.close()


class _SenderCache:
    """One sender per address on one connection, attached on first use, at most
    `max_senders` of them (least recently used detached first)."""

    def __init__(self, connection: AsyncConnection, max_senders: int, attach_timeout: float):
        self._connection = connection
        self._max_senders = max_senders
        self._attach_timeout = attach_timeout
        self._entries: OrderedDict[str, _CachedSender] = OrderedDict()

    @property
    def usable(self) -> int:
        """Senders attached or attaching, not detached since."""
        return sum(entry.usable for entry in self._entries.values())

    @contextlib.asynccontextmanager
    async def use(self, address: str) -> AsyncIterator[AsyncSender]:
        """The sender for `address`, kept attached (not evicted) while it is in use."""
        entry = self._entry(address)
        entry.in_use += 1
        try:
            try:
                # Shielded: one caller's timeout must not cancel the attach others share.
                sender = await asyncio.shield(entry.opening)
            except LinkException as error:
                self._forget(address, entry)
                raise AddressRefused(address, getattr(error, "condition", None)) from None
            except Timeout:
                self._forget(address, entry)
                raise BrokerUnavailable(
                    f"the broker did not answer the attach of a sender to {address!r} "
                    f"within {self._attach_timeout:g} s"
                ) from None
            yield sender
        finally:
            entry.in_use -= 1
            if entry.evicted:
                entry.detach_when_unused()

    def _entry(self, address: str) -> _CachedSender:
        entry = self._entries.get(address)
        if entry is not None:
            if entry.usable:
                self._entries.move_to_end(address)
                return entry
            # Detached by the broker (or its attach failed): attach a new one.
            del self._entries[address]
        opening = asyncio.get_running_loop().create_task(
            self._connection.open_sender(address, timeout=self._attach_timeout)
        )
        entry = self._entries[address] = _CachedSender(opening)
        while len(self._entries) > self._max_senders:
            _, oldest = self._entries.popitem(last=False)
            oldest.evicted = True
            oldest.detach_when_unused()
        return entry

    def _forget(self, address: str, entry: _CachedSender) -> None:
        if self._entries.get(address) is entry:
            del self._entries[address]


# -- replies ------------------------------------------------------------------------------

#: Reply addresses of earlier connections still refused to clients (a dynamic one is
#: new at each reconnect).
REMEMBERED_REPLY_ADDRESSES = 64


class _ReplyRouter:
    """One reply receiver for every request of the gateway; each reply goes to the
    request waiting for its correlation id, in whatever order replies come."""

    def __init__(self, config: AmqpClientConfig) -> None:
        self._config = config
        #: The named queue used when the broker refuses dynamic receivers: one name for
        #: the gateway's life, so that reconnects find the same queue again.
        self.fallback_address = config.reply_address or f"gateway-replies-{uuid.uuid4()}"
        self._receiver: AsyncReceiver | None = None
        self._routing: asyncio.Task[None] | None = None
        self._attaching = asyncio.Lock()
        self.address: str | None = None
        self.dynamic = False
        self._pending: dict[str, asyncio.Future[Message]] = {}
        #: Every address replies came to lately, the current one last: a late reply to
        #: one used before a reconnect must not be read by a client either.
        self.used_addresses: OrderedDict[str, None] = OrderedDict({self.fallback_address: None})
        self._closing = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def ensure(self, connection: AsyncConnection) -> str:
        """The reply address on `connection`, attaching the reply receiver if needed."""
        async with self._attaching:
            receiver = self._receiver
            if receiver is not None and receiver.error is None and self.address is not None:
                return self.address
            self.address = None
            self._receiver = receiver = await self._attach(connection)
            self._routing = asyncio.get_running_loop().create_task(self._route(receiver))
            self.address = receiver.address
            assert self.address is not None
            self.used_addresses[self.address] = None
            self.used_addresses.move_to_end(self.address)
            while len(self.used_addresses) > REMEMBERED_REPLY_ADDRESSES:
                self.used_addresses.popitem(last=False)
            return self.address

    def is_own(self, address: str) -> bool:
        """Whether `address` is (or names, as RabbitMQ's /queue/NAME and /amq/queue/NAME
        do) one of the gateway's reply addresses."""
        used = self.used_addresses
        if address in used:
            return True
        _, slash, name = address.rpartition("/")
        return bool(slash) and name in used

    async def _attach(self, connection: AsyncConnection) -> AsyncReceiver:
        config = self._config
        options: dict[str, Any] = {"credit": config.reply_credit, "timeout": config.attach_timeout}
        try:
            if config.reply_address is None:
                try:
                    receiver = await connection.open_receiver(
                        None, dynamic=True, session=connection.open_session(), **options
                    )
                except LinkException as error:
                    log.warning(
                        "the broker refused a dynamic reply receiver (%s): replies come to "
                        "the named queue %r instead",
                        getattr(error, "condition", None) or error,
                        self.fallback_address,
                    )
                else:
                    if receiver.address:
                        log.info("replies come to the dynamic address %r", receiver.address)
                        self.dynamic = True
                        return receiver
                    log.warning(
                        "the broker gave the dynamic reply receiver no address: replies come "
                        "to the named queue %r instead",
                        self.fallback_address,
                    )
                    await receiver.close()
            self.dynamic = False
            receiver = await connection.open_receiver(
                self.fallback_address, session=connection.open_session(), **options
            )
            log.info("replies come to the named queue %r", receiver.address)
            return receiver
        except LinkException as error:
            raise BrokerUnavailable(
                f"the broker refused the gateway's reply queue {self.fallback_address!r} "
                f"({getattr(error, 'condition', None) or error}): requests cannot get replies; "
                "set a reply address the gateway may consume from"
            ) from None
        except Timeout:
            raise BrokerUnavailable(
                f"the broker did not answer the attach of the reply receiver within "
                f"{config.attach_timeout:g} s"
            ) from None
        except ConnectionException as error:
            raise BrokerUnavailable(f"lost the connection to the broker: {error}") from None

    def expect(self) -> tuple[str, asyncio.Future[Message]]:
        """A fresh correlation id and the future its reply will complete. It is 128
        random bits: whoever sees one request's id cannot tell the next, and cannot
        forge a reply to it."""
        correlation_id = secrets.token_hex(16)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        return correlation_id, future

    def forget(self, correlation_id: str) -> None:
        self._pending.pop(correlation_id, None)

    def fail_all(self, error: GatewayAmqpError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # its request may have given up on it already
        self._pending.clear()

    async def _route(self, receiver: AsyncReceiver) -> None:
        try:
            async for received in receiver:
                # Accepted whatever it is: a reply nobody waits for is dropped, not
                # left on the broker to come back after the next reconnect.
                received.accept()
                correlation_id = received.message.correlation_id
                future = self._pending.pop(correlation_id, None)
                if future is None or future.done():
                    log.info(
                        "dropped a reply with correlation id %r: no request waits for it "
                        "(it timed out, or the reply is not for this gateway)",
                        correlation_id,
                    )
                    continue
                future.set_result(received.message)
        except ConnectionException:
            return  # the client fails the waiting requests and attaches a new receiver
        if not self._closing:
            log.warning(
                "the broker closed the reply receiver (%s); it is attached again for the "
                "next request",
                receiver.error,
            )
            self.fail_all(
                BrokerUnavailable(
                    "the broker closed the gateway's reply receiver before the reply came; "
                    "retry the request"
                )
            )

    def connection_lost(self) -> None:
        self._receiver = None
        self.address = None
        self.fail_all(BrokerUnavailable("lost the connection to the broker before the reply came"))

    def close(self) -> None:
        # Not awaited: the connection's close ends the routing task in any case.
        self._closing = True
        if self._routing is not None:
            self._routing.cancel()


# -- streams ------------------------------------------------------------------------------

#: Channels of the connection kept for sessions other than the streams' shared ones:
#: the senders' default session, the reply receiver's, and the address probes'.
PROBE_SESSIONS = 32
OTHER_SESSIONS = 2 + PROBE_SESSIONS


class _StreamSessions:
    """The sessions that carry the streams' receivers on one connection.

    `take()` gives a session with room for one more link (beginning a new one when all
    are full), `release()` gives the room back; a session left empty is ended unless it
    is the last with room. A session the broker ended is never given again. How many
    sessions there may be follows from the negotiated channel-max, less the channels
    kept for other sessions (OTHER_SESSIONS)."""

    def __init__(self, connection: AsyncConnection, config: AmqpClientConfig) -> None:
        self._connection = connection
        self._links_per_session = config.links_per_session
        self._attach_timeout = config.attach_timeout
        #: Every session begun here -> the links it carries (attached or attaching).
        self._links: dict[Session, int] = {}
        #: The sessions with room for another link, the oldest first (an ordered set).
        self._with_room: dict[Session, None] = {}
        self._probe_slots = asyncio.Semaphore(PROBE_SESSIONS)
        self._names = itertools.count(1)

    def link_name(self, kind: str) -> str:
        """A link name unique on this connection (the default one would be looked up
        among every link's name)."""
        return f"gateway-{kind}-{next(self._names)}"

    def take(self) -> Session:
        """A session for one more stream's receiver; BrokerUnavailable when every
        session the connection may have is full."""
        with_room = self._with_room
        while with_room:
            session = next(iter(with_room))
            if _usable(session):
                break
            del with_room[session]  # the broker ended it
        else:
            if len(self._links) >= self._most_sessions():
                raise BrokerUnavailable(
                    f"the gateway carries as many streams as its AMQP connection can "
                    f"({len(self._links)} sessions of {self._links_per_session}): retry later"
                )
            session = self._connection.open_session()
            self._links[session] = 0
            with_room[session] = None
        count = self._links[session] + 1
        self._links[session] = count
        if count >= self._links_per_session:
            del with_room[session]
        return session

    def release(self, session: Session) -> None:
        """One link of `session` is gone (closed, refused or given up)."""
        count = self._links.get(session)
        if count is None:
            return
        count -= 1
        usable = _usable(session)
        if count == 0 and (not usable or any(other is not session for other in self._with_room)):
            # Empty: end it, unless it is the one session left with room.
            del self._links[session]
            self._with_room.pop(session, None)
            if usable:
                session.close()
            return
        self._links[session] = count
        if usable:
            self._with_room[session] = None

    def _most_sessions(self) -> int:
        transport = self._connection.connection.transport
        if transport is None:
            raise BrokerUnavailable("lost the connection to the broker")
        channels = min(transport.channel_max, transport.remote_channel_max) + 1
        return max(1, channels - OTHER_SESSIONS)

    async def probe(self, address: str, options: list[LinkOption]) -> None:
        """Attach a receiver from `address` on a session of its own and detach it at
        once, without credit so that no message moves: if the broker ends a session
        over that address, it is this one. AddressRefused or BrokerUnavailable as for
        `AmqpClient.open_receiver`."""
        connection = self._connection
        async with self._probe_slots:
            session = connection.open_session()
            try:
                receiver = await connection.open_receiver(
                    address,
                    credit=0,
                    name=self.link_name("probe"),
                    options=options,
                    timeout=None,  # the caller bounds it
                    session=session,
                )
                await receiver.close()
            except (LinkException, ConnectionException) as error:
                raise _attach_failed(address, error, self._attach_timeout) from None
            finally:
                session.close()


def _usable(session: Session) -> bool:
    """Open here and not ended by the broker."""
    state = session.state
    return bool(state & Endpoint.LOCAL_ACTIVE) and not state & Endpoint.REMOTE_CLOSED


def _attach_failed(address: str, error: Exception, timeout: float) -> GatewayAmqpError:
    """What a stream's client is told when its receiver's attach fails with `error`."""
    if isinstance(error, LinkException):
        return AddressRefused(address, getattr(error, "condition", None))
    if isinstance(error, Timeout):
        return BrokerUnavailable(
            f"the broker did not answer the attach of a receiver from {address!r} within "
            f"{timeout:g} s"
        )
    return BrokerUnavailable(f"lost the connection to the broker: {error}")


class StreamMessage:
    """A message received on a stream, with `id`: the handle its client settles it by."""

    __slots__ = ("id", "message", "_stream")

    def __init__(self, stream: StreamReceiver, message_id: int, message: Message) -> None:
        self.id = message_id
        self.message = message
        self._stream = stream

    def accept(self) -> None:
        self._stream.settle(self.id, "accepted")

    def reject(self, condition: Condition | None = None) -> None:
        self._stream.settle(self.id, "rejected", condition=condition)

    def release(self) -> None:
        self._stream.settle(self.id, "released")

    def modify(
        self,
        delivery_failed: bool = True,
        undeliverable_here: bool = False,
        annotations: dict[Any, Any] | None = None,
    ) -> None:
        self._stream.settle(
            self.id,
            "modified",
            delivery_failed=delivery_failed,
            undeliverable_here=undeliverable_here,
            annotations=annotations,
        )


class StreamReceiver:
    """One AMQP receiver for one stream client (a WebSocket, an SSE response).

    At most `credit_window` messages are ever in flight or unsettled: credit is granted
    again only as the client settles messages. `close()` releases what the client did
    not settle back to the broker, for another consumer.
    """

    def __init__(
        self,
        client: AmqpClient,
        receiver: AsyncReceiver,
        address: str,
        on_close: Callable[[], None],
    ) -> None:
        self.address = address
        self._client = client
        self._receiver = receiver
        self._on_close = on_close
        self._unsettled: dict[int, ReceivedMessage] = {}
        self._ids = itertools.count(1)
        self.closed = False

    @property
    def credit_window(self) -> int:
        return self._receiver.credit_window

    @property
    def unsettled(self) -> int:
        """Messages handed to the client and not settled by it yet."""
        return len(self._unsettled)

    @property
    def in_flight(self) -> int:
        """Messages the broker may send or has sent that are not settled: never more
        than `credit_window`."""
        return self._receiver.unsettled + self._receiver.link.credit

    async def receive(self, timeout: float | None = None) -> StreamMessage:
        """The next message. Raises TimeoutError when none comes in `timeout` seconds,
        BrokerUnavailable when the connection is lost, AddressRefused when the broker
        closed the link, and StreamInterrupted when it ended the session under it."""
        if self.closed:
            raise GatewayAmqpError(f"the stream from {self.address!r} is closed")
        try:
            received = await self._receiver.receive(timeout)
        except Timeout:
            raise TimeoutError(f"no message from {self.address!r} in {timeout:g} s") from None
        except ConnectionException as error:
            raise BrokerUnavailable(f"lost the connection to the broker: {error}") from None
        except LinkException as error:
            condition = getattr(error, "condition", None)
            if self._receiver.link.state & Endpoint.REMOTE_CLOSED:
                raise AddressRefused(self.address, condition) from None
            raise StreamInterrupted(self.address, condition) from None
        message_id = next(self._ids)
        self._unsettled[message_id] = received
        return StreamMessage(self, message_id, received.message)

    def __aiter__(self) -> AsyncIterator[StreamMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamMessage]:
        """Messages until the broker closes the link (or `close()`); BrokerUnavailable
        when the connection is lost."""
        while not self.closed:
            try:
                yield await self.receive()
            except AddressRefused:
                return

    def settle(
        self,
        message_id: int,
        outcome: OutcomeName = "accepted",
        *,
        condition: Condition | None = None,
        delivery_failed: bool = True,
        undeliverable_here: bool = False,
        annotations: dict[Any, Any] | None = None,
    ) -> None:
        """Settle message `message_id` with an outcome; credit for one more comes back.
        `condition` goes with rejected; the others with modified."""
        if outcome not in OUTCOME_NAMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOME_NAMES)}, not {outcome!r}")
        received = self._unsettled.pop(message_id, None)
        if received is None:
            raise UnknownMessageId(message_id)
        if outcome == "accepted":
            received.accept()
        elif outcome == "rejected":
            received.reject(condition)
        elif outcome == "released":
            received.release()
        else:
            received.modify(delivery_failed, undeliverable_here, annotations)

    async def close(self) -> None:
        """Release every unsettled message back to the broker and detach."""
        if self.closed:
            return
        self.closed = True
        # No credit for the messages released now: the link is going away.
        self._receiver.credit_window = 0
        for received in self._unsettled.values():
            received.release()
        self._unsettled.clear()
        await self._receiver.close()
        self._on_close()
        self._client._streams.discard(self)


# -- the client ---------------------------------------------------------------------------


class AmqpClient:
    """The gateway's one AMQP connection, shared by all its HTTP clients (see the
    module's docstring)."""

    def __init__(self, config: AmqpClientConfig | None = None) -> None:
        config = config or AmqpClientConfig()
        if config.container_id is None:
            config = replace(config, container_id=f"amqp-gateway-{uuid.uuid4()}")
        self.config = config
        #: Why the gateway is not connected (the last connect failure or loss), or None.
        self.last_error: str | None = "not started"
        self._container: Container | None = None
        self._connection: AsyncConnection | None = None
        self._senders: _SenderCache | None = None
        self._stream_sessions: _StreamSessions | None = None
        self._replies = _ReplyRouter(config)
        self._streams: set[StreamReceiver] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    # -- state ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection to the broker is open now (for /readyz)."""
        connection = self._connection
        return not self._closing and connection is not None and connection.is_open

    @property
    def reply_address(self) -> str | None:
        """Where replies to requests come to, once the reply receiver is attached."""
        return self._replies.address

    def is_reply_address(self, address: str) -> bool:
        """Whether `address` reaches where this gateway receives replies (now, before a
        reconnect, or the named queue it falls back to): no client may use it."""
        return self._replies.is_own(address)

    @property
    def reply_address_is_dynamic(self) -> bool:
        """Whether the reply address is a dynamic node (else the named fallback queue)."""
        return self._replies.dynamic

    @property
    def pending_requests(self) -> int:
        """Requests waiting for their reply."""
        return self._replies.pending

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def cached_senders(self) -> int:
        """Senders attached (or attaching) and kept for reuse."""
        return self._senders.usable if self._senders is not None else 0

    # -- running ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (in the running loop) and return at once."""
        if self._supervisor is not None:
            return
        self._container = Container(container_id=self.config.container_id)
        self._container.start()
        self.last_error = "connecting"
        self._supervisor = asyncio.get_running_loop().create_task(self._stay_connected())

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the connection; return whether it is up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.connected:
                    await self._up.wait()
        return self.connected

    async def _stay_connected(self) -> None:
        backoff = Backoff(max_delay=self.config.max_reconnect_delay)
        url = redact(self.config.url)
        # close() cancels this task, and it also stops at `_closing`: a cancellation
        # can be lost in a race with a completing wait, and must not leave it running.
        while not self._closing:
            delay = backoff.next()
            if delay:
                await asyncio.sleep(delay)
            connection = await self._connect(url, delay)
            if connection is None:
                continue
            if self._closing:
                await connection.close(timeout=self.config.connect_timeout)
                return
            with contextlib.suppress(GatewayAmqpError):
                # Attached now so that the log says at once which reply address is used;
                # if this fails, sends work all the same and requests try again.
                await self._replies.ensure(connection)
            if not connection.is_open:
                self._connection_lost(connection, url)
                continue
            self._connection = connection
            self._senders = _SenderCache(
                connection, self.config.max_senders, self.config.attach_timeout
            )
            self._stream_sessions = _StreamSessions(connection, self.config)
            self.last_error = None
            backoff.reset()
            log.info("connected to the AMQP broker at %s", url)
            # Wake whoever waits in wait_connected(); cleared for the next connection.
            self._up.set()
            self._up.clear()
            await connection.wait_closed()
            self._connection_lost(connection, url)

    async def _connect(self, url: str, delay: float) -> AsyncConnection | None:
        config = self.config
        try:
            return await aio.connect(
                config.url,
                container=self._container,
                timeout=config.connect_timeout,
                heartbeat=config.idle_timeout,
                max_frame_size=config.max_frame_size,
                allowed_mechs=config.sasl_mechanisms,
                ssl_domain=config.ssl_domain,
            )
        except (ConnectionException, Timeout, OSError) as error:
            text = str(error)
            # Said once, not at every attempt of a long outage.
            level = logging.DEBUG if text == self.last_error else logging.WARNING
            log.log(level, "cannot connect to the AMQP broker at %s: %s; retrying", url, text)
            self.last_error = text
            return None

    def _connection_lost(self, connection: AsyncConnection, url: str) -> None:
        if self._connection is connection:
            self._connection = None
            self._senders = None
            self._stream_sessions = None
        self.last_error = str(connection.error or "connection closed")
        self._replies.connection_lost()
        if not self._closing:
            log.warning(
                "lost the connection to the AMQP broker at %s: %s; reconnecting",
                url,
                self.last_error,
            )

    def _require_connection(self) -> tuple[AsyncConnection, _SenderCache]:
        """The open connection and its senders, or BrokerUnavailable at once."""
        if self._closing:
            raise BrokerUnavailable("the gateway is shutting down")
        connection, senders = self._connection, self._senders
        if connection is None or senders is None or not connection.is_open:
            reason = (connection.error if connection is not None else None) or self.last_error
            raise BrokerUnavailable(
                f"not connected to the AMQP broker at {redact(self.config.url)} "
                f"({reason}); the gateway keeps reconnecting: retry later"
            )
        return connection, senders

    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        """Count a send or request in flight, for a graceful close to wait for."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    # -- sending ----------------------------------------------------------------------

    async def send(self, address: str, message: Message, timeout: float = 30.0) -> Outcome:
        """Send `message` to `address` and return its outcome once the broker settled it
        (accepted, rejected, released or modified). Until the message is handed to the
        link (attach, credit), a failure sent nothing: BrokerUnavailable, at once when
        not connected, and also when no credit came within `timeout` seconds. Once it
        is handed over, a lost connection or link is SendInDoubt and the timeout
        SendTimeout (a SendInDoubt). AddressRefused when the broker refuses a sender
        for `address`."""
        _, senders = self._require_connection()
        handed_over = False
        with self._operation():
            try:
                async with asyncio.timeout(timeout):
                    async with senders.use(address) as sender:
                        await sender.wait_for_credit()
                        # No await between here and the transfer: sender.send finds the
                        # credit and hands the message to the link at once.
                        handed_over = True
                        return await sender.send(message)
            except TimeoutError:
                if handed_over:
                    raise SendTimeout(address, timeout, message.id) from None
                raise _not_sent(address, f"no credit came within {timeout:g} s") from None
            except (ConnectionException, LinkException) as error:
                if handed_over:
                    raise SendInDoubt(
                        address, message.id, f"the link was lost before it was settled ({error})"
                    ) from None
                raise _not_sent(address, f"the link was lost ({error})") from None

    async def send_presettled(self, address: str, message: Message, timeout: float = 30.0) -> None:
        """Send `message` at most once: settled as it goes, no outcome. Waits at most
        `timeout` seconds for the attach and for credit (then BrokerUnavailable: nothing
        was sent)."""
        _, senders = self._require_connection()
        with self._operation():
            try:
                async with asyncio.timeout(timeout):
                    async with senders.use(address) as sender:
                        await sender.wait_for_credit()
                        sender.send_presettled(message)
            except TimeoutError:
                raise _not_sent(address, f"no link and credit came within {timeout:g} s") from None
            except (ConnectionException, LinkException) as error:
                raise _not_sent(address, f"the link was lost ({error})") from None

    async def request(self, address: str, message: Message, timeout: float = 30.0) -> Message:
        """Send `message` to `address` as a request and return the reply.

        Sets the message's reply_to (the gateway's reply address) and correlation_id (a
        fresh one: the reply is matched by it). RequestTimeout when no reply comes within
        `timeout` seconds; RequestNotAccepted when the broker does not accept the
        request; BrokerUnavailable (nothing was sent), RequestInDoubt (the request was
        sent, then the connection or link was lost before its reply) and AddressRefused
        as for `send`."""
        connection, senders = self._require_connection()
        handed_over = False
        with self._operation():
            try:
                async with asyncio.timeout(timeout):
                    message.reply_to = await self._replies.ensure(connection)
                    correlation_id, reply = self._replies.expect()
                    message.correlation_id = correlation_id
                    try:
                        async with senders.use(address) as sender:
                            await sender.wait_for_credit()
                            handed_over = True  # sender.send hands it over at once
                            outcome = await sender.send(message)
                        if not outcome.accepted:
                            raise RequestNotAccepted(address, outcome)
                        return await reply
                    finally:
                        self._replies.forget(correlation_id)
            except TimeoutError:
                raise RequestTimeout(address, timeout) from None
            except (ConnectionException, LinkException, BrokerUnavailable) as error:
                if handed_over:
                    raise RequestInDoubt(
                        address,
                        message.id,
                        f"the connection or link was lost before its reply came ({error})",
                    ) from None
                if isinstance(error, BrokerUnavailable):
                    raise
                raise _not_sent(address, f"the link was lost ({error})") from None

    # -- receiving --------------------------------------------------------------------

    async def open_receiver(
        self,
        address: str,
        *,
        selector: str | None = None,
        browse: bool = False,
        credit: int = 10,
    ) -> StreamReceiver:
        """A stream of the messages at `address`, at most `credit` in flight or unsettled
        at a time. `selector` (JMS/SQL syntax) keeps only matching messages; `browse`
        receives copies and leaves the messages where they are (distribution-mode copy).
        AddressRefused when the broker refuses the link (a bad selector, say);
        BrokerUnavailable when not connected, when the receiver is not attached within
        `attach_timeout`, or when the connection carries as many streams as it can."""
        if credit < 1:
            raise ValueError(f"credit must be at least 1, not {credit}")
        connection, _ = self._require_connection()
        sessions = self._stream_sessions
        assert sessions is not None
        options: list[LinkOption] = []
        if selector is not None:
            options.append(Selector(selector))
        if browse:
            options.append(Copy())
        timeout = self.config.attach_timeout
        try:
            # One bound for all of it: a turn for a probe, the probe, the attach.
            async with asyncio.timeout(timeout):
                if self.config.probe_addresses:
                    await sessions.probe(address, options)
                session = sessions.take()
                try:
                    receiver = await connection.open_receiver(
                        address,
                        credit=credit,
                        name=sessions.link_name("stream"),
                        options=options,
                        timeout=None,
                        session=session,
                    )
                except BaseException:
                    sessions.release(session)
                    raise
        except TimeoutError:
            raise _attach_failed(address, Timeout(), timeout) from None
        except (LinkException, ConnectionException) as error:
            raise _attach_failed(address, error, timeout) from None
        stream = StreamReceiver(self, receiver, address, lambda: sessions.release(session))
        self._streams.add(stream)
        return stream

    # -- closing ----------------------------------------------------------------------

    async def close(self, grace: float = 10.0) -> None:
        """Shut down gracefully: refuse new work, let sends and requests in flight finish
        for up to `grace` seconds, release every stream's unsettled messages, then close
        the connection."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        for stream in list(self._streams):
            await stream.close()
        self._replies.close()
        self._replies.fail_all(BrokerUnavailable("the gateway is shutting down"))
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait([self._supervisor], timeout=grace)
        connection = self._connection
        self._connection = self._senders = self._stream_sessions = None
        if connection is not None:
            await connection.close(timeout=grace)
        if self._container is not None:
            self._container.stop()


def _not_sent(address: str, what_happened: str) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"{what_happened} before the message to {address!r} could be sent: nothing was "
        "sent, retry later"
    )


# -- the embedded broker ------------------------------------------------------------------


class EmbeddedBroker:
    """amqp_core's broker, running in the current event loop (uvicorn's), listening on
    `BrokerConfig.address` for the gateway and for any other AMQP client."""

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig()
        self._broker: Broker | None = None
        self._container: Container | None = None

    async def start(self) -> None:
        """Listen and serve; EmbeddedBrokerError if the address is taken (or the store
        cannot be opened)."""
        broker = Broker(self.config)
        container = Container(broker)
        container.start()  # the broker listens in its on_start, at once
        if broker.acceptor is None:
            # Its on_start failed, which stopped the container: wait() re-raises why.
            try:
                await container.wait()
            except OSError as error:
                raise EmbeddedBrokerError(
                    f"the embedded broker cannot listen for AMQP on {self.config.address}: "
                    f"{error.strerror or error}. Another broker (or gateway) may be using "
                    "it: stop that, choose another address with --amqp-listen HOST:PORT, "
                    "or use that broker with --amqp-url"
                ) from error
            except Exception as error:
                raise EmbeddedBrokerError(f"the embedded broker cannot start: {error}") from error
            raise EmbeddedBrokerError("the embedded broker stopped as it started")
        self._broker, self._container = broker, container
        log.info("embedded AMQP broker listening on %s", self.config.address)

    @property
    def port(self) -> int:
        """The port listened on (the one chosen, when the address asked for port 0)."""
        if self._broker is None:
            raise RuntimeError("the embedded broker is not running")
        return int(self._broker.acceptor.port)

    @property
    def url(self) -> str:
        """Where to connect to this broker: amqp://HOST:PORT."""
        host = self.config.address.rpartition(":")[0] or "localhost"
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"  # listening everywhere: loopback is one of them
        return f"amqp://{host}:{self.port}"

    def stats(self) -> dict[str, AddressStats]:
        """Per-address statistics: depth, enqueued, dequeued, consumers, producers ..."""
        if self._broker is None:
            return {}
        return self._broker.stats()

    async def publish(self, address: str, message: Message) -> Outcome:
        """Hand `message` to the broker directly, without an AMQP connection: the
        gateway's POST path with the embedded broker. Returns the broker's outcome:
        accepted once it owns the message (stored first, if durable), released when the
        queue is full, rejected with a condition."""
        broker = self._broker
        if broker is None:
            raise BrokerUnavailable("the embedded broker is not running")
        outcome: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def settle(state: int, condition: Condition | None) -> None:
            if not outcome.done():
                outcome.set_result(Outcome(state, condition))

        broker.publish(address, message, settle)
        return await outcome

    async def stop(self) -> None:
        """Close every connection and the listener, and the store."""
        broker, container = self._broker, self._container
        self._broker = self._container = None
        if container is not None:
            container.stop()
            with contextlib.suppress(Exception):
                await container.wait()
        if broker is not None:
            broker.close()
