"""In-memory wiring for engine tests: two protocol engines joined by a pretend socket.

A `Peer` is one end: our sans-IO engine (`OurPeer`), Proton's C engine (`ProtonPeer`)
or a hand-driven frame writer (`RawPeer`) for what neither engine would ever send.
`Wire(client, server).pump()` moves bytes both ways until both ends are quiet, passes
end-of-stream on when one end closes its output, and decodes every frame that crossed
into `Wire.sent_by_client` / `Wire.sent_by_server`, so tests can check the frames
themselves (their count, size and fields) and not only the events. `FakeClock` is the
time handed to `tick(now)`: idle timeouts run without sleeping.

Our engine and Proton's share an API (that is the point of amqp_core), so `connect` and
`open_link` set up either kind of peer, and a test written once runs in every pairing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import amqp_core
from amqp_core import spec
from amqp_core.codec import DecodeError, read_value
from amqp_core.engine import Collector, Connection, Transport
from amqp_core.framing import FRAME_AMQP, FRAME_SASL, encode_empty_frame, encode_frame

__all__ = [
    "EOS",
    "FakeClock",
    "FrameDecoder",
    "FrameRecord",
    "Happened",
    "OurPeer",
    "Peer",
    "ProtonPeer",
    "RawPeer",
    "Wire",
    "answer_opens",
    "connect",
    "make_peer",
    "links_of",
    "names",
    "open_link",
]

#: What `Peer.take_output` returns once that end will write nothing more.
EOS = None

# Endpoint state bits; Proton and amqp_core use the same values.
LOCAL_UNINIT = 1
REMOTE_ACTIVE = 16


class FakeClock:
    """Seconds, as `Transport.tick(now)` takes them; only moves when told to.

    It starts far from zero because a clock reading of 0 means "never" to some timers.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class FrameRecord:
    """One unit that crossed the wire: a protocol header (`header` set) or a frame."""

    header: bytes | None = None
    size: int = 0
    type: int = FRAME_AMQP
    channel: int = 0
    #: The performative as a spec class; None for a heartbeat, the `DecodeError` for
    #: bytes that are not AMQP.
    body: Any = None
    payload: bytes = b""

    @property
    def name(self) -> str:
        if self.header is not None:
            return "header"
        if self.body is None:
            return "empty"
        return type(self.body).__name__.lower()


class FrameDecoder:
    """Cuts a byte stream into `FrameRecord`s: a header wherever a frame could start
    with "AMQP" (no frame is 1.1 GB long), a frame otherwise."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.records: list[FrameRecord] = []
        self.junk = False  # bytes that are neither a header nor a frame arrived

    def feed(self, data: bytes) -> None:
        self._buffer += data
        buffer = self._buffer
        pos = 0
        while not self.junk and len(buffer) - pos >= 8:
            if buffer[pos : pos + 4] == b"AMQP":
                self.records.append(FrameRecord(header=bytes(buffer[pos : pos + 8]), size=8))
                pos += 8
                continue
            size = int.from_bytes(buffer[pos : pos + 4], "big")
            offset = buffer[pos + 4] * 4
            if size < 8 or offset < 8 or offset > size:
                self.junk = True
                break
            if len(buffer) - pos < size:
                break
            frame_type = buffer[pos + 5]
            channel = int.from_bytes(buffer[pos + 6 : pos + 8], "big")
            body_bytes = bytes(buffer[pos + offset : pos + size])
            record = FrameRecord(size=size, type=frame_type, channel=channel)
            if body_bytes:
                try:
                    value, after = read_value(body_bytes, 0)
                    record.body = spec.from_described(value)
                    record.payload = body_bytes[after:]
                except DecodeError as error:  # what a bad-input test sent on purpose
                    record.body = error
                    record.payload = body_bytes
            self.records.append(record)
            pos += size
        del buffer[:pos]

    def performatives(self, kind: type | None = None) -> list[Any]:
        bodies = [record.body for record in self.records if record.header is None]
        return [
            body for body in bodies if body is not None and (kind is None or isinstance(body, kind))
        ]


class Happened(NamedTuple):
    """One event of either engine: its name without Proton's "PN_" prefix, and what it
    concerns (a connection, session, link, delivery or transport)."""

    name: str
    context: Any


def names(events: list[Happened]) -> list[str]:
    """The events' names, without Proton's TRANSPORT events ("there is output"): they
    are bookkeeping of Proton's own, not protocol state."""
    return [event.name for event in events if event.name != "TRANSPORT"]


def links_of(connection: Any) -> list[Any]:
    """Every link of a connection, through the API both engines share."""
    found = []
    link = connection.link_head(0)
    while link is not None:
        found.append(link)
        link = link.next(0)
    return found


class Peer:
    """One end of a `Wire`."""

    kind = "peer"
    #: The library whose classes (Condition, Message, symbol) this peer's API takes.
    lib: ModuleType | None = None
    connection: Any = None
    transport: Any = None

    def take_output(self) -> bytes | None:
        """Bytes to send now (b"" if none), or `EOS` once nothing more will come."""
        raise NotImplementedError

    def give_input(self, data: bytes) -> None:
        raise NotImplementedError

    def give_eof(self) -> None:
        """The other end closed its output."""

    def tick(self, now: float) -> float:
        return 0.0

    def events(self) -> list[Happened]:
        return []


