"""End to end: POST /requests/{address} calls an AMQP request/response service.

The services are the tutorial's: examples/server.py (and Proton's server.py) through
the gateway's embedded broker, and examples/server_direct.py (and Proton's) with the
gateway connected straight to them by --amqp-url. All run as subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_fixtures import (
    CALL_TIMEOUT,
    HOST,
    GatewayServer,
    Program,
    assert_problem,
    example,
    proton_connection,
    script,
    timed,
    unique,
)
from processes import free_port, wait_for_port
from proton import Message

#: Requests sent at once in the concurrency test.
CONCURRENT = 200


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with GatewayServer(tmp_path_factory.mktemp("requests")) as server:
        yield server


@pytest.fixture(scope="module")
def tutorial_server(
    gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Program]:
    """examples/server.py serving the address `examples` of the gateway's broker."""
    folder = tmp_path_factory.mktemp("server")
    with Program(folder, example("server", "-a", f"{gateway.amqp}/examples")) as server:
        server.wait_for_line("Listening on")
        yield server


def call(gateway: GatewayServer, address: str, text: str, **headers: str) -> httpx.Response:
    return gateway.http.post(
        f"/requests/{address}",
        content=text,
        headers={"Content-Type": "text/plain", "Request-Timeout": "10", **headers},
    )


def assert_upper_reply(answer: httpx.Response, text: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.text == text.upper()
    assert answer.headers["content-type"].startswith("text/plain")
    # The reply's fields come back as amqp-* headers: server.py sets its correlation id.
    assert answer.headers.get("amqp-correlation-id"), dict(answer.headers)


def test_the_tutorial_server_answers_through_the_embedded_broker(
    gateway: GatewayServer, tutorial_server: Program
) -> None:
    assert_upper_reply(call(gateway, "examples", "Twas brillig"), "Twas brillig")
    tutorial_server.wait_for_line("Received")


def test_protons_server_answers_through_the_embedded_broker(
    gateway: GatewayServer, tmp_path: Path, proton_examples: Path
) -> None:
    address = unique("proton-examples")
    command = [
        sys.executable,
        str(proton_examples / "server.py"),
        "-a",
        f"{gateway.amqp}/{address}",
    ]
    with Program(tmp_path, command) as server:
        server.wait_for_line("Listening on")
        assert_upper_reply(call(gateway, address, "Twas brillig"), "Twas brillig")


def test_the_timeout_query_works_like_the_header(
    gateway: GatewayServer, tutorial_server: Program
) -> None:
    answer = gateway.http.post(
        "/requests/examples",
        params={"timeout": 10},
        content="slithy toves",
        headers={"Content-Type": "text/plain"},
    )
    assert_upper_reply(answer, "slithy toves")


def test_no_responder_is_504_within_the_request_timeout(gateway: GatewayServer) -> None:
    answer, elapsed = timed(
        lambda: call(gateway, unique("nobody"), "hello", **{"Request-Timeout": "1"})
    )
    assert_problem(answer, 504)
    assert 0.9 <= elapsed < 3.5, f"{elapsed:.2f} s for a 1 s timeout"
    answer, elapsed = timed(
        lambda: gateway.http.post(
            f"/requests/{unique('nobody')}",
            params={"timeout": 1},
            content="hello",
            headers={"Content-Type": "text/plain"},
        )
    )
    assert_problem(answer, 504)
    assert 0.9 <= elapsed < 3.5, f"{elapsed:.2f} s for a 1 s timeout"


def test_a_timeout_over_the_maximum_is_400(gateway: GatewayServer) -> None:
    assert_problem(call(gateway, "examples", "x", **{"Request-Timeout": "100000"}), 400)


def test_concurrent_requests_each_get_their_own_reply(
    gateway: GatewayServer, tutorial_server: Program
) -> None:
    async def all_at_once() -> list[tuple[str, httpx.Response]]:
        limits = httpx.Limits(max_connections=CONCURRENT)
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=60, limits=limits, trust_env=False
        ) as client:

            async def one(number: int) -> tuple[str, httpx.Response]:
                text = f"request number {number}"
                answer = await client.post(
                    "/requests/examples",
                    content=text,
                    headers={"Content-Type": "text/plain", "Request-Timeout": "30"},
                )
                return text, answer

            return await asyncio.gather(*(one(number) for number in range(CONCURRENT)))

    results, elapsed = timed(lambda: asyncio.run(all_at_once()))
    for text, answer in results:
        assert answer.status_code == 200, answer.text
        assert answer.text == text.upper()
    correlation_ids = {answer.headers["amqp-correlation-id"] for _, answer in results}
    assert len(correlation_ids) == CONCURRENT
    assert elapsed < 30


# -- straight to server_direct ------------------------------------------------------------


