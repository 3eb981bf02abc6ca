"""End to end: POST /messages/{address} through the real gateway (a subprocess with its
embedded broker), checked on the AMQP side by the tutorial's receivers (ours and
Proton's, as subprocesses) and by Proton's BlockingConnection.

One gateway serves the whole module; each test uses addresses of its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cproton
import httpx
import pytest
from gateway_fixtures import (
    CALL_TIMEOUT,
    GatewayServer,
    Program,
    assert_problem,
    example,
    receive,
    receive_all,
    unique,
)
from proton import Data, symbol
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ENVELOPE = "application/vnd.amqp.message+json"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with GatewayServer(tmp_path_factory.mktemp("gateway")) as server:
        yield server


def tutorial_receiver(side: str, proton_examples: Path) -> list[str]:
    if side == "ours":
        return example("simple_recv")
    return [example("simple_recv")[0], str(proton_examples / "simple_recv.py")]


# -- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["ours", "proton"])
def test_posted_json_is_printed_by_a_tutorial_receiver(
    gateway: GatewayServer, tmp_path: Path, proton_examples: Path, side: str
) -> None:
    address = unique("examples")
    answer = gateway.post(address, {"sequence": 1})
    assert answer.status_code == 201, answer.text
    command = [*tutorial_receiver(side, proton_examples), "-a", f"{gateway.amqp}/{address}"]
    with Program(tmp_path, [*command, "-m", "1"]) as receiver:
        assert receiver.wait() == 0, receiver.output()
        assert receiver.lines() == ["{'sequence': 1}"]


def test_text_becomes_an_amqp_value_string(gateway: GatewayServer) -> None:
    address = unique("text")
    answer = gateway.post(
        address, content="Twas brillig", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    assert answer.status_code == 201, answer.text
    (message,) = receive(gateway.amqp, address, 1)
    assert message.body == "Twas brillig"
    assert type(message.body) is str
    assert message.content_type == "text/plain"


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream"])
def test_other_types_become_a_data_section_with_their_content_type(
    gateway: GatewayServer, content_type: str
) -> None:
    address = unique("data")
    payload = b"\x89PNG\r\n\x1a\n\x00\x01\xff"
    answer = gateway.post(address, content=payload, headers={"Content-Type": content_type})
    assert answer.status_code == 201, answer.text
    (message,) = receive(gateway.amqp, address, 1)
    assert isinstance(message.body, (bytes, memoryview))  # Proton 0.40 gives a memoryview
    assert bytes(message.body) == payload
    assert message.inferred  # a data section, not an amqp-value binary
    assert message.content_type == content_type


def test_an_envelope_sets_subject_properties_ttl_and_priority(gateway: GatewayServer) -> None:
    address = unique("envelope")
    envelope = {
        "body": {"sequence": 2},
        "subject": "hello",
        "properties": {"colour": "red", "weight": 5},
        "ttl": 30,
        "priority": 7,
        "durable": True,
        "correlation_id": {"$type": "ulong", "value": 42},
    }
    answer = gateway.post(address, content=json.dumps(envelope), headers={"Content-Type": ENVELOPE})
    assert answer.status_code == 201, answer.text
    (message,) = receive(gateway.amqp, address, 1)
    assert message.body == {"sequence": 2}
    assert message.subject == "hello"
    assert message.properties == {"colour": "red", "weight": 5}
    assert message.ttl == 30
    assert message.priority == 7
    assert message.durable is True
    # An integer message id can only be a ulong in AMQP; Proton shows it as an int.
    assert message.correlation_id == 42
    assert type(message.correlation_id) is int


def test_amqp_headers_set_header_and_property_fields(gateway: GatewayServer) -> None:
    address = unique("headers")
    answer = gateway.post(
        address,
        {"sequence": 3},
        headers={
            "amqp-subject": "greeting",
            "amqp-correlation-id": "call-9",
            "amqp-reply-to": "answers",
            "amqp-group-id": "g1",
            "amqp-ttl": "12.5",
            "amqp-priority": "9",
            "amqp-durable": "true",
            "amqp-content-encoding": "identity",
            "amqp-app-city": "M%C3%BCnchen",  # percent-encoded UTF-8
            "amqp-app-note": "100%25 sure",
        },
    )
    assert answer.status_code == 201, answer.text
    (message,) = receive(gateway.amqp, address, 1)
    assert message.subject == "greeting"
    assert message.correlation_id == "call-9"
    assert message.reply_to == "answers"
    assert message.group_id == "g1"
    assert message.ttl == pytest.approx(12.5)
    assert message.priority == 9
    assert message.durable is True
    assert message.content_encoding == symbol("identity")
    assert message.properties == {"city": "München", "note": "100% sure"}


def test_application_property_headers_are_what_selectors_match(gateway: GatewayServer) -> None:
    address = unique("colours")
    for colour in ("red", "green", "blue"):
        answer = gateway.post(address, f"a {colour} one", headers={"amqp-app-colour": colour})
        assert answer.status_code == 201, answer.text
    (green,) = receive(gateway.amqp, address, 1, selector="colour = 'green'")
    assert green.body == "a green one"
    assert green.properties == {"colour": "green"}
    rest = receive(gateway.amqp, address, 2)
    assert [message.body for message in rest] == ["a red one", "a blue one"]


# -- addresses ----------------------------------------------------------------------------


def test_encoded_and_doubled_slashes_both_reach_the_same_address(gateway: GatewayServer) -> None:
    name = unique("r1")
    encoded = gateway.post(f"%2Fqueue%2F{name}", "encoded")
    doubled = gateway.post(f"/queue/{name}", "doubled")  # /messages//queue/<name>
    assert encoded.status_code == 201, encoded.text
    assert doubled.status_code == 201, doubled.text
    assert encoded.json()["address"] == doubled.json()["address"] == f"/queue/{name}"
    messages = receive(gateway.amqp, f"/queue/{name}", 2)
    assert [message.body for message in messages] == ["encoded", "doubled"]


def test_a_unicode_address(gateway: GatewayServer) -> None:
    address = unique("café-über-日本")
    answer = gateway.post(address, {"sequence": 4})  # httpx percent-encodes it as UTF-8
    assert answer.status_code == 201, answer.text
    assert answer.json()["address"] == address
    (message,) = receive(gateway.amqp, address, 1)
    assert message.body == {"sequence": 4}


def test_a_path_with_no_address_is_404(gateway: GatewayServer) -> None:
    assert_problem(gateway.http.post("/messages/", json=1), 404)


def test_an_address_whose_percent_encoding_is_not_utf8_is_400_everywhere(
    gateway: GatewayServer,
) -> None:
    """%FF%FE would be decoded to U+FFFD U+FFFD, as would any other bad bytes: two
    different paths must not reach one queue."""
    name = unique("bad-utf8")
    bad = f"{name}%FF%FE"
    assert_problem(gateway.post(bad, "x"), 400)
    assert_problem(gateway.http.get(f"/messages/{bad}", params={"timeout": "0"}), 400)
    sse = gateway.http.get(f"/streams/{bad}", headers={"Accept": "text/event-stream"})
    assert_problem(sse, 400)
    request = gateway.http.post(
        f"/requests/{bad}", content="x", headers={"Content-Type": "text/plain"}
    )
    assert_problem(request, 400)
    with connect(f"{gateway.ws_url}/streams/{bad}", proxy=None, open_timeout=10) as client:
        error = json.loads(client.recv(timeout=CALL_TIMEOUT))
        assert error["error"]["status"] == 400, error
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=CALL_TIMEOUT)
        assert client.close_code == 1008
    # A real U+FFFD, percent-encoded as UTF-8, is an address like any other.
    replacement = gateway.post(f"{name}%EF%BF%BD", "fine")
    assert replacement.status_code == 201, replacement.text
    assert replacement.json()["address"] == f"{name}\ufffd"
    (message,) = receive(gateway.amqp, f"{name}\ufffd", 1)
    assert message.body == "fine"
    assert receive_all(gateway.amqp, f"{name}\ufffd\ufffd") == []


# -- message ids --------------------------------------------------------------------------


def test_201_reports_the_outcome_and_no_message_id_is_made_up(gateway: GatewayServer) -> None:
    address = unique("noid")
    answer = gateway.post(address, {"sequence": 1})
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {"outcome": "accepted", "address": address, "message_id": None}
    (message,) = receive(gateway.amqp, address, 1)
    assert message.id is None


def test_a_numeric_amqp_id_is_a_ulong_that_tutorial_receivers_compare(
    gateway: GatewayServer, tmp_path: Path, proton_examples: Path
) -> None:
    address = unique("numbered")
    for number in (5, 6):
        answer = gateway.post(address, {"sequence": number}, headers={"amqp-id": str(number)})
        assert answer.status_code == 201, answer.text
        assert answer.json()["message_id"] == number
    # Proton's simple_recv compares each id with a number: a string id would crash it.
    command = [*tutorial_receiver("proton", proton_examples), "-a", f"{gateway.amqp}/{address}"]
    with Program(tmp_path, [*command, "-m", "1"]) as receiver:
        assert receiver.wait() == 0, receiver.output()
        assert receiver.lines() == ["{'sequence': 5}"]
    (message,) = receive(gateway.amqp, address, 1)
    # An integer message id can only be a ulong in AMQP; Proton shows it as an int.
    assert message.id == 6
    assert type(message.id) is int


def test_a_string_amqp_id_stays_a_string(gateway: GatewayServer) -> None:
    address = unique("named")
    answer = gateway.post(address, "x", headers={"amqp-id": "order-007"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["message_id"] == "order-007"
    (message,) = receive(gateway.amqp, address, 1)
    assert message.id == "order-007"


def test_an_idempotency_key_is_the_message_id_and_a_retry_sends_nothing(
    gateway: GatewayServer,
) -> None:
    address = unique("idempotent")
    key = unique("key")
    first = gateway.post(address, {"order": 1}, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    assert first.json()["message_id"] == key
    assert "idempotent-replayed" not in first.headers
    retry = gateway.post(address, {"order": 1}, headers={"Idempotency-Key": key})
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert retry.headers.get("idempotent-replayed") == "true"
    (message,) = receive(gateway.amqp, address, 1)  # and then no second one
    assert message.id == key
    assert message.body == {"order": 1}


def test_an_idempotency_key_retry_of_a_presettled_post_sends_nothing_new(
    gateway: GatewayServer,
) -> None:
    """The issue: Idempotency-Key becomes the message id, and a retry within the window
    sends nothing new. At-most-once (settle=presettled) is no exception: a client
    retries exactly when it does not know whether its first POST went through."""
    address = unique("idempotent-presettled")
    key = unique("key")
    for _ in range(2):
        answer = gateway.http.post(
            f"/messages/{address}",
            params={"settle": "presettled"},
            json={"order": 2},
            headers={"Idempotency-Key": key},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["message_id"] == key
    (message,) = receive(gateway.amqp, address, 1)  # and then no second one
    assert message.id == key


def test_an_idempotency_key_retry_of_a_batch_sends_nothing_new(gateway: GatewayServer) -> None:
    address = unique("idempotent-batch")
    key = unique("key")
    batch = json.dumps([{"body": "first"}, {"body": "second"}])
    answers = [
        gateway.post(
            address,
            content=batch,
            headers={"Content-Type": ENVELOPE, "Idempotency-Key": key},
        )
        for _ in range(2)
    ]
    assert [answer.status_code for answer in answers] == [207, 207], answers[1].text
    assert answers[1].json() == answers[0].json()
    assert answers[1].headers.get("idempotent-replayed") == "true"
    messages = receive(gateway.amqp, address, 2)  # and then no more
    assert [message.body for message in messages] == ["first", "second"]


def test_an_idempotency_key_on_another_address_is_422_and_sends_nothing(
    gateway: GatewayServer,
) -> None:
    """The issue: the same key on a POST to another address was answered 201 with
    Idempotent-Replayed and nothing reached that address."""
    key = unique("key")
    first, second = unique("first"), unique("second")
    assert gateway.post(first, {"order": 1}, headers={"Idempotency-Key": key}).status_code == 201
    answer = gateway.post(second, {"order": 1}, headers={"Idempotency-Key": key})
    problem = assert_problem(answer, 422)
    assert "Idempotency-Key" in problem["detail"]
    assert "idempotent-replayed" not in answer.headers
    assert receive_all(gateway.amqp, second) == []
    assert len(receive(gateway.amqp, first, 1)) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"json": {"order": 2}},
        {"headers": {"amqp-subject": "another"}},
        {"headers": {"Content-Type": "text/plain"}, "content": '{"order": 1}'},
        {"params": {"settle": "presettled"}},
    ],
    ids=["body", "amqp-header", "content-type", "settle"],
)
def test_an_idempotency_key_with_another_request_is_422_never_a_replay(
    gateway: GatewayServer, change: dict[str, Any]
) -> None:
    address = unique("rekeyed")
    key = unique("key")
    assert gateway.post(address, {"order": 1}, headers={"Idempotency-Key": key}).status_code == 201
    request: dict[str, Any] = {"json": {"order": 1}, "headers": {}, **change}
    if "content" in request:
        del request["json"]
    request["headers"] = {**request["headers"], "Idempotency-Key": key}
    answer = gateway.http.post(f"/messages/{address}", **request)
    assert_problem(answer, 422)
    (message,) = receive(gateway.amqp, address, 1)  # the first only
    assert message.body == {"order": 1}


def test_concurrent_retries_with_one_key_send_once(gateway: GatewayServer) -> None:
    address = unique("racing")
    key = unique("key")

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"/messages/{address}", json={"order": 1}, headers={"Idempotency-Key": key}
                    )
                    for _ in range(20)
                )
            )

    answers = asyncio.run(race())
    assert [answer.status_code for answer in answers] == [201] * 20
    assert sum(answer.headers.get("idempotent-replayed") == "true" for answer in answers) == 19
    (message,) = receive(gateway.amqp, address, 1)  # and then no second one
    assert message.id == key


# -- status codes -------------------------------------------------------------------------


def test_presettled_is_answered_202(gateway: GatewayServer) -> None:
    address = unique("presettled")
    answer = gateway.http.post(
        f"/messages/{address}", params={"settle": "presettled"}, json={"sequence": 1}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "sent"
    (message,) = receive(gateway.amqp, address, 1)
    assert message.body == {"sequence": 1}


def test_a_batch_is_207_with_one_result_per_envelope(gateway: GatewayServer) -> None:
    address = unique("batch")
    batch = [
        {"body": "first", "id": {"$type": "ulong", "value": 1}},
        {"body": "second", "colour": "not a field"},
        {"body": "third"},
    ]
    answer = gateway.post(address, content=json.dumps(batch), headers={"Content-Type": ENVELOPE})
    assert answer.status_code == 207, answer.text
    result = answer.json()
    assert result["address"] == address
    statuses = [item["status"] for item in result["results"]]
    assert statuses == [201, 422, 201]
    assert result["results"][0]["outcome"] == "accepted"
    assert result["results"][0]["message_id"] == 1
    problem = result["results"][1]["problem"]
    assert problem["status"] == 422
    assert "colour" in problem["detail"]
    messages = receive(gateway.amqp, address, 2)
    assert [message.body for message in messages] == ["first", "third"]


def test_bad_json_and_an_unknown_amqp_header_are_400_and_send_nothing(
    gateway: GatewayServer,
) -> None:
    address = unique("bad")
    bad_json = gateway.post(
        address, content=b'{"sequence": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(bad_json, 400)
    typo = gateway.post(address, {"sequence": 1}, headers={"amqp-colour": "green"})
    problem = assert_problem(typo, 400)
    assert "amqp-colour" in problem["detail"]
    assert receive_all(gateway.amqp, address) == []


def test_a_body_over_max_body_is_413_with_or_without_content_length(
    gateway: GatewayServer,
) -> None:
    address = unique("large")
    limit = 1024 * 1024  # the default --max-body
    too_large = b"x" * (limit + 1)
    answer = gateway.post(
        address, content=too_large, headers={"Content-Type": "application/octet-stream"}
    )
    assert "content-length" in answer.request.headers
    assert_problem(answer, 413)

    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b"y" * (64 * 1024)

    chunked = gateway.post(
        address, content=chunks(), headers={"Content-Type": "application/octet-stream"}
    )
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(chunked, 413)
    # At the limit exactly, the body goes through.
    fits = gateway.post(
        address, content=b"z" * limit, headers={"Content-Type": "application/octet-stream"}
    )
    assert fits.status_code == 201, fits.text
    (message,) = receive(gateway.amqp, address, 1)
    assert len(message.body) == limit


def test_a_chunked_body_arrives_whole_and_in_order(gateway: GatewayServer) -> None:
    """Read ahead to check its size, a body without Content-Length is handed on to the
    route in the chunks it came in, not joined (a copy of it all at once)."""
    address = unique("chunked")
    parts = [bytes([number]) * (64 * 1024) for number in range(16)]  # 1 MiB, the limit
    answer = gateway.post(
        address, content=iter(parts), headers={"Content-Type": "application/octet-stream"}
    )
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert answer.status_code == 201, answer.text
    (message,) = receive(gateway.amqp, address, 1)
    assert message.body == b"".join(parts)


def test_an_unknown_charset_is_415(gateway: GatewayServer) -> None:
    answer = gateway.post(
        unique("charset"),
        content=b"hello",
        headers={"Content-Type": "text/plain; charset=x-no-such-charset"},
    )
    assert_problem(answer, 415)


def test_map_keys_of_different_types_reach_a_consumer_as_different_keys(
    gateway: GatewayServer,
) -> None:
    """true, 1 and 1.0 are three AMQP keys; Proton's C decoder walks all three (its
    Python dict, like any, would fold them into one)."""
    address = unique("keys")
    envelope = {"body": {"$type": "map", "value": [[True, "bool"], [1, "long"], [1.0, "double"]]}}
    answer = gateway.post(address, content=json.dumps(envelope), headers={"Content-Type": ENVELOPE})
    assert answer.status_code == 201, answer.text
    (message,) = receive(gateway.amqp, address, 1)
    body = Data(cproton.pn_message_body(message._msg))
    body.rewind()
    assert body.next() == Data.MAP
    body.enter()
    entries = []
    while body.next() is not None:
        entries.append((Data.type_name(body.type()), body.get_object()))
    assert entries == [("bool", True), ("string", "bool"), ("long", 1), ("string", "long"),
                       ("double", 1.0), ("string", "double")]  # fmt: skip


def test_an_envelope_with_an_unknown_field_is_422(gateway: GatewayServer) -> None:
    answer = gateway.post(
        unique("envelope"),
        content=json.dumps({"body": 1, "colour": "red"}),
        headers={"Content-Type": ENVELOPE},
    )
    problem = assert_problem(answer, 422)
    assert "colour" in problem["detail"]
