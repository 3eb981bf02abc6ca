"""The protocol engine's driver: bytes in, events out, bytes to write, time passed in.

A `Transport` is bound to one `Connection`. `push(data)` parses what the peer sent and
updates the endpoints' remote state (putting events on the connection's collector);
`output()` turns pending local changes into frames, a bounded amount at a time
(`output_limit`; `more_output` says when there is more); `tick(now)` runs the
idle-timeout clock. Nothing here touches a socket, a thread or a clock, so two
transports can be wired together in memory and every state reached in a unit test.

A protocol violation by the peer closes the connection with the matching AMQP error
condition (spec 2.8.15-2.8.18) and never raises out of `push`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import OrderedDict
from typing import Any

from .. import spec
from ..codec import DecodeError, encode
from ..framing import (
    AMQP_HEADER,
    FRAME_AMQP,
    FRAME_SASL,
    MIN_MAX_FRAME_SIZE,
    SASL_HEADER,
    Frame,
    FrameDecodeError,
    FrameReader,
    FramingError,
    encode_empty_frame,
    encode_frame,
)
from ..types import Described, uint, ulong
from .endpoints import (
    Condition,
    Connection,
    Delivery,
    Endpoint,
    Link,
    NumberPool,
    Receiver,
    Sender,
    Session,
)
from .events import Event
from .sasl import SASL, SaslFailure
from .terminus import SND_SETTLED

__all__ = ["Transport", "TransportError"]

_UINT_MASK = 0xFFFFFFFF
#: An upper bound on a transfer frame's bytes besides payload and tag: frame header 8,
#: descriptor 3, list header 9, and eleven fields of at most 9 bytes each.
_MAX_TRANSFER_OVERHEAD = 8 + 3 + 9 + 11 * 9
_TRANSFER = ulong(0x14)


def _uint(value: int | None) -> uint:
    # Values the engine made itself are in range: skip the wrapper's check.
    assert value is not None
    return int.__new__(uint, value)


_LOCAL_UNINIT = Endpoint.LOCAL_UNINIT
_LOCAL_CLOSED = Endpoint.LOCAL_CLOSED
_REMOTE_ACTIVE = Endpoint.REMOTE_ACTIVE
_REMOTE_CLOSED = Endpoint.REMOTE_CLOSED
_REMOTE_UNINIT = Endpoint.REMOTE_UNINIT

# Error conditions (spec 2.8.15-2.8.18), from the spec tables.
_CONDITIONS = spec.ERROR_CONDITIONS
DECODE_ERROR = _CONDITIONS["DECODE_ERROR"]
FRAMING_ERROR = _CONDITIONS["FRAMING_ERROR"]
NOT_ALLOWED = _CONDITIONS["NOT_ALLOWED"]
INVALID_FIELD = _CONDITIONS["INVALID_FIELD"]
UNAUTHORIZED = _CONDITIONS["UNAUTHORIZED_ACCESS"]
RESOURCE_LIMIT = _CONDITIONS["RESOURCE_LIMIT_EXCEEDED"]
UNATTACHED_HANDLE = _CONDITIONS["UNATTACHED_HANDLE"]
HANDLE_IN_USE = _CONDITIONS["HANDLE_IN_USE"]
TRANSFER_LIMIT = _CONDITIONS["TRANSFER_LIMIT_EXCEEDED"]
MESSAGE_SIZE = _CONDITIONS["MESSAGE_SIZE_EXCEEDED"]
INTERNAL_ERROR = _CONDITIONS["INTERNAL_ERROR"]

log = logging.getLogger("amqp_core.engine")


class TransportError(Exception):
    """Raised inside the engine for a peer's protocol violation; `push` turns it into
    a close frame carrying `condition`."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(f"{condition}: {description}")
        self.condition = condition
        self.description = description


def _trace_enabled() -> bool:
    return os.environ.get("AMQP_TRACE", "") not in ("", "0")


