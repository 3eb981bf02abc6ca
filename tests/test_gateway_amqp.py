"""The gateway's AMQP side (gateway/amqp.py) against real peers.

The embedded broker runs in the test's own event loop, as it runs in uvicorn's; the
tutorial's programs (ours and Proton's), Proton listeners and a real RabbitMQ are the
other side. Every server listens on a free loopback port and is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from processes import free_port
from rabbitmq import RabbitMQ

from amqp_core import Condition, Message, aio
from amqp_core.broker.server import Broker, BrokerConfig
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container
from amqp_core.sslconfig import SSLDomain
from gateway.amqp import (
    OTHER_SESSIONS,
    AddressRefused,
    AmqpClient,
    AmqpClientConfig,
    BrokerUnavailable,
    EmbeddedBroker,
    EmbeddedBrokerError,
    RequestInDoubt,
    RequestTimeout,
    SendInDoubt,
    SendTimeout,
    StreamInterrupted,
    UnknownMessageId,
)

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: Generous bounds: the machine is shared and loaded.
START_TIMEOUT = 20.0
RUN_TIMEOUT = 30.0

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- programs and peers -------------------------------------------------------------------

#: A Proton listener that settles each message as the address it was sent to says:
#: accept, reject (with a condition), release, modify, ignore (never settle), or
#: detach (accept, then close the link). It prints a line for each link it attaches.
OUTCOME_PEER = """
import sys
from proton import Condition, Delivery
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Peer(MessagingHandler):
    def __init__(self, url):
        super().__init__(auto_accept=False)
        self.url = url

    def on_start(self, event):
        event.container.listen(self.url)

    def on_connection_opened(self, event):
        transport = event.transport
        print(
            "connection", event.connection.remote_container,
            transport.remote_idle_timeout, transport.remote_max_frame_size, flush=True,
        )

    def on_link_opening(self, event):
        if event.link.is_receiver:
            event.link.target.address = event.link.remote_target.address
            print("attached", event.link.remote_target.address, flush=True)

    def on_message(self, event):
        how = event.link.target.address
        if how == "accept":
            self.accept(event.delivery)
        elif how == "reject":
            event.delivery.local.condition = Condition("amqp:precondition-failed", "not today")
            self.reject(event.delivery)
        elif how == "release":
            self.release(event.delivery, delivered=False)
        elif how == "modify":
            event.delivery.local.failed = True
            event.delivery.local.undeliverable = True
            self.settle(event.delivery, Delivery.MODIFIED)
        elif how == "detach":
            self.accept(event.delivery)
            event.link.close()


Container(Peer(sys.argv[1])).run()
"""

#: Answers like the tutorial's server.py (the body in upper case, to reply_to, with the
#: request's correlation_id), but only once it holds BATCH requests, in shuffled order.
SHUFFLING_SERVER = """
import random
import sys
from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Server(MessagingHandler):
    def __init__(self, url, address, batch):
        super().__init__(prefetch=batch)
        self.url, self.address, self.batch = url, address, batch
        self.held = []
        self.shuffle = random.Random(7).shuffle

    def on_start(self, event):
        connection = event.container.connect(self.url, reconnect=False)
        event.container.create_receiver(connection, self.address)
        self.replies = event.container.create_sender(connection, None)

    def on_message(self, event):
        self.held.append(event.message)
        if len(self.held) == self.batch:
            self.shuffle(self.held)
            for request in self.held:
                self.replies.send(Message(
                    address=request.reply_to,
                    body=request.body.upper(),
                    correlation_id=request.correlation_id,
                ))
            self.held = []


