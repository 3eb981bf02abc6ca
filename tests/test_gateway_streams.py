"""End to end: GET /streams/{address} over WebSocket (the `websockets` library) and as
Server-Sent Events (httpx), and the long-poll GET /messages/{address}, through the real
gateway (a subprocess with its embedded broker; one for the module).

The backpressure test runs its own gateway in front of a separate broker process
(`python -m amqp_core.broker`), so that the gateway's memory holds only what the gateway
itself keeps.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from gateway_fixtures import (
    HOST,
    QUIET,
    GatewayServer,
    amqp_broker,
    assert_problem,
    browse,
    produce,
    receive,
    receive_all,
    timed,
    unique,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ENVELOPE = "application/vnd.amqp.message+json"
#: Seconds to wait for one frame or event.
FRAME_TIMEOUT = 10.0
#: The module gateway's --sse-keepalive.
SSE_KEEPALIVE = 0.5


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("streams")
    with GatewayServer(folder, "--sse-keepalive", str(SSE_KEEPALIVE)) as server:
        yield server


@contextmanager
def websocket(
    gateway: GatewayServer, address: str, sock: socket.socket | None = None, **query: Any
) -> Iterator[ClientConnection]:
    url = f"{gateway.ws_url}/streams/{quote(address, safe='')}"
    if query:
        url += "?" + urlencode(query)
    with connect(url, proxy=None, sock=sock, open_timeout=10, close_timeout=5) as client:
        yield client


def frames(client: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` frames, decoded; fail if they do not come in time."""
    result = []
    for _ in range(count):
        try:
            result.append(json.loads(client.recv(timeout=FRAME_TIMEOUT)))
        except TimeoutError:
            raise AssertionError(f"{len(result)} of {count} frames came: {result}") from None
    return result


def assert_quiet(client: ClientConnection, seconds: float = QUIET) -> None:
    try:
        extra = client.recv(timeout=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"an unexpected frame: {extra}")


def post_all(gateway: GatewayServer, address: str, *bodies: Any, **kwargs: Any) -> None:
    for body in bodies:
        answer = gateway.post(address, body, **kwargs)
        assert answer.status_code == 201, answer.text


# -- WebSocket ----------------------------------------------------------------------------


def test_each_message_is_a_json_frame_with_id_body_and_properties(
    gateway: GatewayServer,
) -> None:
    address = unique("frames")
    envelope = {
        "body": {"sequence": 1},
        "id": {"$type": "ulong", "value": 7},
        "subject": "hello",
        "properties": {"colour": "red"},
    }
    answer = gateway.post(address, content=json.dumps(envelope), headers={"Content-Type": ENVELOPE})
    assert answer.status_code == 201, answer.text
    post_all(gateway, address, "just text")
    answer = gateway.post(address, content=b"\x00\xff", headers={"Content-Type": "image/png"})
    assert answer.status_code == 201, answer.text
    with websocket(gateway, address) as client:
        first, second, third = frames(client, 3)
    assert isinstance(first["id"], int)
    assert first["body"] == {"sequence": 1}
    assert first["message_id"] == 7
    assert first["subject"] == "hello"
    assert first["properties"] == {"colour": "red"}
    assert second["body"] == "just text"
    assert len({first["id"], second["id"], third["id"]}) == 3
    assert third["body_encoding"] == "base64"
    assert third["body"] == "AP8="
    assert third["content_type"] == "image/png"
    # ack=auto (the default): taken from the queue.
    assert receive_all(gateway.amqp, address) == []


def test_client_acks_and_never_more_than_the_credit_in_flight(gateway: GatewayServer) -> None:
    address = unique("credit")
    post_all(gateway, address, *[{"n": n} for n in range(5)])
    with websocket(gateway, address, ack="client", credit=2) as client:
        first, second = frames(client, 2)
        assert [first["body"], second["body"]] == [{"n": 0}, {"n": 1}]
        assert_quiet(client)  # two unacknowledged: no third
        client.send(json.dumps({"ack": first["id"]}))
        (third,) = frames(client, 1)
        assert third["body"] == {"n": 2}
        assert_quiet(client)
        client.send(json.dumps({"ack": second["id"]}))
        client.send(json.dumps({"ack": third["id"], "outcome": "accepted"}))
        assert [frame["body"] for frame in frames(client, 2)] == [{"n": 3}, {"n": 4}]
    # The two last were not acknowledged: closing the socket gave them back.
    assert [message.body for message in receive(gateway.amqp, address, 2)] == [
        {"n": 3},
        {"n": 4},
    ]


