"""End to end: the gateway's operations side, and the tutorial's programs meeting HTTP
clients on the same addresses.

/healthz, /readyz, /metrics and CORS against one gateway (a subprocess with its embedded
broker, --cors-origins given as a flag); CORS from the environment; graceful shutdown
(SIGTERM) of a gateway in front of a separate broker process, so that what it released
can be seen after it is gone.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import (
    CALL_TIMEOUT,
    GatewayServer,
    Program,
    amqp_broker,
    browse,
    example,
    proton_connection,
    receive,
    unique,
)
from proton import Message
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ORIGIN = "http://example.com"
POST_ROUTE = 'method="POST",route="/messages/{address:path}",status="201"'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("ops")
    with GatewayServer(folder, "--cors-origins", json.dumps([ORIGIN])) as server:
        yield server


def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.05)


# -- health -------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_200_while_connected(gateway: GatewayServer) -> None:
    health = gateway.http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


# -- metrics ------------------------------------------------------------------------------


def test_metrics_count_posts_by_route_and_status(gateway: GatewayServer) -> None:
    key = f"gateway_http_requests_total{{{POST_ROUTE}}}"
    before = gateway.metrics().get(key, 0.0)
    for number in range(3):
        answer = gateway.post(unique("counted"), {"sequence": number})
        assert answer.status_code == 201, answer.text
    answer = gateway.http.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    assert "# TYPE gateway_http_requests_total counter" in answer.text
    after = gateway.metrics()
    assert after[key] == before + 3
    # Labelled by the route's template, never by the address.
    assert not any("counted-" in name for name in after)
    assert after['gateway_amqp_outcomes_total{outcome="accepted",route="messages"}'] >= 3
    assert after["gateway_amqp_connected"] == 1.0


def test_metrics_show_open_websocket_streams(gateway: GatewayServer) -> None:
    key = 'gateway_open_streams{kind="websocket"}'
    before = gateway.metrics().get(key, 0.0)
    url = f"{gateway.ws_url}/streams/{unique('watched')}"
    with connect(url, proxy=None, open_timeout=10, close_timeout=5) as client:
        eventually(lambda: gateway.metrics().get(key) == before + 1, "one more open stream")
        assert client.close_code is None
    eventually(lambda: gateway.metrics().get(key) == before, "the stream counted closed")


# -- CORS ---------------------------------------------------------------------------------


def assert_cors(gateway: GatewayServer) -> None:
    simple = gateway.http.get("/healthz", headers={"Origin": ORIGIN})
    assert simple.status_code == 200
    assert simple.headers.get("access-control-allow-origin") == ORIGIN
    preflight = gateway.http.options(
        f"/messages/{unique('cors')}",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, amqp-subject",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers.get("access-control-allow-origin") == ORIGIN
    assert "POST" in preflight.headers.get("access-control-allow-methods", "")
    assert "amqp-subject" in preflight.headers.get("access-control-allow-headers", "").lower()
    stranger = gateway.http.get("/healthz", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in stranger.headers


def test_cors_origins_from_the_command_line(gateway: GatewayServer) -> None:
    assert_cors(gateway)


def test_cors_origins_from_the_environment(tmp_path: Path) -> None:
    environment = {"GATEWAY_CORS_ORIGINS": json.dumps([ORIGIN])}
    with GatewayServer(tmp_path, env=environment) as gateway:
        assert_cors(gateway)


def test_no_cors_headers_unless_configured(tmp_path: Path) -> None:
    with GatewayServer(tmp_path) as gateway:
        answer = gateway.http.get("/healthz", headers={"Origin": ORIGIN})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


# -- the tutorial's programs and HTTP clients on the same addresses -----------------------


@pytest.mark.parametrize("side", ["ours", "proton"])
def test_the_tutorials_sender_reaches_a_websocket_stream(
    gateway: GatewayServer, tmp_path: Path, proton_examples: Path, side: str
) -> None:
    if side == "ours":
        sender = example("simple_send")
    else:
        sender = [sys.executable, str(proton_examples / "simple_send.py")]
    with connect(
        f"{gateway.ws_url}/streams/examples", proxy=None, open_timeout=10, close_timeout=5
    ) as client:
        command = [*sender, "-a", f"{gateway.amqp}/examples", "-m", "5"]
        with Program(tmp_path, command) as program:
            assert program.wait() == 0, program.output()
            assert program.lines() == ["all messages confirmed"]
        frames = [json.loads(client.recv(timeout=CALL_TIMEOUT)) for _ in range(5)]
    assert [frame["body"] for frame in frames] == [{"sequence": n} for n in range(1, 6)]
    assert [frame["message_id"] for frame in frames] == [1, 2, 3, 4, 5]


# -- graceful shutdown --------------------------------------------------------------------


def test_sigterm_answers_requests_in_flight_and_releases_unacknowledged_messages(
    tmp_path: Path,
) -> None:
    """With the broker in a process of its own (it outlives the gateway): a request/reply
    call in flight when SIGTERM comes still gets its reply, and the messages a WebSocket
    client had not acknowledged go back to the queue."""
    broker, broker_address = amqp_broker(tmp_path)
    with broker, GatewayServer(tmp_path, "--amqp-url", f"amqp://{broker_address}") as gateway:
        streamed = unique("grace-stream")
        service = unique("grace-service")
        for text in ("one", "two", "three"):
            assert gateway.post(streamed, text).status_code == 201
        client = connect(
            f"{gateway.ws_url}/streams/{streamed}?ack=client&credit=5",
            proxy=None,
            open_timeout=10,
            close_timeout=5,
        )
        with client, proton_connection(broker_address) as amqp, ThreadPoolExecutor(1) as pool:
            held = [json.loads(client.recv(timeout=CALL_TIMEOUT)) for _ in range(3)]
            assert [frame["body"] for frame in held] == ["one", "two", "three"]

            requests = amqp.create_receiver(service, credit=1)
            with httpx.Client(base_url=gateway.url, timeout=30, trust_env=False) as http:
                calling = pool.submit(
                    http.post,
                    f"/requests/{service}",
                    content="Twas brillig",
                    headers={"Content-Type": "text/plain", "Request-Timeout": "20"},
                )
                request = requests.receive(timeout=CALL_TIMEOUT)
                requests.accept()
                gateway.terminate()  # SIGTERM while the call waits for its reply
                # The socket is closed at once, and its messages released: while the call
                # keeps the gateway (and its AMQP connection) up, so they are back in the
                # queue because the gateway released them, not because it went away.
                with pytest.raises(ConnectionClosed):
                    client.recv(timeout=CALL_TIMEOUT)
                assert client.close_code in (1001, 1012), (client.close_code, client.close_reason)
                waiting = [message.body for message in browse(broker_address, streamed)]
                assert waiting == ["one", "two", "three"]
                assert calling.done() is False, "the call ended before its reply came"
                replies = amqp.create_sender(request.reply_to)
                replies.send(
                    Message(
                        address=request.reply_to,
                        body=request.body.upper(),
                        correlation_id=request.correlation_id,
                    )
                )
                answer = calling.result(timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.text == "TWAS BRILLIG"
        # uvicorn re-raises the SIGTERM it caught once it has shut down: -15 is a clean
        # exit too; the log says whether the shutdown ran to its end.
        assert gateway.wait_exited(timeout=20) in (0, -signal.SIGTERM), gateway.log_tail()
        assert "Application shutdown complete" in gateway.log_tail(), gateway.log_tail()
        back = receive(broker_address, streamed, 3)
        assert [message.body for message in back] == ["one", "two", "three"]
