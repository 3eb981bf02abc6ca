"""Large messages through amqp_core: put together a frame at a time without copying the
body whole (`MessageReader`, `Message.encode_parts`), and sent and received by the
tutorial's API and `amqp_core.aio` without holding the event loop long."""

from __future__ import annotations

import asyncio
import random
import time
import tracemalloc
import uuid
from typing import Any

import amqp_strategies as s
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amqp_core import DataSections, Message, aio, symbol
from amqp_core.codec import DecodeError
from amqp_core.handlers import MessagingHandler
from amqp_core.message import LARGE_BINARY, MessageReader
from amqp_core.reactor import Container

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MEBIBYTE = 1024 * 1024


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


#: Binaries on both sides of LARGE_BINARY, the size from which a body is its own piece.
sized_binaries = st.one_of(
    s.binaries,
    st.builds(random_bytes, st.integers(LARGE_BINARY - 2, 3 * LARGE_BINARY), st.integers(0, 99)),
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Messages whose bodies are often large binaries: one data section, several (large
    and small mixed), or an amqp-value binary; other bodies too, and sections around."""
    kind = draw(st.sampled_from(["data", "sections", "binary value", "value"]))
    if kind == "data":
        message = Message(body=draw(sized_binaries), inferred=True)
    elif kind == "sections":
        message = Message(body=DataSections(draw(st.lists(sized_binaries, min_size=2, max_size=4))))
    elif kind == "binary value":
        message = Message(body=draw(sized_binaries))
    else:
        message = Message(body=draw(s.values))
    if draw(st.booleans()):
        message.properties = draw(s.application_properties)
        message.subject = draw(s.c_texts)
        message.durable = True
    if draw(st.booleans()):
        message.annotations = draw(s.annotation_maps)
    if draw(st.booleans()):
        message.footer = draw(s.annotation_maps)
    return message


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length), as frames cut it."""
    offsets = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:end] for start, end in zip(offsets, offsets[1:], strict=False)]


def read(parts: list[bytes]) -> Message:
    reader = MessageReader()
    for part in parts:
        reader.feed(part)
    return reader.message()


def decoded(data: bytes) -> Message:
    message = Message()
    message.decode(data)
    return message


# -- encoding in pieces ---------------------------------------------------------------------


@SETTINGS
@given(messages())
def test_the_pieces_of_an_encoding_are_the_encoding(message: Message) -> None:
    parts = message.encode_parts()
    assert b"".join(parts) == message.encode()
    body = message.body
    large = [part for part in parts if len(part) >= LARGE_BINARY]
    if type(body) is bytes and len(body) >= LARGE_BINARY:
        assert any(part is body for part in parts), "a large body is a piece of its own"
    else:
        assert all(part is not body for part in large)


def test_a_large_body_is_its_own_piece_not_a_copy() -> None:
    body = random_bytes(MEBIBYTE)
    parts = Message(body=body, subject="s", footer={symbol("f"): 1}, inferred=True).encode_parts()
    assert len(parts) == 3 and parts[1] is body


# -- reading in pieces ----------------------------------------------------------------------


@SETTINGS
@given(messages(), st.lists(st.integers(0, 2**20), max_size=12))
def test_a_message_read_in_pieces_is_the_message_decoded_whole(
    message: Message, cuts: list[int]
) -> None:
    data = message.encode()
    expected = decoded(data)
    got = read(pieces(data, cuts))
    assert type(got.body) is type(expected.body)
    assert got.encode() == expected.encode()  # NaN-proof equality