def test_a_rejected_message_goes_to_the_dead_letter_queue(gateway: GatewayServer) -> None:
    address = unique("reject")
    marker = unique("poison")
    post_all(gateway, address, {"poison": marker})
    with websocket(gateway, address, ack="client") as client:
        (frame,) = frames(client, 1)
        client.send(json.dumps({"ack": frame["id"], "outcome": "rejected"}))
        assert_quiet(client)  # not redelivered
    assert receive_all(gateway.amqp, address) == []
    dead = [message.body for message in receive_all(gateway.amqp, "DLQ")]
    assert {"poison": marker} in dead


def test_a_released_message_is_delivered_again(gateway: GatewayServer) -> None:
    address = unique("release")
    post_all(gateway, address, "again")
    with websocket(gateway, address, ack="client", credit=1) as client:
        (first,) = frames(client, 1)
        client.send(json.dumps({"ack": first["id"], "outcome": "released"}))
        (second,) = frames(client, 1)
        assert second["body"] == "again"
        assert second["id"] != first["id"]
        client.send(json.dumps({"ack": second["id"]}))
        assert_quiet(client)
    assert receive_all(gateway.amqp, address) == []


def test_a_bad_ack_gets_an_error_frame_and_the_stream_goes_on(gateway: GatewayServer) -> None:
    address = unique("badack")
    with websocket(gateway, address, ack="client") as client:
        client.send(json.dumps({"ack": 12345}))
        error = json.loads(client.recv(timeout=FRAME_TIMEOUT))
        assert "error" in error, error
        client.send("not json")
        assert "error" in json.loads(client.recv(timeout=FRAME_TIMEOUT))
        post_all(gateway, address, "still here")
        (frame,) = frames(client, 1)
        assert frame["body"] == "still here"


#: What a hostile or broken client may send instead of an acknowledgement.
NOT_ACKS = {
    "a binary frame": b"\x00\x01 not text",
    "invalid JSON": '{"ack": 1',
    "JSON nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "a huge acknowledgement": json.dumps({"ack": 1, "padding": "x" * 500_000}),
}


@pytest.mark.parametrize("frame", NOT_ACKS.values(), ids=NOT_ACKS)
def test_a_frame_that_is_no_ack_gets_an_error_frame_a_log_line_and_the_stream_goes_on(
    gateway: GatewayServer, frame: str | bytes
) -> None:
    address = unique("notack")
    post_all(gateway, address, "first", "second")
    with websocket(gateway, address, ack="client", credit=1) as client:
        (first,) = frames(client, 1)
        client.send(frame)
        (answer,) = frames(client, 1)
        problem = answer["error"]
        assert problem["status"] == 400, problem
        assert problem["title"] and problem["detail"], problem
        # Acknowledgements still work, and messages keep flowing.
        client.send(json.dumps({"ack": first["id"]}))
        (second,) = frames(client, 1)
        assert second["body"] == "second"
        client.send(json.dumps({"ack": second["id"]}))
        assert_quiet(client)
    assert receive_all(gateway.amqp, address) == []
    assert f"bad acknowledgement on the stream from {address!r}" in gateway.log.read_text()


def test_a_client_sending_only_bad_frames_costs_the_log_one_line(
    gateway: GatewayServer,
) -> None:
    """Each bad frame is answered, but only the stream's first is logged (at the info
    level the gateway runs with): a hostile client cannot flood the log."""
    address = unique("flood")
    with websocket(gateway, address, ack="client") as client:
        for _ in range(200):
            client.send("not json")
        answers = frames(client, 200)
        assert all(answer["error"]["status"] == 400 for answer in answers)
    logged = gateway.log.read_text().count(f"bad acknowledgement on the stream from {address!r}")
    assert logged == 1, logged


