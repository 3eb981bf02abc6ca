"""The Container's own behaviour: timers, IPv6, running inside an asyncio loop, handler
errors, link options on the wire, and reconnecting with the tutorial's at-least-once
resend. Both ends are amqp_core here; tests against other peers live elsewhere."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from processes import free_port, wait_for_port

from amqp_core import Message
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Backoff, Container, Copy, Selector

ROOT = Path(__file__).resolve().parent.parent


class Echo(MessagingHandler):
    """Listens and records what arrives, the source filters asked for, and timers."""

    def __init__(self, url: str, expected: int) -> None:
        super().__init__()
        self.url = url
        self.expected = expected
        self.bodies: list[Any] = []
        self.filters: list[Any] = []

    def on_start(self, event: Any) -> None:
        self.acceptor = event.container.listen(self.url)

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            self.filters.append(link.remote_source.filter.get_object())
            self.filters.append(link.remote_source.distribution_mode)
            link.source.copy(link.remote_source)
        else:
            link.target.copy(link.remote_target)

    def on_message(self, event: Any) -> None:
        self.bodies.append(event.message.body)
        if len(self.bodies) == self.expected:
            event.connection.close()
            self.acceptor.close()


def test_schedule_runs_timer_tasks_in_order() -> None:
    fired: list[str] = []

    class Timers(MessagingHandler):
        def on_start(self, event: Any) -> None:
            event.container.schedule(0.2, Tick("late"))
            event.container.schedule(0.05, Tick("early"))
            event.container.schedule(0.1, Tick("cancelled")).cancel()

    class Tick:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_timer_task(self, event: Any) -> None:
            fired.append(self.name)
            assert event.container is not None

    started = time.monotonic()
    Container(Timers()).run()
    assert fired == ["early", "late"]
    assert 0.2 <= time.monotonic() - started < 5


def test_send_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 support")
    port = free_port(socket.AF_INET6)
    url = f"[::1]:{port}/examples"
    receiver = Echo(url, expected=3)

    class Sender(MessagingHandler):
        def on_start(self, event: Any) -> None:
            event.container.create_sender(url)

        def on_sendable(self, event: Any) -> None:
            for n in range(3):
                event.sender.send(Message(body=n))
            event.sender.close()

        def on_accepted(self, event: Any) -> None:
            pass

    Container(receiver, Sender()).run()
    assert receiver.bodies == [0, 1, 2]


def test_receiver_options_reach_the_peer() -> None:
    port = free_port()
    url = f"127.0.0.1:{port}"
    peer = Echo(url, expected=0)

    class Browser(MessagingHandler):
        def on_start(self, event: Any) -> None:
            event.container.create_receiver(
                f"{url}/q", options=[Selector("colour = 'green'"), Copy()]
            )

        def on_link_opened(self, event: Any) -> None:
            event.connection.close()
            peer.acceptor.close()

    Container(peer, Browser()).run()
    selector_filter, distribution_mode = peer.filters
    (descriptor_value,) = selector_filter.values()
    assert descriptor_value.descriptor == "apache.org:selector-filter:string"
    assert descriptor_value.value == "colour = 'green'"
    assert distribution_mode == 1  # Terminus.DIST_MODE_COPY


def test_handler_exception_propagates_from_run() -> None:
    class Broken(MessagingHandler):
        def on_start(self, event: Any) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Container(Broken()).run()


def test_container_starts_inside_a_running_loop() -> None:
    port = free_port()
    url = f"127.0.0.1:{port}/examples"

    async def main() -> list[Any]:
        receiver = Echo(url, expected=2)
        container = Container(receiver)
        container.start()  # returns at once: the loop keeps running our coroutine
        ticks = 0

        class Sender(MessagingHandler):
            def on_sendable(self, event: Any) -> None:
                event.sender.send(Message(body="a"))
                event.sender.send(Message(body="b"))
                event.sender.close()

        container.create_sender(url, handler=Sender())
        while len(receiver.bodies) < 2:
            ticks += 1
            await asyncio.sleep(0.01)
            assert ticks < 500, "messages did not arrive"
        container.stop()
        await container.wait()
        return receiver.bodies

    assert asyncio.run(main()) == ["a", "b"]
    with pytest.raises(RuntimeError, match="start"):
        asyncio.run(_run_inside_loop())


async def _run_inside_loop() -> None:
    Container(MessagingHandler()).run()


def test_reconnect_resends_in_doubt_messages(tmp_path: Path) -> None:
    """The tutorial's simple_send with reconnect on: the listener dies after 5 messages
    (without settling them) and comes back; every message is then confirmed."""
    port = free_port()
    receiver_script = tmp_path / "receiver.py"
    receiver_script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            from amqp_core.handlers import MessagingHandler
            from amqp_core.reactor import Container

            die_after = int(sys.argv[1])

            class Receiver(MessagingHandler):
                def __init__(self):
                    super().__init__(auto_accept=die_after == 0)
                    self.count = 0

                def on_start(self, event):
                    self.acceptor = event.container.listen("127.0.0.1:{port}")

                def on_message(self, event):
                    self.count += 1
                    print(event.message.body["sequence"], flush=True)
                    if die_after and self.count == die_after:
                        os._exit(3)
                    if self.count == 20:
                        event.connection.close()
                        self.acceptor.close()

            Container(Receiver()).run()
            """
        )
    )
    sender_script = tmp_path / "sender.py"
    sender_script.write_text(
        textwrap.dedent(
            f"""
            from amqp_core import Message
            from amqp_core.handlers import MessagingHandler
            from amqp_core.reactor import Backoff, Container

            class Send(MessagingHandler):
                def __init__(self):
                    super().__init__()
                    self.sent = self.confirmed = self.disconnects = 0

                def on_start(self, event):
                    event.container.connect(
                        "127.0.0.1:{port}", reconnect=Backoff(initial=0.1, max_delay=0.5)
                    )

                def on_connection_opened(self, event):
                    event.container.create_sender(event.connection, "examples")

                def on_sendable(self, event):
                    while event.sender.credit and self.sent < 20:
                        self.sent += 1
                        event.sender.send(Message(id=self.sent, body={{"sequence": self.sent}}))

                def on_accepted(self, event):
                    self.confirmed += 1
                    if self.confirmed == 20:
                        print("all messages confirmed after", self.disconnects, "disconnect(s)")
                        event.connection.close()

                def on_disconnected(self, event):
                    self.disconnects += 1
                    self.sent = self.confirmed

            Container(Send()).run()
            """
        )
    )
    first = subprocess.Popen(
        [sys.executable, str(receiver_script), "5"], stdout=subprocess.PIPE, text=True
    )
    sender = None
    second = None
    try:
        wait_for_port(port)
        sender = subprocess.Popen(
            [sys.executable, str(sender_script)], stdout=subprocess.PIPE, text=True
        )
        assert first.wait(timeout=30) == 3
        second = subprocess.Popen(
            [sys.executable, str(receiver_script), "0"], stdout=subprocess.PIPE, text=True
        )
        sender_out, _ = sender.communicate(timeout=30)
        second_out, _ = second.communicate(timeout=30)
    finally:
        for process in (first, sender, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    # Every failed attempt to reach the restarting listener is a disconnect too.
    disconnects = int(sender_out.split("after")[1].split()[0])
    assert disconnects >= 1, sender_out
    assert [int(line) for line in second_out.split()] == list(range(1, 21))


def test_backoff_is_protons_default() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(9)] == [0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10]