@SETTINGS
@given(messages(), st.lists(st.integers(0, 2**20), max_size=6), st.data())
def test_bytes_that_are_not_a_message_fail_in_pieces_as_they_fail_whole(
    message: Message, cuts: list[int], data: st.DataObject
) -> None:
    encoded = bytearray(message.encode() or b"\x00")
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, min(len(encoded) - 1, 64)))
        encoded[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del encoded[data.draw(st.integers(0, len(encoded))) :]
    mangled = bytes(encoded)
    try:
        expected: Message | DecodeError = decoded(mangled)
    except DecodeError as error:
        expected = error
    try:
        got: Message | DecodeError = read(pieces(mangled, cuts))
    except DecodeError as error:
        got = error
    if isinstance(expected, DecodeError):
        assert isinstance(got, DecodeError), got
    else:
        assert not isinstance(got, DecodeError), got
        assert got.encode() == expected.encode()


def test_a_large_body_read_in_frames_is_collected_once() -> None:
    """A 20 MB body fed in 256 KiB frames costs one body's worth of memory: it is
    collected into its own bytes as it comes, not gathered and then copied out."""
    body = random_bytes(20 * MEBIBYTE)
    data = Message(body=body, inferred=True, subject="large").encode()
    frames = pieces(data, list(range(0, len(data), 256 * 1024)))
    tracemalloc.start()
    try:
        message = read(frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.body == body and message.subject == "large"
    assert peak < 1.2 * len(body), f"{peak / len(body):.2f} times the body"


def test_a_message_that_ends_inside_its_body_is_a_decode_error() -> None:
    data = Message(body=random_bytes(MEBIBYTE), inferred=True).encode()
    reader = MessageReader()
    reader.feed(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="short of its body"):
        reader.message()


def test_deeply_nested_input_costs_no_more_in_pieces() -> None:
    """Stepping over sections is bounded: 8 MB of nested described-value constructors,
    fed a kilobyte at a time, are not rescanned at every piece."""
    hostile = b"\x00\x53\x77" + b"\x00" * (8 * MEBIBYTE)
    started = time.monotonic()
    reader = MessageReader()
    for start in range(0, len(hostile), 1024):
        reader.feed(hostile[start : start + 1024])
    fed = time.monotonic() - started
    with pytest.raises(DecodeError):
        reader.message()
    assert fed < 10, f"{fed:.1f} s to feed 8 MB"


# -- through Proton's broker: the tutorial's API and amqp_core.aio ---------------------------


class Relay(MessagingHandler):
    """The tutorial's API at work: each message from `source` is sent on to `target`
    (`on_message` receives it, `Sender.send` sends it)."""

    def __init__(self, url: str, source: str, target: str) -> None:
        super().__init__()
        self.url, self.source, self.target = url, source, target
        self.sender: Any = None

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        event.container.create_receiver(connection, self.source)
        self.sender = event.container.create_sender(connection, self.target)

    def on_message(self, event: Any) -> None:
        self.sender.send(event.message)


class LoopWatch:
    """The longest time the event loop went without running a task that sleeps 1 ms:
    the longest step something else held it for."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.001)
            now = loop.time()
            self.longest = max(self.longest, now - last - 0.001)
            last = now

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()


async def relay_round_trip(broker: str, body: bytes, during: Any) -> Message:
    """`body` sent by amqp_core.aio to Proton's broker, taken and sent back by a Relay,
    and received by amqp_core.aio again: both APIs send and receive it once, all in this
    event loop. `during` is a context manager around the sending and receiving."""
    address = f"large-{uuid.uuid4().hex[:8]}"
    container = Container(Relay(f"amqp://{broker}", address, f"{address}-back"))
    container.start()
    connection = await aio.connect(f"amqp://{broker}")
    try:
        receiver = await connection.open_receiver(f"{address}-back", credit=1, timeout=10)
        sender = await connection.open_sender(address, timeout=10)
        async with asyncio.timeout(120):
            with during:
                outcome = await sender.send(Message(body=body, inferred=True))
                received = await receiver.receive()
                await asyncio.sleep(0.01)  # a watcher of the loop sees the last step too
        assert outcome.accepted, outcome
        received.accept()
        return received.message
    finally:
        await connection.close(timeout=10)
        container.stop()


class _Watched:
    def __init__(self, watch: LoopWatch) -> None:
        self.watch = watch

    def __enter__(self) -> None:
        self.watch.start()

    def __exit__(self, *exc: object) -> None:
        self.watch.stop()


@pytest.mark.slow
def test_a_50_mb_message_there_and_back_never_holds_the_event_loop_long(
    proton_broker: str,
) -> None:
    """A capacity bound, not a speed test: before the engine framed a slice per output
    and the receivers read a frame at a time, single steps took 0.3-0.6 s; now they take
    a few milliseconds. The bound leaves ten times that for a loaded machine."""
    body = random_bytes(50 * MEBIBYTE)
    watch = LoopWatch()
    message = asyncio.run(relay_round_trip(proton_broker, body, _Watched(watch)))
    assert message.body == body
    assert watch.longest < 0.15, f"the event loop was held {watch.longest * 1000:.0f} ms"


class _Traced:
    def __init__(self) -> None:
        self.peak = 0

    def __enter__(self) -> None:
        tracemalloc.start()

    def __exit__(self, *exc: object) -> None:
        _, self.peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()


def test_a_large_message_there_and_back_is_held_once_by_each_receiver(
    proton_broker: str,
) -> None:
    """What sending and receiving a 20 MB message costs in memory: at most the two
    received bodies (the Relay's and ours) and slices of frames, no whole copies on the
    way (before: three bodies' worth, as encoding, sending and decoding copied it)."""
    body = random_bytes(20 * MEBIBYTE)
    traced = _Traced()
    message = asyncio.run(relay_round_trip(proton_broker, body, traced))
    assert message.body == body
    assert traced.peak < 2 * len(body), f"{traced.peak / len(body):.2f} times the body"