def test_a_message_over_the_websocket_size_limit_closes_the_socket_with_1009(
    gateway: GatewayServer,
) -> None:
    with websocket(gateway, unique("toobig"), ack="client") as client:
        client.send("x" * (1024 * 1024 + 1))  # over --max-ws-message
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=FRAME_TIMEOUT)
        assert client.close_code == 1009, (client.close_code, client.close_reason)


#: Bytes of a body per binary frame, at most (README).
BODY_SLICE = 256 * 1024


def binary_message(client: ClientConnection) -> tuple[dict[str, Any], bytes]:
    """The next message of a ?body=binary stream: its JSON frame, and the body that
    comes after it in binary frames (each at most BODY_SLICE bytes)."""
    frame = json.loads(client.recv(timeout=FRAME_TIMEOUT))
    body = b""
    while len(body) < frame.get("body_size", 0):
        part = client.recv(timeout=FRAME_TIMEOUT)
        assert isinstance(part, bytes), part[:100]
        assert 0 < len(part) <= BODY_SLICE, len(part)
        body += part
    assert len(body) == frame.get("body_size", 0)
    return frame, body


def test_binary_mode_sends_a_body_of_bytes_in_binary_frames_after_its_frame(
    gateway: GatewayServer,
) -> None:
    address = unique("binary")
    picture = os.urandom(600_000)
    answer = gateway.post(address, content=picture, headers={"Content-Type": "image/png"})
    assert answer.status_code == 201, answer.text
    post_all(gateway, address, {"n": 1}, "text")
    envelope = {"body": {"$type": "binary", "value": "AP8="}, "inferred": False}
    answer = gateway.post(address, content=json.dumps(envelope), headers={"Content-Type": ENVELOPE})
    assert answer.status_code == 201, answer.text
    empty = gateway.post(address, content=b"", headers={"Content-Type": "image/png"})
    assert empty.status_code == 201, empty.text
    with websocket(gateway, address, body="binary", ack="client", credit=10) as client:
        frame, body = binary_message(client)
        assert frame["body_encoding"] == "binary" and "body" not in frame, frame
        assert frame["content_type"] == "image/png"
        assert frame["body_size"] == len(picture) and body == picture
        # Other bodies stay in their frame, as in JSON mode.
        json_frame, nothing = binary_message(client)
        assert json_frame["body"] == {"n": 1} and nothing == b""
        text_frame, nothing = binary_message(client)
        assert text_frame["body"] == "text" and nothing == b""
        # An amqp-value binary says so, as in JSON mode.
        value_frame, value = binary_message(client)
        assert value_frame["inferred"] is False and value == b"\x00\xff", value_frame
        empty_frame, nothing = binary_message(client)
        assert empty_frame["body_size"] == 0 and nothing == b""
        for acknowledged in (frame, json_frame, text_frame, value_frame, empty_frame):
            client.send(json.dumps({"ack": acknowledged["id"]}))
        assert_quiet(client)
    assert receive_all(gateway.amqp, address) == []


def test_a_50_mb_body_comes_whole_as_binary_frames_and_in_a_json_frame(tmp_path: Path) -> None:
    """One large message (the broker takes up to 64 MiB), POSTed and streamed back, in
    each frame mode (JSON's base64 is made a slice at a time, then joined)."""
    body = os.urandom(50 * 1024 * 1024)
    headers = {"Content-Type": "application/octet-stream"}
    with GatewayServer(tmp_path, "--max-body", str(64 * 1024 * 1024)) as large:
        for mode in ("binary", "json"):
            address = unique(f"large-{mode}")
            answer = large.http.post(f"/messages/{address}", content=body, headers=headers)
            assert answer.status_code == 201, answer.text
            url = f"{large.ws_url}/streams/{address}?body={mode}"
            if mode == "binary":
                # Bounded frames: a client need not accept one as large as the body
                # (compression may add a few bytes to a slice of random bytes).
                with connect(url, proxy=None, open_timeout=10, max_size=2 * BODY_SLICE) as client:
                    frame, received = binary_message(client)
                assert frame["body_size"] == len(body)
            else:
                with connect(url, proxy=None, open_timeout=10, max_size=None) as client:
                    frame = json.loads(client.recv(timeout=FRAME_TIMEOUT))
                assert frame["body_encoding"] == "base64"
                received = base64.b64decode(frame["body"])
            assert received == body, mode