def _tls_exchange(
    server_domain: Any, client_domain: Any, **connect: Any
) -> tuple[list[Any], list[str]]:
    """One message over amqps:// from our client to our listener; returns what arrived
    and the transport errors each side saw."""
    port = free_port()
    url = f"amqps://127.0.0.1:{port}"
    errors: list[str] = []

    class Listener(Echo):
        def on_start(self, event: Any) -> None:
            self.acceptor = event.container.listen(url, ssl_domain=server_domain)

        def on_transport_error(self, event: Any) -> None:
            if event.connection is not client.connection:
                errors.append(f"server: {event.transport.condition}")

    class Client(MessagingHandler):
        def on_start(self, event: Any) -> None:
            self.connection = event.container.connect(
                url, ssl_domain=client_domain, reconnect=False, **connect
            )

        def on_connection_opened(self, event: Any) -> None:
            # Both handlers see every event of the container: act on our own end only.
            if event.connection is self.connection:
                event.container.create_sender(event.connection, "examples")

        def on_sendable(self, event: Any) -> None:
            event.sender.send(Message(body="secret"))
            event.sender.close()

        def on_transport_error(self, event: Any) -> None:
            if event.connection is self.connection:
                errors.append(f"client: {event.transport.condition}")
                event.container.stop()

        def on_connection_closed(self, event: Any) -> None:
            if event.connection is self.connection:
                self.safety_timer.cancel()  # done: the container may end by itself

    listener = Listener(url, expected=1)
    client = Client()
    container = Container(listener, client)
    client.safety_timer = container.schedule(10, _Stopper(container))
    container.run()
    return listener.bodies, errors