def server_direct(side: str, folder: Path, proton_examples: Path, port: int) -> list[str]:
    if side == "ours":
        return example("server_direct", "-a", f"{HOST}:{port}")
    text = (proton_examples / "server_direct.py").read_text()
    assert "0.0.0.0:8888" in text, "Proton's server_direct.py no longer listens on 0.0.0.0:8888"
    copy = script(folder, "proton_server_direct", text.replace("0.0.0.0:8888", f"{HOST}:{port}"))
    return [sys.executable, str(copy)]


@pytest.mark.parametrize("side", ["ours", "proton"])
def test_the_gateway_connects_straight_to_server_direct(
    tmp_path: Path, proton_examples: Path, side: str
) -> None:
    port = free_port()
    with Program(tmp_path, server_direct(side, tmp_path, proton_examples, port)) as server:
        wait_for_port(port)
        with GatewayServer(tmp_path, "--amqp-url", f"amqp://{HOST}:{port}") as gateway:
            assert_upper_reply(call(gateway, "examples", "Twas brillig"), "Twas brillig")
            assert_upper_reply(call(gateway, "examples", "Did gyre"), "Did gyre")
        server.wait_for_line("Received")


def test_the_reply_comes_back_with_its_fields_as_headers(gateway: GatewayServer) -> None:
    """A Proton responder answers with a JSON-like map body, a subject, a numeric
    correlation id and application properties: the HTTP answer carries the body as JSON
    and each field as an amqp-* header."""
    address = unique("fields")
    with proton_connection(gateway.amqp) as amqp, ThreadPoolExecutor(1) as pool:
        requests = amqp.create_receiver(address, credit=1)
        calling = pool.submit(call, gateway, address, "what colour?")
        request = requests.receive(timeout=CALL_TIMEOUT)
        requests.accept()
        assert request.body == "what colour?"
        assert request.reply_to and request.correlation_id
        reply = Message(
            address=request.reply_to,
            correlation_id=request.correlation_id,
            subject="the answer",
            properties={"colour": "green", "shade": 5},
            body={"colour": "green", "rgb": [0, 255, 0]},
        )
        amqp.create_sender(request.reply_to).send(reply)
        answer = calling.result(timeout=CALL_TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {"colour": "green", "rgb": [0, 255, 0]}
    assert answer.headers["amqp-subject"] == "the answer"
    assert answer.headers["amqp-correlation-id"] == str(request.correlation_id)
    assert answer.headers["amqp-app-colour"] == "green"
    assert json.loads(answer.headers["amqp-app-shade"]) == 5


# -- replies HTTP cannot carry as they are --------------------------------------------------


def reply_with(gateway: GatewayServer, content_type: str, body: Any) -> httpx.Response:
    """POST /requests to a Proton responder (on the gateway's broker) that answers with
    this content type and body."""
    address = unique("replies")
    with proton_connection(gateway.amqp) as amqp, ThreadPoolExecutor(1) as pool:
        requests = amqp.create_receiver(address, credit=1)
        calling = pool.submit(call, gateway, address, "what type?")
        request = requests.receive(timeout=CALL_TIMEOUT)
        requests.accept()
        reply = Message(
            address=request.reply_to,
            correlation_id=request.correlation_id,
            content_type=content_type,
            body=body,
        )
        amqp.create_sender(request.reply_to).send(reply)
        return calling.result(timeout=CALL_TIMEOUT)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain\r\nX-Injected: yes", "a string"),
        ("application/x-thing\r\nX-Injected: yes", b"some bytes"),
        ("text/plain\nX-Injected: yes", "a string"),
        ("application/x\x7fthing", b"some bytes"),
        # Proton's Message writes it in UTF-8; the broker used to refuse the reply as
        # undecodable, and the caller waited for its 504.
        ("application/t\u00ebxt", b"some bytes"),
    ],
)
def test_a_reply_content_type_http_cannot_carry_is_a_502_problem(
    gateway: GatewayServer, content_type: str, body: Any
) -> None:
    """Any service can send one; HTTP cannot carry it. The caller gets an answer that
    says so (uvicorn used to drop the connection without one, or the caller timed out),
    and no injected header."""
    answer = reply_with(gateway, content_type, body)
    problem = assert_problem(answer, 502)
    assert "content type" in problem["detail"]
    assert "x-injected" not in answer.headers
    assert call(gateway, unique("nobody"), "after", **{"Request-Timeout": "0.2"}).status_code == 504


def test_white_space_around_a_reply_content_type_is_dropped(gateway: GatewayServer) -> None:
    answer = reply_with(gateway, " text/html\r\n", "<p>hi</p>")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.text == "<p>hi</p>"