def test_closing_the_socket_releases_unacknowledged_messages_to_another_consumer(
    gateway: GatewayServer,
) -> None:
    address = unique("handover")
    post_all(gateway, address, "a", "b", "c")
    with websocket(gateway, address, ack="client", credit=3) as first_client:
        taken = frames(first_client, 3)
        assert [frame["body"] for frame in taken] == ["a", "b", "c"]
        first_client.send(json.dumps({"ack": taken[0]["id"]}))
        # An acknowledgement is settled before the socket closes: wait until it is
        # handled (a bad ack would answer an error frame here).
        assert_quiet(first_client, 0.3)
    with websocket(gateway, address, ack="client", credit=5) as second_client:
        assert [frame["body"] for frame in frames(second_client, 2)] == ["b", "c"]
        assert_quiet(second_client)


def test_a_selector_picks_the_messages_a_stream_gets(gateway: GatewayServer) -> None:
    address = unique("selected")
    for colour in ("red", "green", "blue", "green"):
        post_all(gateway, address, f"a {colour} one", headers={"amqp-app-colour": colour})
    with websocket(gateway, address, selector="colour = 'green'") as client:
        got = frames(client, 2)
        assert [frame["body"] for frame in got] == ["a green one", "a green one"]
        assert got[0]["properties"] == {"colour": "green"}
        assert_quiet(client)
    rest = receive(gateway.amqp, address, 2)
    assert [message.body for message in rest] == ["a red one", "a blue one"]


def test_browsing_leaves_the_queue_intact(gateway: GatewayServer) -> None:
    address = unique("browsed")
    post_all(gateway, address, "one", "two")
    with websocket(gateway, address, browse="true") as client:
        assert [frame["body"] for frame in frames(client, 2)] == ["one", "two"]
        assert_quiet(client)
    assert [message.body for message in receive(gateway.amqp, address, 2)] == ["one", "two"]


def test_a_bad_selector_is_an_error_frame_and_close_code_1008(gateway: GatewayServer) -> None:
    with websocket(gateway, unique("badselector"), selector="colour = = 'green'") as client:
        error = json.loads(client.recv(timeout=FRAME_TIMEOUT))
        assert "error" in error, error
        assert error["error"]["status"] >= 400
        assert error["error"]["title"]
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=FRAME_TIMEOUT)
        assert client.close_code == 1008, (client.close_code, client.close_reason)


def test_a_credit_over_the_maximum_is_refused(gateway: GatewayServer) -> None:
    with websocket(gateway, unique("greedy"), credit=10**6) as client:
        error = json.loads(client.recv(timeout=FRAME_TIMEOUT))
        assert error["error"]["status"] == 400
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=FRAME_TIMEOUT)
        assert client.close_code == 1008


def test_stream_addresses_may_contain_slashes_and_unicode(gateway: GatewayServer) -> None:
    address = f"/queue/{unique('flüsse')}"
    # %2F-encoded in the WebSocket's path; as a doubled slash in the long-poll's.
    post_all(gateway, address, "by websocket")
    with websocket(gateway, address) as client:
        assert frames(client, 1)[0]["body"] == "by websocket"
    post_all(gateway, address, "by long-poll")
    answer = gateway.http.get(f"/messages/{address}", params={"timeout": 5})
    assert answer.status_code == 200, answer.text
    assert [frame["body"] for frame in answer.json()["messages"]] == ["by long-poll"]


# -- Server-Sent Events -------------------------------------------------------------------