class _Stopper:
    def __init__(self, container: Container) -> None:
        self.container = container

    def on_timer_task(self, event: Any) -> None:
        self.container.stop()


def test_tls_with_client_certificates(certificates: Any) -> None:
    from amqp_core import SSLDomain

    server = SSLDomain(SSLDomain.MODE_SERVER)
    server.set_credentials(str(certificates.server_cert), str(certificates.server_key), None)
    server.set_trusted_ca_db(str(certificates.ca))
    server.set_peer_authentication(SSLDomain.VERIFY_PEER, str(certificates.ca))

    client = SSLDomain(SSLDomain.MODE_CLIENT)
    client.set_trusted_ca_db(str(certificates.ca))
    client.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    client.set_credentials(str(certificates.client_cert), str(certificates.client_key), None)
    bodies, errors = _tls_exchange(server, client, sni="localhost")
    assert (bodies, errors) == (["secret"], [])

    anonymous = SSLDomain(SSLDomain.MODE_CLIENT)
    anonymous.set_trusted_ca_db(str(certificates.ca))
    anonymous.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    bodies, errors = _tls_exchange(server, anonymous, sni="localhost")
    assert bodies == []
    assert any(error.startswith("client:") for error in errors), errors


def test_tls_checks_the_server_name(certificates: Any) -> None:
    from amqp_core import SSLDomain

    server = SSLDomain(SSLDomain.MODE_SERVER)
    server.set_credentials(str(certificates.server_cert), str(certificates.server_key), None)
    client = SSLDomain(SSLDomain.MODE_CLIENT)
    client.set_trusted_ca_db(str(certificates.ca))
    client.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    bodies, errors = _tls_exchange(server, client, sni="not-the-server")
    assert bodies == []
    assert any("certificate" in error.lower() for error in errors), errors


def test_connect_fails_over_across_urls() -> None:
    live = free_port()
    dead = free_port()
    receiver = Echo(f"127.0.0.1:{live}", expected=1)

    class Sender(MessagingHandler):
        def on_start(self, event: Any) -> None:
            connection = event.container.connect(
                urls=[f"127.0.0.1:{dead}", f"127.0.0.1:{live}"],
                reconnect=Backoff(initial=0.05, max_delay=0.2),
            )
            event.container.create_sender(connection, "examples")

        def on_sendable(self, event: Any) -> None:
            event.sender.send(Message(body="found you"))
            event.sender.close()

    Container(receiver, Sender()).run()
    assert receiver.bodies == ["found you"]


def test_a_message_that_cannot_be_decoded_is_rejected_and_the_connection_goes_on() -> None:
    """A peer's malformed message is rejected with amqp:decode-error; the receiver's
    connection and link go on to the next message (it used to fail the connection)."""
    port = free_port()
    outcomes: list[tuple[str, Any]] = []

    class Receiver(Echo):
        def on_connection_error(self, event: Any) -> None:
            outcomes.append(("connection error", event.connection.remote_condition))

    class RawSender(MessagingHandler):
        def on_start(self, event: Any) -> None:
            event.container.create_sender(f"127.0.0.1:{port}/q")

        def on_sendable(self, event: Any) -> None:
            sender = event.sender
            if sender.delivery_count == 0:
                sender.delivery(sender.delivery_tag())
                sender.stream(b"\x00Sw\xa3\x02\xff\xfe")  # a symbol that is not UTF-8
                sender.advance()
                sender.send(Message(body="after"))

        def on_rejected(self, event: Any) -> None:
            outcomes.append(("rejected", event.delivery.remote.condition.name))

        def on_accepted(self, event: Any) -> None:
            outcomes.append(("accepted", None))

    receiver = Receiver(f"127.0.0.1:{port}", expected=1)
    container = Container(receiver, RawSender())
    container.run()
    assert receiver.bodies == ["after"]
    assert outcomes[:2] == [("rejected", "amqp:decode-error"), ("accepted", None)], outcomes