class OurPeer(Peer):
    """Our engine: a Connection bound to a Transport, its events in a Collector.

    Keyword arguments set transport attributes (`max_frame_size`, `idle_timeout`, ...)
    before the connection is bound; `bind=False` leaves binding to the test, for
    settings that are read at bind time (the SASL user and password).
    """

    kind = "ours"
    lib = amqp_core

    def __init__(
        self,
        mode: int = Transport.CLIENT,
        sasl: bool = False,
        container: str | None = None,
        bind: bool = True,
        **transport_settings: Any,
    ) -> None:
        self.connection = Connection()
        self.collector = Collector()
        self.connection.collect(self.collector)
        role = "client" if mode == Transport.CLIENT else "server"
        self.connection.container = container or f"our-{role}"
        self.transport = Transport(mode)
        for name, value in transport_settings.items():
            setattr(self.transport, name, value)
        if sasl:
            self.transport.sasl()
        if bind:
            self.bind()

    def bind(self) -> None:
        self.transport.bind(self.connection)

    def take_output(self) -> bytes | None:
        data = self.transport.output()
        if not data and self.transport._head_closed:
            return EOS
        return data

    def give_input(self, data: bytes) -> None:
        self.transport.push(data)

    def give_eof(self) -> None:
        self.transport.close_tail()

    def tick(self, now: float) -> float:
        return self.transport.tick(now)

    def events(self) -> list[Happened]:
        """The events put since the last call, oldest first."""
        popped = []
        while (event := self.collector.pop()) is not None:
            popped.append(Happened(event.type.name, event.context))
        return popped