Container(Server(sys.argv[1], sys.argv[2], int(sys.argv[3]))).run()
"""


class Programs:
    """Starts programs as subprocesses (output to a file each) and stops them by PID."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[asyncio.subprocess.Process, Path]] = []
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}

    def script(self, name: str, text: str) -> Path:
        path = self.tmp_path / f"{name}.py"
        path.write_text(text)
        return path

    async def start(self, *argv: str | Path) -> tuple[asyncio.subprocess.Process, Path]:
        output = self.tmp_path / f"{len(self.started)}-{Path(argv[0]).stem}.out"
        with output.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *map(str, argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.tmp_path,
                env=self.env,
            )
        self.started.append((process, output))
        return process, output

    async def run(self, *argv: str | Path) -> list[str]:
        """Run a program to its end (bounded); return its output lines."""
        process, output = await self.start(*argv)
        try:
            code = await asyncio.wait_for(process.wait(), RUN_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"{argv[0]} did not finish in {RUN_TIMEOUT} s:\n{output.read_text()}")
        assert code == 0, f"{argv[0]} exited with {code}:\n{output.read_text()}"
        return [line.strip() for line in output.read_text().splitlines()]

    async def start_server(self, port: int, *argv: str | Path) -> Path:
        """Start a program that listens on `port`; return once it accepts connections."""
        process, output = await self.start(*argv)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                return output
            except OSError:
                if process.returncode is not None:
                    pytest.fail(f"{argv[0]} exited before listening:\n{output.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{argv[0]} did not listen on {port} in {START_TIMEOUT} s")
                await asyncio.sleep(0.05)

    async def stop_all(self) -> None:
        for process, _ in reversed(self.started):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()


@pytest.fixture
async def programs(tmp_path: Path) -> AsyncIterator[Programs]:
    started = Programs(tmp_path)
    try:
        yield started
    finally:
        await started.stop_all()


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    """The embedded broker, in this test's event loop, on a free port."""
    embedded = EmbeddedBroker(BrokerConfig(address=f"{HOST}:{free_port()}"))
    await embedded.start()
    try:
        yield embedded
    finally:
        await embedded.stop()