class EventReader:
    """Reads an SSE response: events (id, event, data) and comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()
        self.comments: list[str] = []

    def next_event(self, timeout: float = FRAME_TIMEOUT) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        event: dict[str, str] = {}
        while time.monotonic() < deadline:
            line = next(self.lines)
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif not line:
                if event:
                    return event
            else:
                field, _, value = line.partition(":")
                event[field] = value.removeprefix(" ")
        raise AssertionError(f"no event in {timeout} s (comments: {self.comments})")

    def wait_for_comment(self, text: str, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            line = next(self.lines)
            if line.startswith(":") and line[1:].strip() == text:
                return time.monotonic() - started
            assert not line or line.startswith(":"), f"unexpected line {line!r}"
        raise AssertionError(f"no {text!r} comment in {timeout} s")


@contextmanager
def sse(gateway: GatewayServer, address: str, **query: Any) -> Iterator[EventReader]:
    with gateway.http.stream(
        "GET",
        f"/streams/{quote(address, safe='')}",
        params=query,
        headers={"Accept": "text/event-stream"},
        timeout=httpx.Timeout(FRAME_TIMEOUT),
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventReader(response)


def test_sse_streams_events_with_ids_and_auto_acks(gateway: GatewayServer) -> None:
    address = unique("sse")
    post_all(gateway, address, {"n": 1}, {"n": 2})
    with sse(gateway, address) as events:
        first, second = events.next_event(), events.next_event()
    assert first["event"] == second["event"] == "message"
    assert json.loads(first["data"])["body"] == {"n": 1}
    assert json.loads(second["data"])["body"] == {"n": 2}
    assert first["id"] == str(json.loads(first["data"])["id"])
    assert first["id"] != second["id"]
    assert receive_all(gateway.amqp, address) == []  # auto-ack


def test_sse_sends_keep_alive_comments(gateway: GatewayServer) -> None:
    with sse(gateway, unique("idle")) as events:
        waited = events.wait_for_comment("keep-alive", timeout=SSE_KEEPALIVE * 6)
        assert waited < SSE_KEEPALIVE * 6
        events.wait_for_comment("keep-alive", timeout=SSE_KEEPALIVE * 6)


def test_sse_without_the_accept_header_is_406(gateway: GatewayServer) -> None:
    answer = gateway.http.get(f"/streams/{unique('plain')}", headers={"Accept": "text/html"})
    assert_problem(answer, 406)


def test_an_sse_client_that_goes_away_leaves_nothing_behind(gateway: GatewayServer) -> None:
    """Its receiver is detached: the next message goes to the next consumer, and the
    stream is no longer counted open."""
    address = unique("sse-gone")
    post_all(gateway, address, "first")
    with sse(gateway, address, credit=5) as events:
        assert json.loads(events.next_event()["data"])["body"] == "first"
    key = 'gateway_open_streams{kind="sse"}'
    deadline = time.monotonic() + 10
    while gateway.metrics().get(key) != 0:
        assert time.monotonic() < deadline, "the SSE stream is still counted open"
        time.sleep(0.05)
    post_all(gateway, address, "second")
    answer = gateway.http.get(f"/messages/{address}", params={"timeout": 5})
    assert answer.status_code == 200, answer.text
    assert [frame["body"] for frame in answer.json()["messages"]] == ["second"]


# -- long-poll ----------------------------------------------------------------------------


def test_a_long_poll_takes_up_to_count_messages(gateway: GatewayServer) -> None:
    address = unique("poll")
    post_all(gateway, address, {"n": 1}, {"n": 2}, {"n": 3})
    answer = gateway.http.get(f"/messages/{address}", params={"count": 2, "timeout": 5})
    assert answer.status_code == 200, answer.text
    assert [frame["body"] for frame in answer.json()["messages"]] == [{"n": 1}, {"n": 2}]
    answer, elapsed = timed(
        lambda: gateway.http.get(f"/messages/{address}", params={"count": 5, "timeout": 5})
    )
    assert answer.status_code == 200, answer.text
    assert [frame["body"] for frame in answer.json()["messages"]] == [{"n": 3}]
    assert elapsed < 2.5, f"{elapsed:.2f} s: a poll answers once messages came"


def test_a_long_poll_answers_204_when_nothing_comes_in_time(gateway: GatewayServer) -> None:
    answer, elapsed = timed(
        lambda: gateway.http.get(f"/messages/{unique('empty')}", params={"count": 3, "timeout": 1})
    )
    assert answer.status_code == 204, answer.text
    assert answer.content == b""
    assert 0.9 <= elapsed < 3.5, f"{elapsed:.2f} s for a 1 s poll"


def test_a_long_poll_beyond_the_limits_is_400(gateway: GatewayServer) -> None:
    path = f"/messages/{unique('greedy')}"
    assert_problem(gateway.http.get(path, params={"count": 10**6}), 400)
    assert_problem(gateway.http.get(path, params={"timeout": 10**6}), 400)


def test_a_long_poll_gets_a_message_that_arrives_while_it_waits(gateway: GatewayServer) -> None:
    address = unique("later")
    other = httpx.Client(base_url=gateway.url, timeout=15, trust_env=False)
    with other, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(other.get, f"/messages/{address}", params={"count": 1, "timeout": 10})
        time.sleep(0.5)
        post_all(gateway, address, "late")
        answer = waiting.result(timeout=15)
    assert answer.status_code == 200, answer.text
    assert [frame["body"] for frame in answer.json()["messages"]] == ["late"]


def test_a_long_poll_its_client_gave_up_takes_no_later_message(gateway: GatewayServer) -> None:
    """The issue: `curl -m1 '.../messages/q?timeout=10&count=5'` went on taking the next
    messages posted to q for 9 more seconds, and they were gone."""
    address = unique("abandoned")
    with (
        httpx.Client(base_url=gateway.url, timeout=1, trust_env=False) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.get(f"/messages/{address}", params={"count": 5, "timeout": 10})
    post_all(gateway, address, "one", "two", "three")
    bodies = [message.body for message in receive(gateway.amqp, address, 3)]
    assert sorted(bodies) == ["one", "three", "two"]


def test_a_long_poll_whose_client_left_at_once_releases_what_it_took(
    gateway: GatewayServer,
) -> None:
    """Three messages are there already; the client asks for up to five and closes its
    socket at once. The gateway takes the three and waits a moment for more, sees the
    client go meanwhile, and releases them: a second consumer gets them all. (A client
    that goes away as the answer is written may lose what it carries: nothing tells a
    server what a client read.)"""
    address = unique("left")
    post_all(gateway, address, "one", "two", "three")
    query = urlencode({"count": 5, "timeout": 5})
    with socket.create_connection((HOST, gateway.http_port), timeout=5) as raw:
        raw.sendall(f"GET /messages/{address}?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    # Released messages need not come back in their order.
    bodies = [message.body for message in receive(gateway.amqp, address, 3)]
    assert sorted(bodies) == ["one", "three", "two"]


# -- backpressure -------------------------------------------------------------------------

#: The producer's messages: 2000 of 10 kB of random text, 20 MB in all.
FLOOD_COUNT = 2000
FLOOD_SIZE = 10_000
#: The client's socket receive buffer (the kernel doubles it for its bookkeeping).
CLIENT_RCVBUF = 64 * 1024
#: Frames the websockets client reads ahead before it stops reading its socket (its
#: max_queue), and bytes it reads at a time.
CLIENT_QUEUE = 16
CLIENT_READ_CHUNK = 64 * 1024
#: Bytes uvicorn's transport buffers before a WebSocket send waits (asyncio's default
#: high-water mark).
SERVER_WRITE_BUFFER = 64 * 1024
#: The gateway's default stream window (--stream-credit).
WINDOW = 10
#: Most the gateway's memory may grow while the client does not read: its window of
#: messages, each held raw, decoded and as a JSON frame (10 x 3 x 10 kB), plus allocator
#: noise. Taking all 2000 would cost over 40 MB.
RSS_GROWTH_LIMIT_MB = 10


def kernel_send_buffer() -> int:
    """The most a TCP socket's send buffer grows to here (net.ipv4.tcp_wmem's maximum)."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