class Transport:
    """The AMQP protocol engine for one connection (Proton's `Transport`)."""

    CLIENT = 1
    SERVER = 2

    #: Frames we accept, and the largest we send: big enough that large messages cross
    #: in few frames, small enough that one connection cannot make us buffer much (a
    #: frame is buffered whole), and that a large message goes out in slices.
    DEFAULT_MAX_FRAME_SIZE = 256 * 1024
    DEFAULT_CHANNEL_MAX = 255
    DEFAULT_HANDLE_MAX = 2**16 - 1
    #: Transfers one `output()` builds before it stops (give or take a frame): a 50 MB
    #: message leaves a slice at a time as the socket drains, each slice costing the
    #: caller about a millisecond, never the whole message's framing at once.
    DEFAULT_OUTPUT_LIMIT = 1024 * 1024

    def __init__(self, mode: int = CLIENT) -> None:
        self._mode = mode
        #: Whether a transfer beyond the credit we granted closes the connection with
        #: amqp:link:transfer-limit-exceeded. A server enforces it: it is what holds a
        #: flooding client back. A client tolerates it, as Proton does, because RabbitMQ
        #: 3.10 overruns credit topped up while its messages are on the way
        #: (rabbitmq-server#2597), and a client's receiver asked for those messages.
        self.enforce_credit = mode == self.SERVER
        self.max_frame_size = self.DEFAULT_MAX_FRAME_SIZE
        self.channel_max = self.DEFAULT_CHANNEL_MAX
        self.handle_max = self.DEFAULT_HANDLE_MAX
        self.output_limit = self.DEFAULT_OUTPUT_LIMIT
        #: Seconds without input after which the peer is dead (0: never). We announce it
        #: to the peer, who then sends something at least every half of it.
        self.idle_timeout = 0.0
        self.remote_max_frame_size = 2**32 - 1
        self.remote_channel_max = 2**16 - 1
        self.remote_idle_timeout = 0.0
        self.condition: Condition | None = None
        self.connection: Connection | None = None
        self.trace_frames = _trace_enabled()
        self._sasl: SASL | None = None
        self._sasl_done = False
        self._require_sasl = False
        self._reader = FrameReader(self.max_frame_size)
        self._out = bytearray()
        self._more_output = False
        # Links cut short by output_limit after writing: moved behind the others; and
        # the sessions of links cut short, whose end waits for their transfers.
        self._had_turn: list[tuple[Session, Link]] = []
        self._cut_short: dict[Session, None] = {}
        self._header_sent = False
        self._amqp_header_sent = False
        self._header_received = False
        self._expect_sasl = False
        self._open_sent = False
        self._open_received = False
        self._close_sent = False
        self._close_received = False
        self._tail_closed = False
        self._head_closed = False
        self._closed_event_put = False
        self._error = False
        self._local_channels: dict[int, Session] = {}
        self._channel_numbers = NumberPool()
        # Sessions that wait for a channel under the channel-max, oldest first; one is
        # woken for each channel given back, so none is looked at in every output pass.
        self._waiting_for_channel: OrderedDict[Session, None] = OrderedDict()
        self._remote_channels: dict[int, Session] = {}
        # Idle-timeout bookkeeping: the clock only moves in tick().
        self._input_since_tick = False
        self._bytes_output = 0
        self._last_bytes_output = 0
        self._last_input = 0.0
        self._last_output = 0.0
        self._label = f"{id(self) & 0xFFFFFF:06x}"

    # -- set up -----------------------------------------------------------------------------

    @property
    def mode(self) -> int:
        return self._mode

    def sasl(self) -> SASL:
        """The SASL layer; asking for it turns it on (as in Proton)."""
        if self._sasl is None:
            self._sasl = SASL()
        return self._sasl

    def require_auth(self, required: bool) -> None:
        """Server side: refuse clients that skip SASL."""
        if required:
            self.sasl()
        self._require_sasl = required

    @property
    def authenticated(self) -> bool:
        return self._sasl is not None and self._sasl.outcome == SASL.OK

    @property
    def user(self) -> str | None:
        return self._sasl.authenticated_user if self._sasl is not None else None

    def bind(self, connection: Connection) -> None:
        self.connection = connection
        connection.transport = self
        self._reader.max_frame_size = self.max_frame_size
        sasl = self._sasl
        if sasl is not None and self._mode == Transport.CLIENT:
            sasl.user = connection.user if sasl.user is None else sasl.user
            sasl.password = connection.password if sasl.password is None else sasl.password
            sasl.hostname = connection.hostname
        connection._emit(connection, Event.CONNECTION_BOUND)

    def unbind(self) -> None:
        if self.connection is not None:
            self.connection._emit(self.connection, Event.CONNECTION_UNBOUND)
            self.connection.transport = None
            self.connection = None

    def _put(self, event_type: Any) -> None:
        if self.connection is not None:
            self.connection._emit(self, event_type)

    @property
    def transport(self) -> Transport:
        return self

    # -- input ------------------------------------------------------------------------------

    def push(self, data: bytes) -> None:
        """Take bytes from the peer and act on every complete frame among them."""
        if self._tail_closed or not data:
            return
        self._input_since_tick = True
        self._reader.feed(data)
        try:
            self._process_input()
        except TransportError as error:
            self._fail(error.condition, error.description)
        except FrameDecodeError as error:
            self._fail(DECODE_ERROR, str(error))
        except FramingError as error:
            self._fail(FRAMING_ERROR, str(error))
        except DecodeError as error:
            self._fail(DECODE_ERROR, str(error))
        except Exception as error:  # a bug of ours: fail this connection, not the process
            log.exception("internal error on connection %s", self._label)
            self._fail(INTERNAL_ERROR, f"{type(error).__name__}: {error}")

    def close_tail(self) -> None:
        """The peer will send nothing more (end of stream)."""
        if self._tail_closed:
            return
        if self._mode == Transport.SERVER and not self._header_received and not self._sasl_done:
            # A client that left before saying anything (a port probe, a health check)
            # is no error, as in Proton: close quietly.
            self._close_tail()
            self._close_head()
            return
        if not self._close_received and not self._error:
            self._fail(FRAMING_ERROR, "connection aborted", write=False)
        self._close_tail()

    def _close_tail(self) -> None:
        if not self._tail_closed:
            self._tail_closed = True
            self._put(Event.TRANSPORT_TAIL_CLOSED)
            self._check_closed()

    def _process_input(self) -> None:
        reader = self._reader
        while not self._tail_closed:
            if not self._header_received:
                header = reader.read_header()
                if header is None:
                    return
                self._on_header(header)
                continue
            if self._expect_sasl:
                frames = reader.read_frames(1)
                if not frames:
                    return
                self._on_sasl_frame(frames[0])
                continue
            frames = reader.read_frames()
            if not frames:
                return
            for frame in frames:
                if self._tail_closed:
                    return
                self._on_frame(frame)

    def _on_header(self, header: bytes) -> None:
        self._trace_in(0, f"header {header!r}")
        self._header_received = True
        sasl_wanted = self._sasl is not None and not self._sasl_done
        if header == SASL_HEADER and (self._mode == Transport.SERVER or sasl_wanted):
            if self._mode == Transport.SERVER:
                self.sasl()
                self._write_header(SASL_HEADER)
                self._write_sasl(self.sasl().server_mechanisms())
            self._expect_sasl = True
            return
        if header == AMQP_HEADER and not (sasl_wanted and self._mode == Transport.CLIENT):
            if self._mode == Transport.SERVER:
                if self._require_sasl and not self._sasl_done:
                    self._write_header(SASL_HEADER)
                    raise TransportError(UNAUTHORIZED, "SASL authentication is required")
                self._write_header(AMQP_HEADER)
            return
        # Not a protocol we speak: answer with the header we do speak, then close.
        if self._mode == Transport.SERVER:
            self._write_header(SASL_HEADER if sasl_wanted else AMQP_HEADER)
        self._fail(FRAMING_ERROR, f"unsupported protocol header {header!r}", write=False)
        self._close_tail()

    def _on_sasl_frame(self, frame: Frame) -> None:
        if frame.type != FRAME_SASL:
            raise TransportError(FRAMING_ERROR, "expected a SASL frame")
        body = spec.from_described(frame.performative)
        self._trace_in(frame.channel, body)
        sasl = self.sasl()
        if self._mode == Transport.CLIENT:
            if isinstance(body, spec.SaslMechanisms):
                try:
                    self._write_sasl(sasl.client_init(body.sasl_server_mechanisms))
                except SaslFailure as failure:
                    raise TransportError(UNAUTHORIZED, str(failure)) from None
            elif isinstance(body, spec.SaslOutcome):
                self._expect_sasl = False
                if not sasl.client_outcome(body):
                    raise TransportError(UNAUTHORIZED, f"Authentication failed [mech={sasl.mech}]")
                self._sasl_done = True
                self._header_received = False
                self._write_header(AMQP_HEADER)
            else:
                raise TransportError(UNAUTHORIZED, f"unsupported SASL frame {body!r}")
        else:
            if not isinstance(body, spec.SaslInit):
                raise TransportError(UNAUTHORIZED, f"expected sasl-init, got {body!r}")
            outcome = sasl.server_outcome(body)
            self._write_sasl(outcome)
            self._expect_sasl = False
            if outcome.code != SASL.OK:
                self.condition = Condition(
                    UNAUTHORIZED, f"Authentication failed [mech={sasl.mech}]"
                )
                self._error = True
                self._put(Event.TRANSPORT_ERROR)
                self._close_tail()
                self._close_head()
                return
            self._sasl_done = True
            self._header_received = False

    def _on_frame(self, frame: Frame) -> None:
        performative = frame.performative
        if performative is None:
            self._trace_in(frame.channel, "(empty frame)")
            return  # an empty frame: a heartbeat
        if frame.type != FRAME_AMQP:
            raise TransportError(FRAMING_ERROR, f"unexpected frame type {frame.type}")
        body = spec.from_described(performative)
        if self.trace_frames:
            self._trace_in(frame.channel, body, frame.payload)
        handler = _HANDLERS.get(type(body))
        if handler is None:
            raise TransportError(DECODE_ERROR, f"not a performative: {body!r}")
        if not self._open_received and handler is not Transport._on_open:
            raise TransportError(NOT_ALLOWED, f"{type(body).__name__.lower()} before open")
        handler(self, frame.channel, body, frame.payload)

    # -- performatives in ---------------------------------------------------------------

    def _on_open(self, channel: int, body: Any, payload: bytes) -> None:
        if self._open_received:
            raise TransportError(NOT_ALLOWED, "a second open")
        self._open_received = True
        connection = self._need_connection()
        connection.remote_container = body.container_id
        connection.remote_hostname = body.hostname
        connection.remote_properties = body.properties
        connection.remote_offered_capabilities = body.offered_capabilities
        connection.remote_desired_capabilities = body.desired_capabilities
        if body.max_frame_size is not None:
            if body.max_frame_size < MIN_MAX_FRAME_SIZE:
                raise TransportError(
                    INVALID_FIELD, f"max-frame-size {body.max_frame_size} is below 512"
                )
            self.remote_max_frame_size = body.max_frame_size
        if body.channel_max is not None:
            self.remote_channel_max = body.channel_max
        if body.idle_time_out:
            self.remote_idle_timeout = body.idle_time_out / 1000
        connection._remote = _REMOTE_ACTIVE
        connection._emit(connection, Event.CONNECTION_REMOTE_OPEN)
        connection._wake()

    def _on_begin(self, channel: int, body: Any, payload: bytes) -> None:
        connection = self._need_connection()
        if channel in self._remote_channels:
            raise TransportError(NOT_ALLOWED, f"channel {channel} is already in use")
        if channel > self.channel_max:
            raise TransportError(FRAMING_ERROR, f"channel {channel} exceeds channel-max")
        if body.remote_channel is not None:
            session = self._local_channels.get(body.remote_channel)
            if session is None or session.remote_channel is not None:
                raise TransportError(
                    NOT_ALLOWED, f"begin answers unknown channel {body.remote_channel}"
                )
        else:
            session = connection.session()
        session.remote_channel = channel
        self._remote_channels[channel] = session
        session.next_incoming_id = body.next_outgoing_id
        session.remote_incoming_window = body.incoming_window
        session.remote_outgoing_window = body.outgoing_window
        session._remote_handle_max = body.handle_max if body.handle_max is not None else 2**32 - 1
        session._remote = _REMOTE_ACTIVE
        connection._emit(session, Event.SESSION_REMOTE_OPEN)
        connection._mark(session)

    def _on_attach(self, channel: int, body: Any, payload: bytes) -> None:
        session = self._session_on(channel)
        handles = session._remote_handles
        if body.handle in handles:
            raise TransportError(HANDLE_IN_USE, f"handle {body.handle} is already attached")
        if body.handle > self.handle_max:
            raise TransportError(FRAMING_ERROR, f"handle {body.handle} exceeds handle-max")
        remote_is_receiver = bool(body.role)
        link = session._awaiting_attach.pop((body.name, remote_is_receiver), None)
        if link is None or link._remote != _REMOTE_UNINIT:
            link = session.sender(body.name) if remote_is_receiver else session.receiver(body.name)
        link.remote_handle = body.handle
        handles[body.handle] = link
        link.remote_source.from_spec(body.source)
        link.remote_target.from_spec(body.target)
        link.remote_snd_settle_mode = int(body.snd_settle_mode)
        link.remote_rcv_settle_mode = int(body.rcv_settle_mode)
        link.remote_max_message_size = body.max_message_size or 0
        link.remote_properties = body.properties
        if not remote_is_receiver:
            link.delivery_count = body.initial_delivery_count or 0
        link._remote = _REMOTE_ACTIVE
        link._put(Event.LINK_REMOTE_OPEN)
        session._mark(link)

    def _on_flow(self, channel: int, body: Any, payload: bytes) -> None:
        session = self._session_on(channel)
        was_blocked = session.remote_incoming_window <= 0
        base = body.next_incoming_id if body.next_incoming_id is not None else 0
        session.remote_incoming_window = (
            base + body.incoming_window - session.next_outgoing_id
        ) & _UINT_MASK
        session.remote_outgoing_window = body.outgoing_window
        if was_blocked and session.remote_incoming_window > 0:
            # The window opened again: the senders it held back may go on.
            for blocked in session._blocked_senders:
                session._mark(blocked)
            session._blocked_senders.clear()
        if body.handle is None:
            if body.echo:
                session._flow_needed = True
                session.connection._mark(session)
            return
        link = self._link_on(session, body.handle)
        if isinstance(link, Sender):
            their_count = body.delivery_count if body.delivery_count is not None else 0
            credit = (their_count + (body.link_credit or 0) - link.delivery_count) & _UINT_MASK
            link._link_credit = credit if credit < 2**31 else 0
            link.drain_mode = bool(body.drain)
            session._mark(link)
        else:
            assert isinstance(link, Receiver)
            if body.delivery_count is not None:
                advanced = (body.delivery_count - link.delivery_count) & _UINT_MASK
                if advanced < 2**31:
                    link._link_credit -= advanced
                    link._drained += advanced
                    link.delivery_count = body.delivery_count
            link.available = body.available or 0
            if link.drain_mode and link._link_credit <= 0:
                link._link_credit = 0
                link.drain_mode = False
        if body.echo:
            link._flow_needed = True
            session._mark(link)
        link._put(Event.LINK_FLOW)

    def _on_transfer(self, channel: int, body: Any, payload: bytes) -> None:
        session = self._session_on(channel)
        link = self._link_on(session, body.handle)
        if not isinstance(link, Receiver):
            raise TransportError(NOT_ALLOWED, f"transfer on handle {body.handle}, which receives")
        if session.next_incoming_id is not None:
            session.next_incoming_id = (session.next_incoming_id + 1) & _UINT_MASK
        delivery = link._incoming_partial
        if delivery is None:
            if body.delivery_id is None:
                raise TransportError(
                    INVALID_FIELD, "the first transfer of a delivery lacks delivery-id"
                )
            if link._link_credit <= 0 and self.enforce_credit:
                raise TransportError(
                    TRANSFER_LIMIT, f"transfer on link {link.name!r} without credit"
                )
            delivery = Delivery(link, body.delivery_tag or b"")
            delivery.id = body.delivery_id
            delivery.message_format = body.message_format or 0
            link._link_credit = max(0, link._link_credit - 1)
            link.delivery_count = (link.delivery_count + 1) & _UINT_MASK
            link._queue(delivery)
            if link.current is None:
                link.current = delivery
            if body.settled:
                delivery.settled = True
            else:
                session._incoming_unsettled[delivery.id] = delivery
            link.unsettled_count += 1  # until settled here, as in Proton
        elif body.settled:
            delivery.settled = True
        if body.aborted:
            delivery.aborted = True
            delivery._discard()
            delivery.partial = False
            link._incoming_partial = None
        else:
            if payload:
                delivery._received += len(payload)
                limit = link.max_message_size
                if limit and delivery._received > limit:
                    raise TransportError(MESSAGE_SIZE, f"message exceeds {limit} bytes")
                delivery._receive(payload)
            delivery.partial = bool(body.more)
            link._incoming_partial = delivery if body.more else None
        if body.state is not None:
            delivery.remote_state = delivery.remote.update_from_spec(body.state)
        delivery.updated = True
        link._put_delivery(delivery)

    def _on_disposition(self, channel: int, body: Any, payload: bytes) -> None:
        session = self._session_on(channel)
        unsettled = session._outgoing_unsettled if body.role else session._incoming_unsettled
        first = body.first
        last = body.last if body.last is not None else first
        span = (last - first) & _UINT_MASK
        if span < len(unsettled):
            ids = [(first + offset) & _UINT_MASK for offset in range(span + 1)]
        else:
            ids = [key for key in unsettled if ((key - first) & _UINT_MASK) <= span]
        state = body.state
        for delivery_id in ids:
            delivery = unsettled.get(delivery_id)
            if delivery is None:
                continue
            if state is not None:
                delivery.remote_state = delivery.remote.update_from_spec(state)
            if body.settled:
                delivery.settled = True
                del unsettled[delivery_id]
            delivery.updated = True
            delivery.link._put_delivery(delivery)

    def _on_detach(self, channel: int, body: Any, payload: bytes) -> None:
        session = self._session_on(channel)
        link = self._link_on(session, body.handle)
        del session._remote_handles[body.handle]
        link.remote_condition = Condition.from_spec(body.error)
        link._remote = _REMOTE_CLOSED
        link._put(Event.LINK_REMOTE_CLOSE if body.closed else Event.LINK_REMOTE_DETACH)
        if link._detach_sent:
            session._forget_link(link)  # ours went first: detached at both ends now
        else:
            session._mark(link)

    def _on_end(self, channel: int, body: Any, payload: bytes) -> None:
        session = self._session_on(channel)
        del self._remote_channels[channel]
        session.remote_condition = Condition.from_spec(body.error)
        session._remote = _REMOTE_CLOSED
        session._put(Event.SESSION_REMOTE_CLOSE)
        if session._end_sent:
            session.connection._forget_session(session)  # ours went first: ended at both ends
        else:
            session.connection._mark(session)

    def _on_close(self, channel: int, body: Any, payload: bytes) -> None:
        connection = self._need_connection()
        self._close_received = True
        connection.remote_condition = Condition.from_spec(body.error)
        connection._remote = _REMOTE_CLOSED
        connection._emit(connection, Event.CONNECTION_REMOTE_CLOSE)
        connection._wake()
        self._close_tail()

    def _need_connection(self) -> Connection:
        if self.connection is None:
            raise TransportError(NOT_ALLOWED, "no connection is bound")
        return self.connection

    def _session_on(self, channel: int) -> Session:
        session = self._remote_channels.get(channel)
        if session is None:
            raise TransportError(NOT_ALLOWED, f"frame on channel {channel}, which has no session")
        return session

    def _link_on(self, session: Session, handle: int | None) -> Link:
        link = session._remote_handles.get(handle) if handle is not None else None
        if link is None:
            raise TransportError(UNATTACHED_HANDLE, f"handle {handle} is not attached")
        return link

    # -- output -----------------------------------------------------------------------------

    def pending(self) -> int:
        """Bytes ready to write (building frames for any pending work first)."""
        self._generate()
        return len(self._out)

    def peek(self, size: int) -> bytes:
        self._generate()
        return bytes(self._out[:size])

    def pop(self, size: int) -> None:
        del self._out[:size]
        self._after_output(size)

    @property
    def more_output(self) -> bool:
        """Whether the last output stopped at `output_limit` with more frames to build:
        call `output()` again (after letting other work run) to have them."""
        return self._more_output and not (self._head_closed or self._close_sent)

    def output(self) -> bytes:
        """Take the bytes ready to write: every pending frame, except that transfers
        stop once about `output_limit` bytes are built (`more_output` then says so)."""
        self._generate()
        if not self._out:
            self._after_output(0)
            return b""
        data = bytes(self._out)
        self._out.clear()
        self._after_output(len(data))
        return data

    def close_head(self) -> None:
        """We will write nothing more."""
        self._close_head()

    def _after_output(self, wrote: int) -> None:
        self._bytes_output += wrote
        if self._close_sent and not self._out:
            self._close_head()

    def _close_head(self) -> None:
        if not self._head_closed:
            self._head_closed = True
            self._put(Event.TRANSPORT_HEAD_CLOSED)
            self._check_closed()

    def _check_closed(self) -> None:
        if self._head_closed and self._tail_closed and not self._closed_event_put:
            self._closed_event_put = True
            self._put(Event.TRANSPORT_CLOSED)

    @property
    def closed(self) -> bool:
        return self._head_closed and self._tail_closed

    def _write_header(self, header: bytes) -> None:
        self._out += header
        self._header_sent = True
        if header == AMQP_HEADER:
            self._amqp_header_sent = True
        self._trace_out(0, f"header {header!r}")

    def _write_sasl(self, body: Any) -> None:
        self._trace_out(0, body)
        encode_frame(self._out, FRAME_SASL, 0, body)

    def _write(self, channel: int, body: Any, payload: bytes | memoryview = b"") -> None:
        if self.trace_frames:
            self._trace_out(channel, spec.from_described(body), payload)
        encode_frame(self._out, FRAME_AMQP, channel, body, payload)

    def _generate(self) -> None:
        if self._head_closed or self._close_sent:
            return
        if not self._header_sent:
            if self._mode == Transport.SERVER:
                return  # a server answers the client's header
            self._write_header(SASL_HEADER if self._sasl is not None else AMQP_HEADER)
            self._expect_sasl = self._sasl is not None
        if not self._amqp_header_sent:
            return  # SASL comes first
        connection = self.connection
        if connection is None or not (connection._needs_output or self._more_output):
            return
        connection._needs_output = False
        self._more_output = False
        if not self._open_sent:
            if connection._local == _LOCAL_UNINIT:
                return
            self._write_open(connection)
        dirty = connection._dirty
        if dirty:
            connection._dirty = {}
            for session in dirty:
                self._process_session(session)
            for session, link in self._had_turn:  # behind the others: moved to the end
                session._dirty_links.pop(link, None)
                session._dirty_links[link] = None
                connection._dirty.pop(session, None)
                connection._dirty[session] = None
            self._had_turn.clear()
            self._cut_short.clear()
        if connection._local == _LOCAL_CLOSED and not self._close_sent and not self._more_output:
            error = connection.condition.to_spec() if connection.condition else None
            self._write(0, spec.Close(error=error))
            self._close_sent = True

    def _write_open(self, connection: Connection) -> None:
        self._write(
            0,
            spec.Open(
                container_id=connection.container or "",
                hostname=connection.hostname,
                max_frame_size=uint(self.max_frame_size),
                channel_max=self.channel_max,
                idle_time_out=int(self.idle_timeout * 1000) or None,
                offered_capabilities=connection.offered_capabilities,
                desired_capabilities=connection.desired_capabilities,
                properties=connection.properties,
            ),
        )
        self._open_sent = True

    def _process_session(self, session: Session) -> None:
        """Write the session's pending frames. What waits for the peer (an answer, a
        channel, a handle, credit, window) is woken by the frame that brings it."""
        if not session._begin_sent:
            if session._local == _LOCAL_UNINIT:
                return
            if session._local == _LOCAL_CLOSED and session._remote == _REMOTE_UNINIT:
                # Ended before it was begun (it waited for a channel): the peer never
                # heard of it, so there is nothing to tell it, and nothing to keep.
                self._waiting_for_channel.pop(session, None)
                session.connection._forget_session(session)
                return
            limit = min(self.channel_max, self.remote_channel_max)
            new_channel = self._channel_numbers.take(limit)
            if new_channel is None:
                self._waiting_for_channel[session] = None
                return
            self._waiting_for_channel.pop(session, None)
            session.channel = new_channel
            self._local_channels[new_channel] = session
            self._write(
                new_channel,
                spec.Begin(
                    remote_channel=session.remote_channel,
                    next_outgoing_id=session.next_outgoing_id,
                    incoming_window=Session.INCOMING_WINDOW,
                    outgoing_window=Session.OUTGOING_WINDOW,
                    handle_max=self.handle_max,
                ),
            )
            session._begin_sent = True
        if session._end_sent:
            return
        channel = session.channel
        assert channel is not None
        # Settlements first: a link closing right after settling must not detach
        # before its dispositions (the peer would put those messages back).
        if session._pending_dispositions:
            self._write_dispositions(session, channel)
        links = session._dirty_links
        if links:
            session._dirty_links = {}
            for link in links:
                self._process_link(session, channel, link)
        if session._flow_needed:
            session._flow_needed = False
            self._write(channel, self._session_flow(session))
        if session._local == _LOCAL_CLOSED:
            if session._remote == _REMOTE_UNINIT:
                # The peer has not answered our begin yet, and its answer names our
                # channel: end once it came (_on_begin marks us), so that no other
                # session takes the channel first and gets the answer.
                return
            if session in self._cut_short:
                return  # its links' transfers left for the next output go first
            error = session.condition.to_spec() if session.condition else None
            self._write(channel, spec.End(error=error))
            session._end_sent = True
            # Nothing the peer sends from now on names our channel: it is free.
            del self._local_channels[channel]
            self._channel_numbers.give_back(channel)
            if session._remote == _REMOTE_CLOSED:
                session.connection._forget_session(session)
            if self._waiting_for_channel:
                session.connection._mark(next(iter(self._waiting_for_channel)))

    def _session_flow(self, session: Session, **link_fields: Any) -> Any:
        return spec.Flow(
            next_incoming_id=session.next_incoming_id,
            incoming_window=Session.INCOMING_WINDOW,
            next_outgoing_id=session.next_outgoing_id,
            outgoing_window=Session.OUTGOING_WINDOW,
            **link_fields,
        )

    def _process_link(self, session: Session, channel: int, link: Link) -> None:
        if not link._attach_sent:
            if link._local == _LOCAL_UNINIT:
                return
            if not self._write_attach(session, channel, link):
                return
        if link._detach_sent:
            return
        if isinstance(link, Sender) and not self._transmit(session, channel, link):
            return
        if link._flow_needed:
            link._flow_needed = False
            self._write_link_flow(session, channel, link)
        if link._local == _LOCAL_CLOSED:
            error = link.condition.to_spec() if link.condition else None
            self._write(channel, spec.Detach(handle=link.handle, closed=link._closing, error=error))
            link._detach_sent = True
            # The peer's frames name its own handle, never ours: ours is free at once.
            assert link.handle is not None
            del session._local_handles[link.handle]
            session._handle_numbers.give_back(link.handle)
            if link._remote == _REMOTE_CLOSED:
                session._forget_link(link)
            if session._waiting_for_handle:
                session._mark(next(iter(session._waiting_for_handle)))

    def _write_attach(self, session: Session, channel: int, link: Link) -> bool:
        """Attach `link` under a free handle; False if the peer's handle-max leaves
        none (the link then waits for one to be given back)."""
        handle = session._handle_numbers.take(session._remote_handle_max)
        if handle is None:
            session._waiting_for_handle[link] = None
            return False
        session._waiting_for_handle.pop(link, None)
        link.handle = handle
        session._local_handles[handle] = link
        if link._remote == _REMOTE_UNINIT:
            # Again after a reconnect: the new peer's attach must find this link.
            session._awaiting_attach.setdefault((link.name, link.is_sender), link)
        is_sender = link.is_sender
        self._write(
            channel,
            spec.Attach(
                name=link.name,
                handle=handle,
                role=not is_sender,
                snd_settle_mode=link.snd_settle_mode,
                rcv_settle_mode=link.rcv_settle_mode,
                source=link.source.to_spec(),
                target=link.target.to_spec(),
                initial_delivery_count=link.delivery_count if is_sender else None,
                max_message_size=link.max_message_size or None,
                offered_capabilities=link.offered_capabilities,
                desired_capabilities=link.desired_capabilities,
                properties=link.properties,
            ),
        )
        link._attach_sent = True
        return True

    def _write_link_flow(self, session: Session, channel: int, link: Link) -> None:
        if isinstance(link, Receiver):
            credit = link._link_credit if link._link_credit > 0 else 0
            available = None
        else:
            credit = link._link_credit if link._link_credit > 0 else 0
            available = link.available
        self._write(
            channel,
            self._session_flow(
                session,
                handle=link.handle,
                delivery_count=link.delivery_count,
                link_credit=credit,
                available=available,
                drain=link.drain_mode,
            ),
        )

    def _transmit(self, session: Session, channel: int, link: Sender) -> bool:
        """Frame as many queued deliveries as credit, the session window and this
        output's bound allow. False if the bound cut it short: the link is marked to go
        on at the next output, and its other frames (flow, detach) wait for that."""
        deliveries = link._deliveries
        if link._remote == _REMOTE_UNINIT:
            return True  # the peer's attach marks the link again
        started_at = len(self._out)
        while deliveries:
            if len(self._out) >= self.output_limit:
                self._defer(session, link, wrote=len(self._out) > started_at)
                return False
            delivery = deliveries[0]
            if delivery.aborted:
                if delivery._sent_first:
                    if session.remote_incoming_window <= 0:
                        break
                    self._write(
                        channel,
                        spec.Transfer(handle=link.handle, more=False, aborted=True, settled=True),
                    )
                    session.next_outgoing_id = (session.next_outgoing_id + 1) & _UINT_MASK
                    session.remote_incoming_window -= 1
                    session._outgoing_unsettled.pop(delivery.id, None)  # type: ignore[arg-type]
                deliveries.popleft()
                continue
            if not delivery._complete and not delivery._size:
                break  # streaming: everything written so far is out
            if not delivery._sent_first and link._link_credit <= 0:
                break
            if session.remote_incoming_window <= 0:
                break
            if not self._transmit_delivery(session, channel, link, delivery):
                if len(self._out) >= self.output_limit and delivery._size:
                    self._defer(session, link, wrote=True)
                    return False
                break
            deliveries.popleft()
        if deliveries and session.remote_incoming_window <= 0:
            session._blocked_senders[link] = None
        return True

    def _defer(self, session: Session, link: Link, wrote: bool) -> None:
        """Leave the rest of `link`'s transfers to the next output (see `output_limit`).
        A link that wrote in this output goes behind those that did not get their turn,
        so that a large message takes turns with the other links' messages. Marked
        without waking the connection's work listener: the driver learns of it from
        `more_output` and calls again when it chooses, not at once."""
        session._dirty_links[link] = None
        session.connection._dirty[session] = None
        self._cut_short[session] = None
        if wrote:
            self._had_turn.append((session, link))
        self._more_output = True

    def _transmit_delivery(
        self, session: Session, channel: int, link: Sender, delivery: Delivery
    ) -> bool:
        """Send frames of one delivery; return True once all of it is out. Stops early
        when the session window closes, when a streamed delivery has sent all it was
        given so far, and when this output holds `output_limit` bytes."""
        settled = delivery.local_settled or link.snd_settle_mode == SND_SETTLED
        if not delivery._sent_first:
            delivery._sent_first = True
            delivery.id = session._next_delivery_id
            session._next_delivery_id = (session._next_delivery_id + 1) & _UINT_MASK
            link._link_credit -= 1
            if delivery._complete:
                link.queued -= 1
            link.delivery_count = (link.delivery_count + 1) & _UINT_MASK
            if settled:
                delivery.local_settled = True
            else:
                session._outgoing_unsettled[delivery.id] = delivery
            first = True
        else:
            first = False
        # No larger than either side's max-frame-size: a peer that takes frames of any
        # size (rhea announces none: 4 GiB) still gets a large message in slices.
        frame_limit = min(self.remote_max_frame_size, self.max_frame_size)
        handle = _uint(link.handle)
        while True:
            if session.remote_incoming_window <= 0:
                return False
            # The transfer's fields, built directly: this runs once per frame sent.
            if first:
                fields = [
                    handle,
                    _uint(delivery.id),
                    delivery.tag,
                    _uint(delivery.message_format),  # only continuations may omit it
                    True if settled else None,
                ]
                first = False
            else:
                fields = [handle, None, None, None, True if settled else None]
            transfer = Described(_TRANSFER, fields)
            rest = delivery._size
            more = False
            if (
                delivery._complete
                and rest + _MAX_TRANSFER_OVERHEAD + len(delivery.tag) <= frame_limit
            ):
                room = rest  # the common case: it fits, no need to measure the header
            else:
                fields.append(True)  # more
                room = frame_limit - 8 - len(encode(transfer))
                more = rest > room or not delivery._complete
                if not more:
                    fields.pop()
            while fields and fields[-1] is None:
                fields.pop()
            # Straight from the bytes the application gave (a slice of them, not a copy).
            self._write(channel, transfer, delivery._take(room) if rest else b"")
            session.next_outgoing_id = (session.next_outgoing_id + 1) & _UINT_MASK
            session.remote_incoming_window -= 1
            if not more:
                return True
            if not delivery._size or len(self._out) >= self.output_limit:
                return False

    def _write_dispositions(self, session: Session, channel: int) -> None:
        pending = session._pending_dispositions
        session._pending_dispositions = {}
        records = []
        for delivery in pending:
            if delivery.id is None:
                continue
            if delivery.settled:
                continue  # the peer settled it first and forgot it: nothing to tell (as Proton)
            link = delivery.link
            state = delivery.local.to_spec(delivery.local_state) if delivery.local_state else None
            records.append((link.is_receiver, delivery.id, delivery.local_settled, state))
        records.sort(key=lambda record: (record[0], record[1]))
        index = 0
        while index < len(records):
            role, first, settled, state = records[index]
            last = first
            index += 1
            while index < len(records):
                next_role, next_id, next_settled, next_state = records[index]
                if (
                    next_role != role
                    or next_id != ((last + 1) & _UINT_MASK)
                    or next_settled != settled
                    or not (next_state is state or next_state == state)
                ):
                    break
                last = next_id
                index += 1
            self._write(
                channel,
                spec.Disposition(
                    role=role,
                    first=first,
                    last=last if last != first else None,
                    settled=settled,
                    state=state,
                ),
            )

    # -- errors, time and tracing -----------------------------------------------------

    def _fail(self, condition: str, description: str, write: bool = True) -> None:
        """Close the connection because of an error: tell the peer why, stop reading."""
        if self._error:
            return
        self._error = True
        self.condition = Condition(condition, description)
        connection = self.connection
        if write and self._amqp_header_sent and not self._close_sent:
            if not self._open_sent and connection is not None:
                self._write_open(connection)
            if self._open_sent:
                self._write(0, spec.Close(error=self.condition.to_spec()))
                self._close_sent = True
        if connection is not None:
            connection.condition = connection.condition or None
        self._put(Event.TRANSPORT_ERROR)
        self._close_tail()
        if not self._close_sent:
            self._close_head()

    def tick(self, now: float) -> float:
        """Run the idle-timeout clock; return when to call again (0: no need)."""
        if self._input_since_tick or not self._last_input:
            self._last_input = now
            self._input_since_tick = False
        if self._bytes_output != self._last_bytes_output or not self._last_output:
            self._last_output = now
            self._last_bytes_output = self._bytes_output
        deadline = 0.0
        if self.idle_timeout and self._open_received and not self._tail_closed:
            expires = self._last_input + self.idle_timeout
            if now >= expires:
                self._fail(RESOURCE_LIMIT, "local-idle-timeout expired")
                return 0.0
            deadline = expires
        if self.remote_idle_timeout and self._open_sent and not self._close_sent:
            due = self._last_output + self.remote_idle_timeout / 2
            if now >= due:
                self._trace_out(0, "(empty frame)")
                heartbeat = encode_empty_frame()
                self._out += heartbeat
                self._last_bytes_output += len(heartbeat)  # not output of the application's
                self._last_output = now
                due = now + self.remote_idle_timeout / 2
            deadline = min(deadline, due) if deadline else due
        return deadline

    def _trace_in(self, channel: int, body: Any, payload: bytes = b"") -> None:
        if self.trace_frames:
            self._trace("<-", channel, body, payload)

    def _trace_out(self, channel: int, body: Any, payload: bytes | memoryview = b"") -> None:
        if self.trace_frames:
            self._trace("->", channel, body, payload)

    def _trace(self, direction: str, channel: int, body: Any, payload: bytes | memoryview) -> None:
        extra = f" (payload {len(payload)} bytes)" if payload else ""
        text = body if isinstance(body, str) else repr(body)
        print(f"[{self._label}]:{channel} {direction} {text}{extra}", file=sys.stderr)


_HANDLERS = {
    spec.Open: Transport._on_open,
    spec.Begin: Transport._on_begin,
    spec.Attach: Transport._on_attach,
    spec.Flow: Transport._on_flow,
    spec.Transfer: Transport._on_transfer,
    spec.Disposition: Transport._on_disposition,
    spec.Detach: Transport._on_detach,
    spec.End: Transport._on_end,
    spec.Close: Transport._on_close,
}