MakeClient = Callable[..., Awaitable[AmqpClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """make_client(url, wait=True, **config): a started AmqpClient (connected, unless
    wait=False), closed at the end of the test."""
    clients: list[AmqpClient] = []

    async def make(url: str, wait: bool = True, **config: Any) -> AmqpClient:
        client = AmqpClient(AmqpClientConfig(url=url, **config))
        clients.append(client)
        await client.start()
        if wait:
            assert await client.wait_connected(START_TIMEOUT), client.last_error
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close(grace=1)


@pytest.fixture
async def outcome_peer(programs: Programs) -> AsyncIterator[tuple[str, Path]]:
    """The Proton listener of OUTCOME_PEER: its URL and its output file."""
    port = free_port()
    script = programs.script("outcome_peer", OUTCOME_PEER)
    output = await programs.start_server(port, script, f"{HOST}:{port}")
    yield f"amqp://{HOST}:{port}", output


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def fill(client: AmqpClient, address: str, count: int) -> None:
    outcomes = await asyncio.gather(
        *(client.send(address, Message(body={"n": n}), timeout=RUN_TIMEOUT) for n in range(count))
    )
    assert [outcome.name for outcome in outcomes] == ["accepted"] * count


# -- the embedded broker ------------------------------------------------------------------


@pytest.mark.parametrize("side", ["ours", "proton"])
async def test_a_tutorial_receiver_prints_what_the_gateway_sent(
    broker: EmbeddedBroker,
    make_client: MakeClient,
    programs: Programs,
    request: pytest.FixtureRequest,
    side: str,
) -> None:
    client = await make_client(broker.url)
    outcome = await client.send("examples", Message(body={"sequence": 1}), timeout=RUN_TIMEOUT)
    assert outcome.accepted and outcome.name == "accepted"
    assert broker.stats()["examples"].depth == 1

    folder = REPO / "examples" if side == "ours" else request.getfixturevalue("proton_examples")
    lines = await programs.run(
        folder / "simple_recv.py", "-a", f"{HOST}:{broker.port}/examples", "-m", "1"
    )
    assert lines == ["{'sequence': 1}"]


async def test_the_embedded_broker_says_clearly_that_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        address = f"{HOST}:{taken.getsockname()[1]}"
        with pytest.raises(
            EmbeddedBrokerError, match=f"cannot listen for AMQP on {address}.*--amqp-listen"
        ):
            await EmbeddedBroker(BrokerConfig(address=address)).start()


# -- sending ------------------------------------------------------------------------------


async def test_send_returns_the_outcome_as_the_peer_settled_it(
    outcome_peer: tuple[str, Path], make_client: MakeClient
) -> None:
    url, _ = outcome_peer
    client = await make_client(url)
    accepted, rejected, released, modified = await asyncio.gather(
        *(
            client.send(address, Message(body="x"), timeout=RUN_TIMEOUT)
            for address in ("accept", "reject", "release", "modify")
        )
    )
    assert accepted.name == "accepted"
    assert rejected.name == "rejected"
    assert rejected.condition == Condition("amqp:precondition-failed", "not today")
    assert released.name == "released"
    assert modified.name == "modified"
    assert modified.delivery_failed and modified.undeliverable_here


async def test_the_connection_has_the_configured_id_heartbeat_and_frame_size(
    outcome_peer: tuple[str, Path], make_client: MakeClient
) -> None:
    url, output = outcome_peer
    await make_client(url, container_id="gateway-7", idle_timeout=4, max_frame_size=16384)
    await eventually(lambda: "connection" in output.read_text(), "the peer saw the open")
    assert "connection gateway-7 4.0 16384" in output.read_text().splitlines()


async def test_send_times_out_when_the_peer_never_settles(
    outcome_peer: tuple[str, Path], make_client: MakeClient
) -> None:
    url, _ = outcome_peer
    client = await make_client(url)
    started = time.monotonic()
    with pytest.raises(SendTimeout, match="'ignore' was sent, and .* within 0.5 s"):
        await client.send("ignore", Message(body="x"), timeout=0.5)
    assert 0.45 <= time.monotonic() - started < 5
    # The connection is still good for everyone else.
    assert (await client.send("accept", Message(body="y"), timeout=RUN_TIMEOUT)).accepted


async def test_a_sender_the_peer_detached_is_replaced_on_next_use(
    outcome_peer: tuple[str, Path], make_client: MakeClient
) -> None:
    url, output = outcome_peer
    client = await make_client(url)
    for _ in range(3):
        assert (await client.send("detach", Message(body="x"), timeout=RUN_TIMEOUT)).accepted
        await eventually(lambda: client.cached_senders == 0, "the peer's detach arrives")
    assert output.read_text().splitlines().count("attached detach") == 3


async def test_the_sender_cache_is_bounded_least_recently_used_first(
    broker: EmbeddedBroker, make_client: MakeClient
) -> None:
    client = await make_client(broker.url, max_senders=3)
    for address in ["a", "b", "c", "a", "d", "e"]:  # "b" and "c" are used least recently
        assert (await client.send(address, Message(body=address), timeout=RUN_TIMEOUT)).accepted
    assert client.cached_senders == 3
    await eventually(
        lambda: {a for a, s in broker.stats().items() if s.producers} == {"a", "d", "e"},
        "the broker sees only the cached senders attached",
    )
    # Sending twice to a cached address uses the same link.
    assert (await client.send("a", Message(body="again"), timeout=RUN_TIMEOUT)).accepted
    assert broker.stats()["a"].producers == 1


async def test_presettled_sends_need_no_outcome(
    broker: EmbeddedBroker, make_client: MakeClient
) -> None:
    client = await make_client(broker.url)
    for n in range(5):
        await client.send_presettled("fire-and-forget", Message(body=n), timeout=RUN_TIMEOUT)
    await eventually(lambda: broker.stats()["fire-and-forget"].depth == 5, "5 messages queued")


async def test_with_no_broker_every_call_fails_at_once(make_client: MakeClient) -> None:
    url = f"amqp://{HOST}:{free_port()}"
    client = await make_client(url, wait=False)
    await asyncio.sleep(0.3)  # a few connect attempts
    assert not client.connected
    for call in (
        client.send("q", Message(body="x"), timeout=30),
        client.send_presettled("q", Message(body="x"), timeout=30),
        client.request("q", Message(body="x"), timeout=30),
        client.open_receiver("q"),
    ):
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=f"not connected to the AMQP broker at {url}"):
            await call
        assert time.monotonic() - started < 0.1


async def test_reconnects_when_the_broker_comes_back(make_client: MakeClient) -> None:
    address = f"{HOST}:{free_port()}"
    first = EmbeddedBroker(BrokerConfig(address=address))
    await first.start()
    client = await make_client(first.url)
    assert (await client.send("q", Message(body=1), timeout=RUN_TIMEOUT)).accepted
    first_reply_address = client.reply_address
    unanswered = asyncio.ensure_future(
        client.request("nobody-home", Message(body="x"), timeout=RUN_TIMEOUT)
    )
    await eventually(lambda: client.pending_requests == 1, "the request is waiting")

    await first.stop()
    await eventually(lambda: not client.connected, "the client sees the broker go")
    # The request was with the broker: a service may have had it.
    with pytest.raises(RequestInDoubt, match="lost the connection"):
        await unanswered
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await client.send("q", Message(body=2), timeout=30)
    assert time.monotonic() - started < 0.1

    second = EmbeddedBroker(BrokerConfig(address=address))
    await second.start()
    try:
        assert await client.wait_connected(START_TIMEOUT), client.last_error
        assert (await client.send("q", Message(body=3), timeout=RUN_TIMEOUT)).accepted
        assert second.stats()["q"].depth == 1
        # A new reply receiver, at a new dynamic address.
        await eventually(lambda: client.reply_address is not None, "a reply address")
        assert client.reply_address != first_reply_address
    finally:
        await second.stop()


async def test_a_send_in_flight_when_the_connection_drops_is_in_doubt_at_once(
    programs: Programs, outcome_peer: tuple[str, Path], make_client: MakeClient
) -> None:
    """The peer had the message and never settled it: not "unavailable" (a retry would
    be safe) but in doubt, with the message's id."""
    url, _ = outcome_peer
    client = await make_client(url)
    message = Message(id="order-1", body="x")
    waiting = asyncio.ensure_future(client.send("ignore", message, timeout=60))
    await asyncio.sleep(0.3)
    await programs.stop_all()  # the peer goes
    started = time.monotonic()
    with pytest.raises(SendInDoubt, match="may or may not have been delivered") as caught:
        await waiting
    assert not isinstance(caught.value, BrokerUnavailable)
    assert caught.value.message_id == "order-1"
    assert time.monotonic() - started < 5


async def test_sasl_plain_credentials_come_from_the_url(make_client: MakeClient) -> None:
    port = free_port()

    class Sink(MessagingHandler):
        def on_start(self, event: Any) -> None:
            event.container.listen(
                f"{HOST}:{port}",
                authenticator=lambda user, password: (user, password) == ("alice", "s3cret"),
                allow_anonymous=False,
                require_sasl=True,
            )

    container = Container(Sink())
    container.start()
    try:
        client = await make_client(f"amqp://alice:s3cret@{HOST}:{port}")
        assert (await client.send("q", Message(body="x"), timeout=RUN_TIMEOUT)).accepted
        wrong = await make_client(f"amqp://alice:wrong@{HOST}:{port}", wait=False)
        await asyncio.sleep(0.5)
        assert not wrong.connected
        with pytest.raises(BrokerUnavailable) as refused:
            await wrong.send("q", Message(body="x"))
        assert "****" in str(refused.value) and "wrong" not in str(refused.value)
    finally:
        container.stop()


async def test_amqps_connects_with_tls(certificates: Any, make_client: MakeClient) -> None:
    port = free_port()
    server_tls = SSLDomain(SSLDomain.MODE_SERVER)
    server_tls.set_credentials(str(certificates.server_cert), str(certificates.server_key), None)

    class Sink(MessagingHandler):
        def on_start(self, event: Any) -> None:
            event.container.listen(f"{HOST}:{port}", ssl_domain=server_tls)

    client_tls = SSLDomain(SSLDomain.MODE_CLIENT)
    client_tls.set_trusted_ca_db(str(certificates.ca))
    container = Container(Sink())
    container.start()
    try:
        client = await make_client(f"amqps://{HOST}:{port}", ssl_domain=client_tls)
        assert (await client.send("q", Message(body="x"), timeout=RUN_TIMEOUT)).accepted
    finally:
        container.stop()


# -- request/response ---------------------------------------------------------------------


async def test_request_through_the_embedded_broker_to_the_tutorial_server(
    broker: EmbeddedBroker, make_client: MakeClient, programs: Programs
) -> None:
    client = await make_client(broker.url)
    await programs.start(REPO / "examples" / "server.py", "-a", f"{HOST}:{broker.port}/examples")
    await eventually(
        lambda: "examples" in broker.stats() and broker.stats()["examples"].consumers > 0,
        "server.py receives from examples",
        START_TIMEOUT,
    )
    reply = await client.request("examples", Message(body="Twas brillig"), timeout=RUN_TIMEOUT)
    assert reply.body == "TWAS BRILLIG"
    assert client.reply_address_is_dynamic
    assert client.pending_requests == 0


async def test_request_straight_to_protons_server_direct(
    make_client: MakeClient, programs: Programs, proton_examples: Path
) -> None:
    port = free_port()
    source = (proton_examples / "server_direct.py").read_text()
    assert "0.0.0.0:8888" in source
    script = programs.script("server_direct", source.replace("0.0.0.0:8888", f"{HOST}:{port}"))
    await programs.start_server(port, script)
    client = await make_client(f"amqp://{HOST}:{port}")
    reply = await client.request("examples", Message(body="Twas brillig"), timeout=RUN_TIMEOUT)
    assert reply.body == "TWAS BRILLIG"


async def test_a_thousand_concurrent_requests_share_one_reply_receiver(
    broker: EmbeddedBroker, make_client: MakeClient, programs: Programs
) -> None:
    count = 1000
    client = await make_client(broker.url)
    script = programs.script("shuffling_server", SHUFFLING_SERVER)
    await programs.start(script, f"{HOST}:{broker.port}", "shuffle", str(count))
    await eventually(
        lambda: "shuffle" in broker.stats() and broker.stats()["shuffle"].consumers > 0,
        "the shuffling server receives",
        START_TIMEOUT,
    )
    answered: list[int] = []

    async def ask(n: int) -> Any:
        reply = await client.request("shuffle", Message(body=f"request {n}"), timeout=60)
        answered.append(n)
        return reply.body

    bodies = await asyncio.gather(*(ask(n) for n in range(count)))
    assert bodies == [f"REQUEST {n}" for n in range(count)]
    assert answered != sorted(answered)  # replies came out of order
    assert client.pending_requests == 0
    # One reply receiver for them all: one consumer on the broker besides the server's.
    assert broker.stats()[client.reply_address].consumers == 1  # type: ignore[index]


async def test_unknown_or_late_replies_are_dropped_with_a_log_line(
    broker: EmbeddedBroker, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(broker.url)
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="no reply from 'nobody-home' within 0.3 s"):
        await client.request("nobody-home", Message(body="hello?"), timeout=0.3)
    assert time.monotonic() - started < 5
    assert client.pending_requests == 0

    stray = await aio.connect(broker.url)
    try:
        sender = await stray.open_sender(client.reply_address)
        with caplog.at_level(logging.INFO, logger="gateway.amqp"):
            outcome = await sender.send(Message(body="stray", correlation_id="nobody-asked"))
            await eventually(lambda: "'nobody-asked'" in caplog.text, "the drop is logged")
        assert outcome.accepted  # accepted and dropped, not left on the broker
    finally:
        await stray.close()


class NoDynamicBroker(Broker):
    """The embedded broker refusing dynamic receivers as the spec has it: an attach
    answered with no source, then a detach with amqp:not-implemented. (RabbitMQ ends
    the whole session instead: see the RabbitMQ test.)"""

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender and link.remote_source.dynamic:
            link.condition = Condition("amqp:not-implemented", "Dynamic sources not supported")
            link.open()
            link.close()
            return
        super().on_link_opening(event)


async def test_a_named_reply_queue_when_dynamic_receivers_are_refused(
    make_client: MakeClient, programs: Programs, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    container = Container(NoDynamicBroker(BrokerConfig(address=f"{HOST}:{port}")))
    container.start()
    try:
        with caplog.at_level(logging.INFO, logger="gateway.amqp"):
            client = await make_client(f"amqp://{HOST}:{port}")
            await eventually(lambda: client.reply_address is not None, "a reply address")
        assert not client.reply_address_is_dynamic
        assert client.reply_address.startswith("gateway-replies-")  # type: ignore[union-attr]
        assert "refused a dynamic reply receiver (amqp:not-implemented" in caplog.text
        await programs.start(REPO / "examples" / "server.py", "-a", f"{HOST}:{port}/examples")
        for _ in range(200):  # until server.py has attached
            try:
                reply = await client.request("examples", Message(body="Twas brillig"), timeout=0.2)
                break
            except RequestTimeout:
                continue
        assert reply.body == "TWAS BRILLIG"
        # The refusal ended only the reply receiver's session: sends go on.
        assert (await client.send("q", Message(body="x"), timeout=RUN_TIMEOUT)).accepted
    finally:
        container.stop()


async def answer_requests(connection: aio.AsyncConnection, receiver: aio.AsyncReceiver) -> None:
    """A request/response service on RabbitMQ, which has no ANONYMOUS-RELAY: a sender
    per reply address."""
    senders: dict[str, aio.AsyncSender] = {}
    async for received in receiver:
        request = received.message
        reply_to = str(request.reply_to)
        if reply_to not in senders:
            senders[reply_to] = await connection.open_sender(reply_to)
        reply = Message(body=request.body.upper(), correlation_id=request.correlation_id)
        await senders[reply_to].send(reply, timeout=RUN_TIMEOUT)
        received.accept()


async def test_rabbitmq_gets_a_named_reply_queue(
    rabbitmq: RabbitMQ, make_client: MakeClient
) -> None:
    client = await make_client(rabbitmq.url)
    await eventually(lambda: client.reply_address is not None, "a reply address")
    assert not client.reply_address_is_dynamic
    service = await aio.connect(rabbitmq.url)
    # Attached before the first request: it declares the queue, and RabbitMQ drops
    # (and accepts) what is sent to a queue that does not exist.
    requests = await service.open_receiver("gateway-test-requests", credit=10)
    answering = asyncio.ensure_future(answer_requests(service, requests))
    try:
        replies = await asyncio.gather(
            *(
                client.request(
                    "gateway-test-requests", Message(body=f"twas {n}"), timeout=RUN_TIMEOUT
                )
                for n in range(20)
            )
        )
        assert [reply.body for reply in replies] == [f"TWAS {n}" for n in range(20)]
        # RabbitMQ refuses an address by ending the session: the sender's, and not
        # the reply receiver's, which has its own.
        with pytest.raises(AddressRefused) as refused:
            await client.send("/exchange/no-such-exchange/key", Message(body="x"), timeout=30)
        assert refused.value.condition is not None
        assert refused.value.condition.name == "amqp:not-found"
        with pytest.raises(AddressRefused, match="amqp:not-found"):
            await client.open_receiver("/amq/queue/no-such-queue")
        assert (await client.send("/queue/gateway-test-other", Message(body="y"))).accepted
        reply = await client.request(
            "gateway-test-requests", Message(body="still"), timeout=RUN_TIMEOUT
        )
        assert reply.body == "STILL"
    finally:
        answering.cancel()
        await service.close()


async def rabbit_streams(client: AmqpClient, count: int) -> tuple[list[str], list[Any]]:
    """`count` streams from fresh RabbitMQ queues, sharing the client's sessions."""
    addresses = [f"/queue/gateway-shared-{uuid4().hex[:8]}" for _ in range(count)]
    return addresses, [await client.open_receiver(address) for address in addresses]


async def test_on_rabbitmq_a_bad_address_tried_alone_ends_no_one_elses_stream(
    rabbitmq: RabbitMQ, make_client: MakeClient
) -> None:
    """RabbitMQ ends a whole session over an attach to a missing queue: the gateway
    tries each address on a session of its own first, so that the streams sharing a
    session with the new one never see it."""
    client = await make_client(rabbitmq.url)
    addresses, streams = await rabbit_streams(client, 3)
    with pytest.raises(AddressRefused, match="amqp:not-found"):
        await client.open_receiver("/amq/queue/no-such-queue")
    for address in addresses:
        assert (await client.send(address, Message(body=address))).accepted
    for address, stream in zip(addresses, streams, strict=True):
        received = await stream.receive(timeout=RUN_TIMEOUT)
        assert received.message.body == address
        received.accept()


async def test_on_rabbitmq_the_streams_of_a_session_it_ended_are_told_and_open_again(
    rabbitmq: RabbitMQ, make_client: MakeClient
) -> None:
    """Without trying addresses alone, the same bad attach ends the session its
    neighbours share: each of them ends with StreamInterrupted (not AddressRefused: the
    address was not theirs), and opened again it gets its messages."""
    client = await make_client(rabbitmq.url, probe_addresses=False)
    addresses, streams = await rabbit_streams(client, 3)
    with pytest.raises(AddressRefused, match="amqp:not-found"):
        await client.open_receiver("/amq/queue/no-such-queue")
    for stream in streams:
        with pytest.raises(StreamInterrupted, match="open the stream again"):
            await stream.receive(timeout=RUN_TIMEOUT)
        await stream.close()
    for address in addresses:
        again = await client.open_receiver(address)
        assert (await client.send(address, Message(body="again"))).accepted
        received = await again.receive(timeout=RUN_TIMEOUT)
        assert received.message.body == "again"
        received.accept()


# -- streams ------------------------------------------------------------------------------


async def test_a_stream_never_holds_more_than_its_credit(
    broker: EmbeddedBroker, make_client: MakeClient
) -> None:
    client = await make_client(broker.url)
    await fill(client, "stream-q", 50)
    stream = await client.open_receiver("stream-q", credit=5)
    held = [await stream.receive(timeout=RUN_TIMEOUT) for _ in range(5)]
    assert stream.unsettled == 5 and stream.in_flight == 5
    with pytest.raises(TimeoutError):
        await stream.receive(timeout=0.5)  # a slow client holds back the broker

    bodies = [received.message.body["n"] for received in held]
    most_in_flight = 0
    while len(bodies) < 50:
        held.pop(0).accept()  # settling the oldest lets exactly one more in
        received = await stream.receive(timeout=RUN_TIMEOUT)
        held.append(received)
        bodies.append(received.message.body["n"])
        most_in_flight = max(most_in_flight, stream.in_flight)
    assert most_in_flight <= 5
    assert sorted(bodies) == list(range(50))
    for received in held:
        stream.settle(received.id, "accepted")
    with pytest.raises(UnknownMessageId):
        stream.settle(held[0].id)
    await stream.close()
    await eventually(lambda: broker.stats()["stream-q"].depth == 0, "all 50 accepted")


async def test_closing_a_stream_releases_what_its_client_did_not_settle(
    broker: EmbeddedBroker, make_client: MakeClient
) -> None:
    client = await make_client(broker.url)
    await fill(client, "release-q", 50)
    first = await client.open_receiver("release-q", credit=5)
    received = [await first.receive(timeout=RUN_TIMEOUT) for _ in range(5)]
    received[0].accept()
    received[1].reject()  # to the dead-letter queue
    await first.close()  # the other three go back

    second = await client.open_receiver("release-q", credit=50)
    bodies = []
    for _ in range(48):
        message = await second.receive(timeout=RUN_TIMEOUT)
        bodies.append(message.message.body["n"])
        message.accept()
    assert sorted(bodies) == sorted(
        set(range(50)) - {received[0].message.body["n"], received[1].message.body["n"]}
    )
    with pytest.raises(TimeoutError):
        await second.receive(timeout=0.3)
    await second.close()


async def test_streams_share_sessions_and_the_last_one_that_fits_is_refused_at_once(
    broker: EmbeddedBroker, make_client: MakeClient
) -> None:
    """Streams fill sessions of `links_per_session` links; once the connection's
    channels are all used (channel-max 255, less those kept for the senders, the
    replies and the probes), one more stream is refused at once (503), not queued.
    A stream closed makes room again, and sessions left empty are ended."""
    client = await make_client(broker.url, links_per_session=2)
    channels = 255 + 1 - OTHER_SESSIONS
    streams = [await client.open_receiver(f"full-{n}") for n in range(2 * channels)]
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="as many streams as its AMQP connection"):
        await client.open_receiver("one-too-many")
    assert time.monotonic() - started < 1.0
    await streams.pop().close()
    extra = await client.open_receiver("fits-again")
    await fill(client, "fits-again", 1)
    received = await extra.receive(timeout=RUN_TIMEOUT)
    received.accept()
    for stream in [*streams, extra]:
        await stream.close()
    connection = client._connection
    assert connection is not None
    await eventually(
        lambda: len(connection.connection.sessions()) <= 3,
        "the empty sessions ended (the senders', the replies' and one with room are left)",
    )


async def test_streams_with_a_selector_and_browsing(
    broker: EmbeddedBroker, make_client: MakeClient
) -> None:
    client = await make_client(broker.url)
    for n, colour in enumerate(["red", "green", "blue", "green"]):
        message = Message(body=n, properties={"colour": colour})
        assert (await client.send("colours", message, timeout=RUN_TIMEOUT)).accepted

    browser = await client.open_receiver("colours", browse=True, credit=10)
    browsed = [(await browser.receive(timeout=RUN_TIMEOUT)).message.body for _ in range(4)]
    await browser.close()
    assert browsed == [0, 1, 2, 3]
    assert broker.stats()["colours"].depth == 4  # browsing leaves them there

    greens = await client.open_receiver("colours", selector="colour = 'green'", credit=10)
    picked = []
    for _ in range(2):
        green = await greens.receive(timeout=RUN_TIMEOUT)
        picked.append(green.message.body)
        green.accept()
    with pytest.raises(TimeoutError):
        await greens.receive(timeout=0.3)
    assert picked == [1, 3]
    await greens.close()

    with pytest.raises(AddressRefused, match="amqp:invalid-field"):
        await client.open_receiver("colours", selector="colour = = 'green'")


# -- closing ------------------------------------------------------------------------------


async def test_close_lets_sends_in_flight_finish_and_releases_streams(
    broker: EmbeddedBroker, make_client: MakeClient
) -> None:
    client = await make_client(broker.url)
    await fill(client, "held", 3)
    stream = await client.open_receiver("held", credit=3)
    for _ in range(3):
        await stream.receive(timeout=RUN_TIMEOUT)
    sends = [
        asyncio.ensure_future(client.send("late", Message(body=n), timeout=RUN_TIMEOUT))
        for n in range(100)
    ]
    await asyncio.sleep(0)  # they are under way
    await client.close(grace=RUN_TIMEOUT)
    assert [(await send).name for send in sends] == ["accepted"] * 100
    assert broker.stats()["late"].depth == 100
    assert broker.stats()["held"].depth == 3 and broker.stats()["held"].consumers == 0
    with pytest.raises(BrokerUnavailable, match="shutting down"):
        await client.send("late", Message(body="too late"))