def test_a_websocket_client_that_stops_reading_holds_the_messages_in_the_broker(
    tmp_path: Path,
) -> None:
    """The client reads one frame and stops reading. The gateway then holds at most its
    window; what it already wrote waits in socket buffers (the gateway's send buffer, the
    client's receive buffer, the client library's queue); everything else must stay in
    the broker, and the gateway's memory must stay flat while 20 MB go by.

    The broker is a separate process (--amqp-url), so that the gateway's RSS is the
    gateway's alone; its queue is counted by browsing."""
    broker, broker_address = amqp_broker(tmp_path)
    with broker, GatewayServer(tmp_path, "--amqp-url", f"amqp://{broker_address}") as gateway:
        address = unique("flood")
        # Set before connecting, so that the kernel does not grow it on its own.
        client_socket = socket.socket()
        client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        client_socket.settimeout(10)
        client_socket.connect(("127.0.0.1", gateway.http_port))
        url = f"{gateway.ws_url}/streams/{address}"
        # No compression: each frame costs its full size in the buffers counted below.
        # A short close_timeout: a client that does not read never sees the gateway's
        # close frame behind the data, so it drops the connection after 1 s.
        with connect(
            url,
            sock=client_socket,
            proxy=None,
            compression=None,
            max_queue=CLIENT_QUEUE,
            close_timeout=1,
        ) as client:
            post_all(gateway, address, "warm-up")
            assert frames(client, 1)[0]["body"] == "warm-up"
            before = peak = gateway.rss_kib()
            producer = produce(tmp_path, broker_address, address, FLOOD_COUNT, FLOOD_SIZE)
            with producer:
                deadline = time.monotonic() + 120
                while producer.popen.poll() is None and time.monotonic() < deadline:
                    peak = max(peak, gateway.rss_kib())
                    time.sleep(0.1)
                assert producer.wait(timeout=1) == 0, producer.output()
            assert producer.lines() == [f"confirmed {FLOOD_COUNT}"]
            for _ in range(10):  # a second more for whatever the gateway would take
                peak = max(peak, gateway.rss_kib())
                time.sleep(0.1)
            waiting = len(browse(broker_address, address, quiet=1.0))

            buffered = kernel_send_buffer() + 2 * CLIENT_RCVBUF
            buffered += CLIENT_READ_CHUNK + SERVER_WRITE_BUFFER
            # A quarter more for the kernel's bookkeeping, which varies: about 600 of
            # the 2000 messages (measured here: about 440).
            bound = WINDOW + CLIENT_QUEUE + buffered * 5 // 4 // FLOOD_SIZE
            taken = FLOOD_COUNT - waiting
            assert taken <= bound, (
                f"{taken} of {FLOOD_COUNT} messages left the broker; "
                f"the window and the buffers hold at most {bound}"
            )
            growth_mb = (peak - before) / 1024
            assert growth_mb < RSS_GROWTH_LIMIT_MB, f"the gateway grew by {growth_mb:.1f} MB"
            # The stream goes on once the client reads again.
            assert "body" in json.loads(client.recv(timeout=FRAME_TIMEOUT))


def test_a_bad_selector_is_a_4xx_problem_for_sse_and_long_poll(gateway: GatewayServer) -> None:
    bad = {"selector": "colour = = 'green'"}
    sse_answer = gateway.http.get(
        f"/streams/{unique('badselector')}", params=bad, headers={"Accept": "text/event-stream"}
    )
    sse_problem = assert_problem(sse_answer, sse_answer.status_code)
    assert 400 <= sse_answer.status_code < 500, sse_problem
    poll_answer = gateway.http.get(
        f"/messages/{unique('badselector')}", params={**bad, "timeout": 1}
    )
    poll_problem = assert_problem(poll_answer, poll_answer.status_code)
    assert 400 <= poll_answer.status_code < 500, poll_problem
    assert sse_problem.get("condition") == poll_problem.get("condition")
