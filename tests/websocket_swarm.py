"""A minimal asyncio WebSocket client (RFC 6455) for holding thousands of streams at once.

The `websockets` library costs a few tasks and buffers per connection; this one is a
bare `asyncio.Protocol`: it sends the upgrade request, reads text, ping and close
frames, answers pings, and keeps what came. Enough for the gateway's stream tests,
where one test process holds 10,000 sockets.

    clients = await open_streams("127.0.0.1", port, ["/streams/a", "/streams/b"])
    text = await clients[0].next_text(timeout=10)
    await close_all(clients)
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections import deque
from collections.abc import Iterable

__all__ = ["StreamClient", "close_all", "open_streams"]

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class StreamClient(asyncio.Protocol):
    """One WebSocket connection. `opened` completes once the server accepted the
    upgrade; `closed` with (code, reason) once the connection is gone (1006: dropped
    without a close frame)."""

    def __init__(self, host: str, path: str) -> None:
        loop = asyncio.get_running_loop()
        self.host = host
        self.path = path
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.texts: deque[str] = deque()
        self._arrived: asyncio.Event = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._close_sent = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buffer[: self._buffer.find(b"\r\n")])
            del self._buffer[: end + 4]
            if b" 101 " not in status + b" ":
                self._finish(1006, f"upgrade refused: {status.decode(errors='replace')}")
                return
            self._upgraded = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(1006, str(exc or "connection dropped"))

    # -- use ----------------------------------------------------------------------------

    async def next_text(self, timeout: float) -> str:
        """The next text frame; TimeoutError if none comes in time, ConnectionError if
        the connection closes first."""
        async with asyncio.timeout(timeout):
            while not self.texts:
                if self.closed.done():
                    raise ConnectionError(f"closed: {self.closed.result()}")
                self._arrived.clear()
                waiting = asyncio.ensure_future(self._arrived.wait())
                await asyncio.wait([waiting, self.closed], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
            return self.texts.popleft()

    def send_text(self, text: str) -> None:
        self._send(TEXT, text.encode())

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake (the server answers, then drops the socket)."""
        if not self._close_sent and not self.closed.done():
            self._close_sent = True
            self._send(CLOSE, struct.pack("!H", code))

    def abort(self) -> None:
        """Drop the socket without a closing handshake, as a vanished client does."""
        if self._transport is not None:
            self._transport.abort()

    # -- frames -------------------------------------------------------------------------

    def _send(self, opcode: int, payload: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        transport.write(header + mask + masked)

    def _read_frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,) = struct.unpack_from("!H", buffer, 2)
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,) = struct.unpack_from("!Q", buffer, 2)
                offset = 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            if opcode == TEXT:
                self.texts.append(payload.decode())
                self._arrived.set()
            elif opcode == PING:
                self._send(PONG, payload)
            elif opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                reason = payload[2:].decode(errors="replace")
                if not self._close_sent:
                    self._close_sent = True
                    self._send(CLOSE, payload[:2])
                self._finish(code, reason)
                if self._transport is not None:
                    self._transport.close()
                return

    def _finish(self, code: int, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
            self.opened.exception()
        if not self.closed.done():
            self.closed.set_result((code, reason))
        self._arrived.set()


async def open_streams(
    host: str,
    port: int,
    paths: Iterable[str],
    concurrency: int = 100,
    timeout: float = 30.0,
) -> list[StreamClient]:
    """Open a WebSocket on each path, `concurrency` handshakes at a time; raise if one
    is refused or not answered within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def open_one(path: str) -> StreamClient:
        async with gate:
            _, client = await loop.create_connection(
                lambda: StreamClient(f"{host}:{port}", path), host, port
            )
            async with asyncio.timeout(timeout):
                await client.opened
            return client

    return list(await asyncio.gather(*(open_one(path) for path in paths)))


async def close_all(clients: Iterable[StreamClient], timeout: float = 10.0) -> None:
    """Close every connection (the closing handshake, then drop what did not finish)."""
    clients = list(clients)
    for client in clients:
        client.close()
    pending = [client.closed for client in clients if not client.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for client in clients:
        client.abort()