#: A Proton service listening for the gateway itself (as server_direct.py does), that
#: replies with the request's body and, as its content type, the request's subject; to
#: the subject "undecodable", with bytes that are no AMQP message.
TYPED_REPLIER = """
import sys
import uuid
from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Replier(MessagingHandler):
    def __init__(self, url):
        super().__init__()
        self.url = url
        self.senders = {}

    def on_start(self, event):
        event.container.listen(self.url)

    def on_link_opening(self, event):
        if event.link.is_sender and event.link.remote_source.dynamic:
            event.link.source.address = str(uuid.uuid4())
            self.senders[event.link.source.address] = event.link
        elif event.link.is_sender:
            event.link.source.address = event.link.remote_source.address
        else:
            event.link.target.address = event.link.remote_target.address

    def on_message(self, event):
        request = event.message
        if request.subject == "undecodable":
            sender = self.senders[request.reply_to]
            sender.delivery(str(uuid.uuid4()))
            sender.send(b"\\x00Sw\\xa3\\x02\\xff\\xfe")  # a symbol that is not UTF-8
            sender.advance()
            return
        self.senders[request.reply_to].send(
            Message(
                address=request.reply_to,
                correlation_id=request.correlation_id,
                content_type=request.subject,
                body=request.body,
            )
        )


Container(Replier(sys.argv[1])).run()
"""


def test_a_reply_amqp_core_cannot_decode_costs_the_gateway_nothing_else(tmp_path: Path) -> None:
    """The gateway's reply receiver rejects a reply that is no AMQP message
    (amqp:decode-error) and goes on: its AMQP connection, shared by every client, used to
    be dropped. The caller waits out its Request-Timeout (504): the gateway never got a
    reply it could read, nor its correlation id."""
    port = free_port()
    replier = script(tmp_path, "typed_replier", TYPED_REPLIER)
    with Program(tmp_path, [sys.executable, str(replier), f"{HOST}:{port}"]):
        wait_for_port(port)
        with GatewayServer(tmp_path, "--amqp-url", f"amqp://{HOST}:{port}") as gateway:
            fine = call(gateway, "typed", "first", **{"amqp-subject": "text/plain"})
            assert fine.status_code == 200, fine.text
            odd = call(
                gateway,
                "typed",
                "second",
                **{"amqp-subject": "undecodable", "Request-Timeout": "1"},
            )
            assert_problem(odd, 504)
            again = call(gateway, "typed", "third", **{"amqp-subject": "text/plain"})
            assert again.status_code == 200, again.text
            assert again.text == "third"
            log = gateway.log.read_text(errors="replace")
            assert "lost the connection" not in log, gateway.log_tail()
            assert "cannot be decoded" in log


#: A Proton service listening for the gateway itself, that takes one request and exits
#: without replying: at once, leaving it unsettled ("unsettled"), or once it accepted it
#: ("accepted").
VANISHING_SERVICE = """
import os
import sys
import uuid
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Service(MessagingHandler):
    def __init__(self, url, when):
        super().__init__(auto_accept=False)
        self.url, self.when = url, when

    def on_start(self, event):
        self.container = event.container
        event.container.listen(self.url)

    def on_link_opening(self, event):
        if event.link.is_sender and event.link.remote_source.dynamic:
            event.link.source.address = str(uuid.uuid4())
        elif event.link.is_receiver:
            event.link.target.address = event.link.remote_target.address

    def on_message(self, event):
        print("received", event.message.correlation_id, flush=True)
        if self.when == "unsettled":
            os._exit(3)
        self.accept(event.delivery)
        self.container.schedule(0.3, self)

    def on_timer_task(self, event):
        os._exit(3)


Container(Service(sys.argv[1], sys.argv[2])).run()
"""


@pytest.mark.parametrize("when", ["unsettled", "accepted"])
def test_a_request_whose_service_vanished_is_in_doubt_not_unavailable(
    tmp_path: Path, when: str
) -> None:
    """The service took the request, then its connection was lost before any reply (before
    or after the request was accepted). It may have acted on it: that is the in-doubt
    problem (504), not "broker unavailable" (503, which says nothing was sent)."""
    port = free_port()
    service = script(tmp_path, "vanishing_service", VANISHING_SERVICE)
    with (
        Program(tmp_path, [sys.executable, str(service), f"{HOST}:{port}", when]) as program,
        GatewayServer(tmp_path, "--amqp-url", f"amqp://{HOST}:{port}") as gateway,
    ):
        wait_for_port(port)
        answer = call(gateway, "service", "do it once", **{"amqp-id": "order-1"})
        problem = assert_problem(answer, 504)
        assert problem["type"] == "/problems/in-doubt", problem
        assert problem["message_id"] == "order-1"
        assert "retry-after" not in answer.headers
        program.wait_for_line("received")
