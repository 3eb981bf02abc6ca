"""In-memory wiring for engine tests: two protocol engines joined by a pretend socket.

A `Peer` is one end: our sans-IO engine (`OurPeer`), Proton's C engine (`ProtonPeer`)
or a hand-driven frame writer (`RawPeer`) for what neither engine would ever send.
`Wire(client, server).pump()` moves bytes both ways until both ends are quiet, passes
end-of-stream on when one end closes its output, and decodes every frame that crossed
into `Wire.sent_by_client` / `Wire.sent_by_server` so tests can check the frames
themselves (their count, size and fields), not only the events. `FakeClock` is the
time handed to `tick(now)`: idle timeouts run without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqp_core import spec
from amqp_core.codec import read_value
from amqp_core.engine import Collector, Connection, Transport
from amqp_core.framing import FRAME_AMQP, FRAME_SASL, encode_empty_frame, encode_frame

__all__ = [
    "EOS",
    "FakeClock",
    "FrameRecord",
    "FrameDecoder",
    "OurPeer",
    "Peer",
    "ProtonPeer",
    "RawPeer",
    "Wire",
    "event_names",
]

#: What `Peer.take_output` returns once that end will write nothing more.
EOS = None


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
    body: Any = None  # the performative as a spec class; None for a heartbeat
    payload: bytes = b""

    @property
    def name(self) -> str:
        if self.header is not None:
            return "header"
        if self.body is None:
            return "empty"
        return type(self.body).__name__.lower()


class FrameDecoder:
    """Cuts a byte stream into `FrameRecord`s: headers wherever a frame could start
    with "AMQP" (no frame is 1.1 GB long), frames otherwise."""

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
                value, after = read_value(body_bytes, 0)
                record.body = spec.from_described(value)
                record.payload = body_bytes[after:]
            self.records.append(record)
            pos += size
        del buffer[:pos]


class Peer:
    """One end of a `Wire`."""

    label = "peer"

    def take_output(self) -> bytes | None:
        """Bytes to send now (b"" if none), or `EOS` once nothing more will come."""
        raise NotImplementedError

    def give_input(self, data: bytes) -> None:
        raise NotImplementedError

    def give_eof(self) -> None:
        """The other end closed its output."""

    def tick(self, now: float) -> float:
        return 0.0


class OurPeer(Peer):
    """Our engine: a Connection bound to a Transport, its events in a Collector."""

    label = "ours"

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
        self.connection.container = container or (
            "our-client" if mode == Transport.CLIENT else "our-server"
        )
        self.transport = Transport(mode)
        for name, value in transport_settings.items():
            setattr(self.transport, name, value)
        if sasl:
            self.transport.sasl()
        self.log: list[Any] = []  # every event popped, oldest first
        if bind:
            self.transport.bind(self.connection)

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

    def events(self) -> list[Any]:
        """The events put since the last call, oldest first."""
        popped = []
        while (event := self.collector.pop()) is not None:
            popped.append(event)
        self.log.extend(popped)
        return popped


class ProtonPeer(Peer):
    """Proton's C engine through its Python binding: the reference peer."""

    label = "proton"

    def __init__(
        self,
        mode: str = "client",
        sasl_mechs: str | None = None,
        container: str | None = None,
        bind: bool = True,
    ) -> None:
        import proton

        self.proton = proton
        self.connection = proton.Connection()
        self.collector = proton.Collector()
        self.connection.collect(self.collector)
        self.connection.container = container or f"proton-{mode}"
        self.transport = proton.Transport(
            proton.Transport.CLIENT if mode == "client" else proton.Transport.SERVER
        )
        if sasl_mechs is not None:
            sasl = self.transport.sasl()
            sasl.allowed_mechs(sasl_mechs)
            if mode == "client":
                sasl.allow_insecure_mechs = True
        self.log: list[Any] = []
        if bind:
            self.transport.bind(self.connection)

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

    def events(self) -> list[tuple[Any, Any]]:
        """(type, context) of each event since the last call, oldest first."""
        popped = []
        while (event := self.collector.peek()) is not None:
            popped.append((event.type, event.context))
            self.collector.pop()
        self.log.extend(popped)
        return popped


class RawPeer(Peer):
    """A peer whose every byte the test writes: for frames no engine would send."""

    label = "raw"

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
        bodies = [record.body for record in self.frames if record.body is not None]
        return [body for body in bodies if kind is None or isinstance(body, kind)]


class Wire:
    """Joins two peers as a socket would; records every frame that crosses it."""

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
        """The frames sent by "client" or "server", of performative class `kind`."""
        records = self.sent_by_client if side == "client" else self.sent_by_server
        return [
            record
            for record in records
            if record.header is None and (kind is None or isinstance(record.body, kind))
        ]

    def forget(self) -> None:
        """Drop the frames recorded so far (to look only at what comes next)."""
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
            already = self._eof_to_server if side == "client" else self._eof_to_client
            if already:
                return False
            if side == "client":
                self._eof_to_server = True
            else:
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


def event_names(events: list[Any]) -> list[str]:
    """Event type names without Proton's "PN_" prefix, for either engine's events."""
    names = []
    for event in events:
        kind = event[0] if isinstance(event, tuple) else event.type
        names.append(str(getattr(kind, "name", kind)).removeprefix("PN_"))
    return names