class ProtonPeer(Peer):
    """Proton's C engine through its Python binding: the reference peer.

    `sasl_mechs` turns SASL on with those mechanisms allowed (and, for a client,
    PLAIN allowed over this unencrypted pretend socket).
    """

    kind = "proton"

    def __init__(
        self,
        mode: str = "client",
        sasl_mechs: str | None = None,
        container: str | None = None,
        bind: bool = True,
        **transport_settings: Any,
    ) -> None:
        import proton

        self.lib = proton
        self.connection = proton.Connection()
        self.collector = proton.Collector()
        self.connection.collect(self.collector)
        self.connection.container = container or f"proton-{mode}"
        self.transport = proton.Transport(
            proton.Transport.CLIENT if mode == "client" else proton.Transport.SERVER
        )
        for name, value in transport_settings.items():
            setattr(self.transport, name, value)
        if sasl_mechs is not None:
            sasl = self.transport.sasl()
            sasl.allowed_mechs(sasl_mechs)
            if mode == "client":
                sasl.allow_insecure_mechs = True
        if bind:
            self.bind()

    def bind(self) -> None:
        self.transport.bind(self.connection)

    def take_output(self) -> bytes | None:
        pending = self.transport.pending()
        if pending < 0:
            return EOS
        if pending == 0:
            return b""
        data = self.transport.peek(pending)
        self.transport.pop(pending)
        return data

    def give_input(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            capacity = self.transport.capacity()
            if capacity <= 0:
                return  # the tail is closed: what is left falls on the floor
            chunk = bytes(view[:capacity])
            self.transport.push(chunk)
            view = view[len(chunk) :]

    def give_eof(self) -> None:
        self.transport.close_tail()

    def tick(self, now: float) -> float:
        return self.transport.tick(now)

    def events(self) -> list[Happened]:
        """The events put since the last call, oldest first."""
        popped = []
        while (event := self.collector.peek()) is not None:
            popped.append(Happened(event.type.name.removeprefix("PN_"), event.context))
            self.collector.pop()
        return popped


class RawPeer(Peer):
    """A peer whose every byte the test writes: for frames no engine would send."""

    kind = "raw"

    def __init__(self) -> None:
        self._out = bytearray()
        self.received = FrameDecoder()
        self.closed_output = False
        self.eof = False

    def header(self, header: bytes) -> RawPeer:
        self._out += header
        return self

    def frame(self, performative: Any, channel: int = 0, payload: bytes = b"") -> RawPeer:
        encode_frame(self._out, FRAME_AMQP, channel, performative, payload)
        return self

    def sasl_frame(self, performative: Any) -> RawPeer:
        encode_frame(self._out, FRAME_SASL, 0, performative)
        return self

    def heartbeat(self) -> RawPeer:
        self._out += encode_empty_frame()
        return self

    def raw(self, data: bytes) -> RawPeer:
        self._out += data
        return self

    def close_output(self) -> None:
        self.closed_output = True

    def take_output(self) -> bytes | None:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            return data
        return EOS if self.closed_output else b""

    def give_input(self, data: bytes) -> None:
        self.received.feed(data)

    def give_eof(self) -> None:
        self.eof = True

    @property
    def frames(self) -> list[FrameRecord]:
        return self.received.records

    def performatives(self, kind: type | None = None) -> list[Any]:
        return self.received.performatives(kind)


class Wire:
    """Joins two peers as a socket would; records every frame that crosses it.

    `record=False` skips decoding (for tests that move tens of megabytes).
    """

    def __init__(self, client: Peer, server: Peer, record: bool = True) -> None:
        self.client = client
        self.server = server
        self.record = record
        self._from_client = FrameDecoder()
        self._from_server = FrameDecoder()
        self._eof_to_server = False
        self._eof_to_client = False
        self.bytes_from_client = 0
        self.bytes_from_server = 0

    @property
    def sent_by_client(self) -> list[FrameRecord]:
        return self._from_client.records

    @property
    def sent_by_server(self) -> list[FrameRecord]:
        return self._from_server.records

    def frames(self, side: str, kind: type | None = None) -> list[FrameRecord]:
        """The frames (not headers) sent by "client" or "server", of class `kind`."""
        records = self.sent_by_client if side == "client" else self.sent_by_server
        return [
            record
            for record in records
            if record.header is None and (kind is None or isinstance(record.body, kind))
        ]

    def bodies(self, side: str, kind: type) -> list[Any]:
        return [record.body for record in self.frames(side, kind)]

    def forget(self) -> None:
        """Drop the frames recorded so far, to look only at what comes next."""
        self.sent_by_client.clear()
        self.sent_by_server.clear()

    def pump(self, max_rounds: int = 10_000) -> int:
        """Move bytes both ways until neither end has anything to say; return rounds."""
        for rounds in range(max_rounds):
            moved = self._move(self.client, self.server, "client")
            moved |= self._move(self.server, self.client, "server")
            if not moved:
                return rounds
        raise AssertionError(f"the peers were still talking after {max_rounds} rounds")

    def _move(self, source: Peer, sink: Peer, side: str) -> bool:
        data = source.take_output()
        if data is EOS:
            if side == "client":
                if self._eof_to_server:
                    return False
                self._eof_to_server = True
            else:
                if self._eof_to_client:
                    return False
                self._eof_to_client = True
            sink.give_eof()
            return True
        if not data:
            return False
        if side == "client":
            self.bytes_from_client += len(data)
        else:
            self.bytes_from_server += len(data)
        if self.record:
            (self._from_client if side == "client" else self._from_server).feed(data)
        sink.give_input(data)
        return True

    def tick(self, now: float) -> None:
        """Hand both ends the time, then let them talk."""
        self.client.tick(now)
        self.server.tick(now)
        self.pump()


def make_peer(kind: str, role: str, **settings: Any) -> Peer:
    """A fresh "ours" or "proton" peer in the "client" or "server" role."""
    if kind == "ours":
        mode = Transport.CLIENT if role == "client" else Transport.SERVER
        return OurPeer(mode, **settings)
    return ProtonPeer(role, **settings)


def answer_opens(
    peer: Peer,
    events: list[Happened] | None = None,
    configure: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Open whatever the other end opened (a connection, sessions, links: the links
    with the termini the other end asked for); return the links opened.

    `configure(link)` runs on each link before it opens, to set credit or modes.
    """
    links = []
    for event in peer.events() if events is None else events:
        endpoint = event.context
        if (
            event.name == "CONNECTION_REMOTE_OPEN"
            and endpoint.state & LOCAL_UNINIT
            or event.name == "SESSION_REMOTE_OPEN"
            and endpoint.state & LOCAL_UNINIT
        ):
            endpoint.open()
        elif event.name == "LINK_REMOTE_OPEN" and endpoint.state & LOCAL_UNINIT:
            endpoint.source.copy(endpoint.remote_source)
            endpoint.target.copy(endpoint.remote_target)
            if configure is not None:
                configure(endpoint)
            endpoint.open()
            links.append(endpoint)
    return links


def connect(client: Peer, server: Peer, record: bool = True) -> Wire:
    """Open a connection from `client` to `server` and let `server` answer."""
    wire = Wire(client, server, record=record)
    client.connection.open()
    wire.pump()
    answer_opens(server)
    wire.pump()
    client.events()
    return wire


def open_link(
    wire: Wire,
    role: str = "sender",
    name: str = "link",
    address: str = "queue",
    configure: Callable[[Any], None] | None = None,
    session: Any = None,
) -> tuple[Any, Any]:
    """Attach a link from the client (its `role` end) and have the server answer;
    return (client's end, server's end). `configure` runs on the client's end first."""
    client, server = wire.client, wire.server
    if session is None:
        session = client.connection.session()
        session.open()
    link = session.sender(name) if role == "sender" else session.receiver(name)
    if role == "sender":
        link.target.address = address
    else:
        link.source.address = address
    if configure is not None:
        configure(link)
    link.open()
    wire.pump()
    answered = [found for found in answer_opens(server) if found.name == name]
    assert answered, f"the server did not see link {name!r} attach"
    wire.pump()
    client.events()
    return link, answered[0]
