"""The HTTP <-> AMQP message mapping (gateway.mapping), as a specification: what each
body, header and envelope becomes, what Proton reads from the result, which input is
refused with which status, and that every AMQP value and message survives the trip to
JSON and back."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import amqp_strategies as s
import cproton
import proton
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from amqp_core import (
    UNDESCRIBED,
    AMQPType,
    Array,
    DataSections,
    Described,
    Message,
    SequenceSections,
    byte,
    char,
    decimal32,
    decimal64,
    decimal128,
    float32,
    int32,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)
from amqp_core.broker.selector import Selector
from amqp_core.codec import MAX_NESTING, decode_from
from gateway.mapping import (
    ENVELOPE_FIELDS,
    ENVELOPE_TYPE,
    HEADER_FIELDS,
    MappingError,
    envelopes_from_json,
    http_reply,
    is_envelope,
    message_from_body,
    message_from_envelope,
    message_to_json,
    parse_json,
    stream_frame,
    value_from_json,
    value_to_json,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PNG = b"\x89PNG\r\n\x1a\n\x00\xff"
UUID = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")


def as_proton(message: Message) -> proton.Message:
    """What Proton reads from the message's encoding."""
    decoded = proton.Message()
    decoded.decode(message.encode())
    return decoded


def through_json(value: Any) -> Any:
    """`value` as JSON text (strict: no NaN) and back, as a client would see it."""
    return json.loads(json.dumps(value, allow_nan=False))


def mapping_error(call: Any, *args: Any) -> MappingError:
    with pytest.raises(MappingError) as caught:
        call(*args)
    return caught.value


# ---------------------------------------------------------------------------------------
# Bodies


@pytest.mark.parametrize(
    ("body", "content_type", "expected_body", "inferred", "expected_type"),
    [
        (b'{"sequence": 1}', "application/json", {"sequence": 1}, False, None),
        (b'{"sequence": 1}', "Application/JSON; charset=utf-8", {"sequence": 1}, False, None),
        (b'{"a": [1, 2.5, null, true]}', "application/cloudevents+json",
         {"a": [1, 2.5, None, True]}, False, None),
        (b"[1, 2]", "application/json", [1, 2], False, None),
        (b'"text"', "application/json", "text", False, None),
        (b"5", "application/json", 5, False, None),
        (b"null", "application/json", None, False, None),
        # application/json is taken literally: tagged forms are for envelopes only.
        (b'{"$type": "ulong", "value": 5}', "application/json",
         {"$type": "ulong", "value": 5}, False, None),
        (b"Twas brillig", "text/plain", "Twas brillig", False, "text/plain"),
        ("caf\u00e9".encode(), "text/plain; charset=utf-8", "caf\u00e9", False, "text/plain"),
        (b"caf\xe9", "text/plain; charset=ISO-8859-1", "caf\u00e9", False, "text/plain"),
        (b"a,b", 'text/csv; charset="utf-8"; header=present', "a,b", False,
         "text/csv; header=present"),
        (b"", "text/plain", "", False, "text/plain"),
        (PNG, "image/png", PNG, True, "image/png"),
        (b"<a/>", "application/xml; charset=utf-8", b"<a/>", True,
         "application/xml; charset=utf-8"),
        (PNG, None, PNG, True, "application/octet-stream"),
        (PNG, "", PNG, True, "application/octet-stream"),
        (b"", None, b"", True, "application/octet-stream"),
    ],
)  # fmt: skip
def test_body_by_content_type(
    body: bytes, content_type: str | None, expected_body: Any, inferred: bool, expected_type: Any
) -> None:
    message = message_from_body(body, content_type, {})
    s.assert_same(message.body, expected_body)
    assert message.inferred is inferred
    assert message.content_type == expected_type
    assert message.id is None  # the mapping sets no message id unless given one


def test_a_tutorial_receiver_sees_a_dict() -> None:
    received = as_proton(message_from_body(b'{"sequence": 1}', "application/json", {}))
    assert received.body == {"sequence": 1}
    assert str(received.body) == "{'sequence': 1}"
    assert received.id is None


def test_proton_reads_text_as_a_string() -> None:
    received = as_proton(message_from_body("caf\u00e9".encode(), "text/plain", {}))
    assert type(received.body) is str
    assert received.body == "caf\u00e9"
    assert received.inferred is False


def test_proton_reads_other_types_as_a_data_section() -> None:
    received = as_proton(message_from_body(PNG, "image/png", {}))
    assert bytes(received.body) == PNG
    assert received.inferred is True  # a data section, not an amqp-value binary
    assert received.content_type == "image/png"


def test_the_deepest_json_peers_decode_is_accepted() -> None:
    deepest = b"[" * MAX_NESTING + b"]" * MAX_NESTING
    message = message_from_body(deepest, "application/json", {})
    decoded = Message()
    decoded.decode(message.encode())
    assert decoded.body == message.body


@pytest.mark.parametrize(
    ("body", "content_type", "status", "culprit"),
    [
        (b"{", "application/json", 400, "Expecting"),
        (b"", "application/json", 400, "Expecting value"),
        (b"NaN", "application/json", 400, "NaN is not JSON"),
        (b"[Infinity]", "application/json", 400, "Infinity is not JSON"),
        (b"\xff", "application/json", 400, "JSON"),
        (b"[" * 100_000, "application/json", 400, "JSON"),
        (b'{"n": [1, 9223372036854775808]}', "application/json", 422, "/n/1: 9223372036854775808"),
        (b"-9223372036854775809", "application/json", 422, "does not fit an AMQP long"),
        (b'{"a": "\\ud800"}', "application/json", 422, "/a: a string with a lone surrogate"),
        (b'{"\\udc00": 1}', "application/json", 422, "lone surrogate"),
        (b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1), "application/json", 422,
         f"nest more than {MAX_NESTING}"),
        ('{"a": }'.encode("utf-16"), "application/json", 400, "the body is not JSON"),
        ('[18446744073709551616]'.encode("utf-16-le"), "application/json", 422, "/0: 1844"),
        (b"\xff\xfe", "text/plain", 400, "not utf-8 text"),
        (b"abc", "text/plain; charset=no-such-charset", 415, "no-such-charset"),
        (b"abc", "text/plain; charset=rot13", 415, "rot13"),
        (b"\\ud800", "text/plain; charset=unicode_escape", 400, "lone surrogate"),
        (b"abc", "image", 400, "Content-Type: 'image'"),
        (b"abc", "image/", 400, "is not a media type"),
        (b"abc", "a b/c", 400, "is not a media type"),
        (b"abc", "image/p\u00f1g", 400, "Content-Type"),
        (b"abc", "image/png; name=\u00e9", 400, "not ASCII"),
    ],
)  # fmt: skip
def test_bad_bodies(body: bytes, content_type: str, status: int, culprit: str) -> None:
    error = mapping_error(message_from_body, body, content_type, {})
    assert error.status == status
    assert culprit in error.detail


def test_invalid_json_is_a_400_with_a_problem() -> None:
    error = mapping_error(parse_json, b'{"a": }')
    assert error.problem() == {
        "type": "about:blank",
        "title": "Invalid JSON",
        "status": 400,
        "detail": "the body is not JSON: Expecting value: line 1 column 7 (char 6)",
    }


# ---------------------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize(
    ("header", "value", "attribute", "expected"),
    [
        ("amqp-id", "5", "id", 5),
        ("amqp-id", "0", "id", 0),
        ("amqp-id", "18446744073709551615", "id", 2**64 - 1),
        ("amqp-id", "007", "id", "007"),  # a leading zero: the client meant text
        ("amqp-id", "-5", "id", "-5"),
        ("amqp-id", "order-17", "id", "order-17"),
        ("amqp-id", str(UUID), "id", str(UUID)),
        ("AMQP-Correlation-Id", "42", "correlation_id", 42),
        ("amqp-correlation-id", "caf%C3%A9", "correlation_id", "caf\u00e9"),
        ("amqp-subject", "Twas brillig", "subject", "Twas brillig"),
        ("amqp-subject", "100%25 caf%C3%A9%0A", "subject", "100% caf\u00e9\n"),
        ("amqp-subject", "", "subject", ""),
        ("amqp-reply-to", "/queue/replies", "reply_to", "/queue/replies"),
        ("amqp-user-id", "alice", "user_id", b"alice"),
        ("amqp-user-id", "%FF%00", "user_id", b"\xff\x00"),
        ("amqp-group-id", "g1", "group_id", "g1"),
        ("amqp-group-sequence", "4294967295", "group_sequence", 2**32 - 1),
        ("amqp-reply-to-group-id", "g2", "reply_to_group_id", "g2"),
        ("amqp-content-encoding", "gzip", "content_encoding", "gzip"),
        ("amqp-ttl", "1.5", "ttl", 1.5),
        ("amqp-ttl", " 30 ", "ttl", 30.0),
        ("amqp-ttl", "4294967.295", "ttl", 4294967.295),
        ("amqp-priority", "0", "priority", 0),
        ("amqp-priority", "255", "priority", 255),
        ("amqp-durable", "true", "durable", True),
        ("amqp-durable", "FALSE", "durable", False),
        ("amqp-first-acquirer", "true", "first_acquirer", True),
        ("amqp-delivery-count", "3", "delivery_count", 3),
        ("amqp-creation-time", "1714564800.25", "creation_time", 1714564800.25),
        ("amqp-creation-time", "2024-05-01T12:00:00.250Z", "creation_time", 1714564800.25),
        ("amqp-expiry-time", "2024-05-01T14:00:00+02:00", "expiry_time", 1714564800.0),
        ("amqp-expiry-time", "-1.5", "expiry_time", -1.5),
    ],
)
def test_field_headers(header: str, value: str, attribute: str, expected: Any) -> None:
    message = message_from_body(b"x", "text/plain", {header: value})
    s.assert_same(getattr(message, attribute), expected)


def test_every_field_header_reaches_proton() -> None:
    headers = {
        "amqp-id": "5",
        "amqp-correlation-id": "req-1",
        "amqp-subject": "greeting",
        "amqp-reply-to": "replies",
        "amqp-user-id": "alice",
        "amqp-group-id": "g",
        "amqp-group-sequence": "7",
        "amqp-reply-to-group-id": "rg",
        "amqp-content-encoding": "identity",
        "amqp-creation-time": "2024-05-01T12:00:00.250Z",
        "amqp-expiry-time": "1714568400",
        "amqp-ttl": "60",
        "amqp-priority": "9",
        "amqp-durable": "true",
        "amqp-first-acquirer": "true",
        "amqp-delivery-count": "2",
        "amqp-app-colour": "green",
        "amqp-app-count": "5",
    }
    assert set(headers) - {"amqp-app-colour", "amqp-app-count"} == set(HEADER_FIELDS)
    received = as_proton(message_from_body(b"hi", "text/plain", headers))
    assert received.body == "hi"
    assert received.id == 5 and type(received.id) is int  # a ulong on the wire
    assert received.correlation_id == "req-1"
    assert received.subject == "greeting"
    assert received.reply_to == "replies"
    assert bytes(received.user_id) == b"alice"
    assert received.group_id == "g"
    assert received.group_sequence == 7
    assert received.reply_to_group_id == "rg"
    assert received.content_encoding == "identity"
    assert received.creation_time == 1714564800.25
    assert received.expiry_time == 1714568400
    assert received.ttl == 60
    assert received.priority == 9
    assert received.durable is True
    assert received.first_acquirer is True
    assert received.delivery_count == 2
    # Headers carry strings: "5" stays a string (typed values go in an envelope).
    assert received.properties == {"colour": "green", "count": "5"}
    assert all(type(value) is str for value in received.properties.values())


def test_a_numeric_id_header_is_a_ulong_on_the_wire() -> None:
    encoded = message_from_body(b"x", None, {"amqp-id": "5", "amqp-correlation-id": "6"}).encode()
    properties, _ = decode_from(encoded, encoded.index(b"\x00Ss") + 3)
    s.assert_same(properties[:6], [ulong(5), None, None, None, None, ulong(6)])


def test_selectors_match_application_property_headers() -> None:
    message = message_from_body(b"x", "text/plain", {"amqp-app-colour": "green"})
    received = Message()
    received.decode(message.encode())
    assert Selector.parse("colour = 'green'").matches(received)
    assert not Selector.parse("colour = 'red'").matches(received)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("amqp-app-colour", "colour"),
        ("AMQP-App-Colour", "colour"),  # header names are case-insensitive
        ("amqp-app-%4Eame", "Name"),  # capitals are percent-encoded
        ("amqp-app-caf%C3%A9%20au%2Flait", "caf\u00e9 au/lait"),
        ("amqp-app-x.y_z", "x.y_z"),
    ],
)
def test_application_property_names(header: str, name: str) -> None:
    message = message_from_body(b"x", "text/plain", {header: "v"})
    assert message.properties == {name: "v"}


def test_header_values_are_utf8_when_sent_raw() -> None:
    # ASGI servers decode header bytes as latin-1; raw UTF-8 bytes are read as UTF-8.
    headers = Headers(
        raw=[(b"amqp-subject", "caf\u00e9".encode()), (b"amqp-app-n", b"\xe2\x82\xac")]
    )
    message = message_from_body(b"x", "text/plain", headers)
    assert message.subject == "caf\u00e9"
    assert message.properties == {"n": "\u20ac"}


def test_other_headers_are_ignored() -> None:
    headers = {"Accept": "*/*", "Content-Length": "1", "amqpfoo": "1", "x-amqp-id": "1"}
    message = message_from_body(b"x", "text/plain", headers)
    assert message.id is None and message.properties is None


@pytest.mark.parametrize(
    ("headers", "culprit"),
    [
        ({"amqp-subjet": "typo"}, "amqp-subjet: unknown header"),
        ({"amqp-app-": "x"}, "amqp-app-: an application property needs a name"),
        ({"amqp-address": "q"}, "amqp-address: the address is the request's path"),
        ({"amqp-to": "q"}, "amqp-to: the address is the request's path"),
        ({"amqp-content-type": "a/b"}, "amqp-content-type: the content type is the Content-Type"),
        ({"amqp-priority": "300"}, "amqp-priority: '300' is not an integer in [0, 255]"),
        ({"amqp-priority": "-1"}, "amqp-priority"),
        ({"amqp-priority": "high"}, "amqp-priority"),
        ({"amqp-priority": "\u0665"}, "amqp-priority"),  # an Arabic-Indic digit
        ({"amqp-ttl": "-1"}, "amqp-ttl: '-1' is not a number of seconds"),
        ({"amqp-ttl": "4294967.296"}, "amqp-ttl"),
        ({"amqp-ttl": "inf"}, "amqp-ttl"),
        ({"amqp-ttl": "nan"}, "amqp-ttl"),
        ({"amqp-ttl": "1h"}, "amqp-ttl"),
        ({"amqp-durable": "maybe"}, "amqp-durable: 'maybe' is not true or false"),
        ({"amqp-durable": "1"}, "amqp-durable"),
        ({"amqp-first-acquirer": "yes"}, "amqp-first-acquirer"),
        ({"amqp-delivery-count": "4294967296"}, "amqp-delivery-count"),
        ({"amqp-group-sequence": "1.5"}, "amqp-group-sequence"),
        ({"amqp-id": "18446744073709551616"}, "amqp-id: '18446744073709551616' is beyond a ulong"),
        ({"amqp-creation-time": "yesterday"}, "amqp-creation-time: 'yesterday' is neither"),
        ({"amqp-creation-time": "2024-05-01T12:00:00"}, "amqp-creation-time"),  # no offset
        ({"amqp-expiry-time": "1e30"}, "amqp-expiry-time: '1e30' is beyond an AMQP timestamp"),
        ({"amqp-subject": "100%"}, "amqp-subject: '100%': a % starts a %XX escape"),
        ({"amqp-subject": "%zz"}, "amqp-subject"),
        ({"amqp-subject": "%FF"}, "amqp-subject: '%FF' is not UTF-8"),
        ({"amqp-app-n": "%C3"}, "amqp-app-n: '%C3' is not UTF-8"),
        ({"amqp-app-%FF": "v"}, "amqp-app-%FF"),
        ({"amqp-content-encoding": "caf%C3%A9"}, "amqp-content-encoding: 'caf\u00e9' is not ASCII"),
    ],
)
def test_bad_headers(headers: dict[str, str], culprit: str) -> None:
    error = mapping_error(message_from_body, b"x", "text/plain", headers)
    assert error.status == 400
    assert error.title == "Invalid AMQP header"
    assert culprit in error.detail


def test_a_header_given_twice_is_refused() -> None:
    twice = Headers(raw=[(b"amqp-subject", b"a"), (b"amqp-subject", b"b")])
    assert "amqp-subject: given twice" in mapping_error(message_from_body, b"", None, twice).detail
    same_name = {"amqp-app-n": "1", "amqp-app-%6E": "2"}
    error = mapping_error(message_from_body, b"", None, same_name)
    assert "application property 'n' is given twice" in error.detail


# ---------------------------------------------------------------------------------------
# Envelopes


def test_an_envelope_sets_every_field() -> None:
    envelope = {
        "id": {"$type": "uuid", "value": str(UUID)},
        "correlation_id": 7,
        "address": "orders",
        "subject": "s",
        "reply_to": "r",
        "content_type": "application/x-thing",
        "content_encoding": "gzip",
        "user_id": "alice",
        "group_id": "g",
        "group_sequence": 3,
        "reply_to_group_id": "rg",
        "creation_time": "2024-05-01T12:00:00Z",
        "expiry_time": 1714568400.5,
        "durable": True,
        "priority": 7,
        "ttl": 2.5,
        "first_acquirer": True,
        "delivery_count": 1,
        "properties": {"colour": "green", "weight": {"$type": "int", "value": 5}, "n": 5},
        "annotations": {"x-opt-partition": "p1"},
        "instructions": [[7, "by ulong"], ["x-opt-a", 1]],
        "footer": {"x-opt-sig": {"$type": "binary", "value": "AAE="}},
        "body": {"sequence": 1},
    }
    assert set(envelope) == ENVELOPE_FIELDS - {"inferred", "body_encoding"}
    message = message_from_envelope(through_json(envelope))
    received = as_proton(message)
    assert received.id == UUID
    assert received.correlation_id == 7
    assert received.address == "orders"
    assert received.subject == "s"
    assert received.reply_to == "r"
    assert received.content_type == "application/x-thing"
    assert received.content_encoding == "gzip"
    assert bytes(received.user_id) == b"alice"
    assert (received.group_id, received.group_sequence) == ("g", 3)
    assert received.reply_to_group_id == "rg"
    assert received.creation_time == 1714564800
    assert received.expiry_time == 1714568400.5
    assert received.durable is True
    assert received.priority == 7
    assert received.ttl == 2.5
    assert received.first_acquirer is True
    assert received.delivery_count == 1
    s.assert_same(dict(received.properties), {"colour": "green", "weight": int32(5), "n": 5})
    s.assert_same(dict(received.annotations), {symbol("x-opt-partition"): "p1"})
    s.assert_same(dict(received.instructions), {ulong(7): "by ulong", symbol("x-opt-a"): 1})
    assert received.body == {"sequence": 1}
    assert message.footer == {symbol("x-opt-sig"): b"\x00\x01"}


@pytest.mark.parametrize(
    ("envelope", "body", "inferred", "section"),
    [
        ({"body": "hi"}, "hi", False, "amqp-value"),
        ({"body": {"$type": "binary", "value": "AAE="}}, b"\x00\x01", False, "amqp-value"),
        ({"body": "AAE=", "body_encoding": "base64"}, b"\x00\x01", True, "data"),
        ({"body": "AAE=", "body_encoding": "base64", "inferred": True}, b"\x00\x01", True,
         "data"),
        ({"body": "AAE=", "body_encoding": "base64", "inferred": False}, b"\x00\x01", False,
         "amqp-value"),
        ({"body": {"$type": "binary", "value": "AAE="}, "inferred": True}, b"\x00\x01", True,
         "data"),
        ({"body": ["AA==", "AQ=="], "body_encoding": "base64"},
         DataSections([b"\x00", b"\x01"]), True, "data"),
        ({"body": [1, "a"], "inferred": True}, [1, "a"], True, "amqp-sequence"),
        ({"body": [1, "a"]}, [1, "a"], False, "amqp-value"),
        ({}, None, False, None),
        ({"body": None}, None, False, None),
    ],
)  # fmt: skip
def test_envelope_bodies(envelope: dict[str, Any], body: Any, inferred: bool, section: Any) -> None:
    message = message_from_envelope(envelope)
    assert message.body == body and type(message.body) is type(body)
    assert message.inferred is inferred
    sections = {0x75: "data", 0x76: "amqp-sequence", 0x77: "amqp-value"}
    encoded = message.encode()
    assert (sections[encoded[2]] if encoded else None) == section


def test_proton_reads_envelope_bodies() -> None:
    data = as_proton(message_from_envelope({"body": "AAE=", "body_encoding": "base64"}))
    assert (bytes(data.body), data.inferred) == (b"\x00\x01", True)
    sequence = as_proton(message_from_envelope({"body": [1, 2], "inferred": True}))
    assert (sequence.body, sequence.inferred) == ([1, 2], True)
    value = as_proton(message_from_envelope({"body": {"$type": "ulong", "value": 5}}))
    s.assert_same(value.body, proton.ulong(5))


@pytest.mark.parametrize(
    ("envelope", "culprit"),
    [
        ([], "an envelope is a JSON object"),
        ({"bodee": 1}, "unknown field bodee"),
        ({"to": "q", "message_id": 1}, "unknown field message_id, to"),
        ({"id": -1}, "/id: a message id is an unsigned integer"),
        ({"id": 2**64}, "/id"),
        ({"id": 1.5}, "/id"),
        ({"id": {"$type": "symbol", "value": "x"}}, "/id"),
        ({"correlation_id": [1]}, "/correlation_id"),
        ({"subject": 5}, "/subject: expected a string"),
        ({"content_type": "caf\u00e9/x"}, "/content_type: a symbol is an ASCII string"),
        ({"user_id": 5}, "/user_id: a user id is a string or a tagged binary"),
        ({"priority": 256}, "/priority: expected an integer in [0, 255], not 256"),
        ({"priority": True}, "/priority"),
        ({"delivery_count": -1}, "/delivery_count"),
        ({"group_sequence": 2**32}, "/group_sequence"),
        ({"durable": "true"}, "/durable: a boolean is true or false"),
        ({"ttl": -1}, "/ttl: a ttl is in [0, 4294967.295] seconds"),
        ({"ttl": "5"}, "/ttl: expected a number of seconds"),
        ({"ttl": 10**400}, "/ttl: 1000000000"),
        ({"creation_time": "soon"}, "/creation_time: expected seconds since the epoch or an ISO"),
        ({"expiry_time": 1e300}, "/expiry_time: 1e+300 is beyond an AMQP timestamp"),
        ({"properties": {"a": [1]}}, "/properties/a: application property values are simple"),
        ({"properties": {"m": {"k": 1}}}, "/properties/m"),
        ({"properties": "x"}, "/properties: expected an object or an array of [key, value]"),
        ({"annotations": {"caf\u00e9": 1}}, "/annotations/caf\u00e9: a symbol is an ASCII"),
        ({"annotations": [[1.5, 1]]}, None),  # any key type is readable in pair form
        ({"annotations": [[1, 1], [1, 2]]}, "/annotations/1/0: key 1 is given twice"),
        ({"annotations": [[1]]}, "/annotations/0: expected a [key, value] pair"),
        ({"footer": [[[1], 2]]}, "/footer/0/0: a map key cannot be a list"),
        ({"body": "AAE", "body_encoding": "base64"}, "/body: not base64 for binary"),
        ({"body": 5, "body_encoding": "base64"}, "/body: a base64 body is a string"),
        ({"body": ["AA=="], "body_encoding": "base64", "inferred": False}, "/body"),
        ({"body": "AA==", "body_encoding": "hex"}, "/body_encoding: the only body_encoding"),
        ({"body": {"$type": "ulong", "value": -1}}, "/body/value: ulong must be in"),
        ({"body": {"a": [{"$type": "nope", "value": 1}]}}, "/body/a/0/$type: 'nope' is not"),
        ({"body": {"a/b~c": {"$type": "int"}}}, '/body/a~1b~0c: int needs a "value"'),
    ],
)
def test_bad_envelopes(envelope: Any, culprit: str | None) -> None:
    if culprit is None:
        message_from_envelope(envelope)
        return
    error = mapping_error(message_from_envelope, envelope)
    assert error.status == 422
    assert culprit in error.detail


def test_message_from_body_reads_one_envelope() -> None:
    body = json.dumps({"body": "hi", "subject": "s"}).encode()
    message = message_from_body(body, ENVELOPE_TYPE, {"accept": "*/*"})
    assert (message.body, message.subject) == ("hi", "s")
    assert is_envelope("application/vnd.amqp.message+json; charset=utf-8")
    assert not is_envelope("application/json") and not is_envelope(None)


@pytest.mark.parametrize(
    ("body", "headers", "status", "culprit"),
    [
        (b"[]", {}, 422, "expected one envelope (a JSON object), not []"),
        (b"{", {}, 400, "Expecting"),
        (b"{}", {"amqp-subject": "s"}, 400, "amqp-subject: an envelope carries its fields itself"),
        (b"{}", {"amqp-app-x": "s"}, 400, "amqp-app-*: an envelope carries its fields itself"),
    ],
)
def test_bad_envelope_bodies(
    body: bytes, headers: dict[str, str], status: int, culprit: str
) -> None:
    error = mapping_error(message_from_body, body, ENVELOPE_TYPE, headers)
    assert error.status == status
    assert culprit in error.detail


def test_a_batch_answers_each_envelope() -> None:
    results = envelopes_from_json(
        [{"body": 1}, {"bodee": 2}, "x", {"body": 3, "priority": 300}, {"body": 4}]
    )
    assert [type(result) for result in results] == [
        Message, MappingError, MappingError, MappingError, Message
    ]  # fmt: skip
    assert [result.body for result in results if isinstance(result, Message)] == [1, 4]
    errors = [result for result in results if isinstance(result, MappingError)]
    assert [error.status for error in errors] == [422, 422, 422]
    assert "bodee" in errors[0].detail and "/priority" in errors[2].detail
    assert envelopes_from_json([]) == []
    assert mapping_error(envelopes_from_json, {"body": 1}).status == 422


# ---------------------------------------------------------------------------------------
# Typed JSON


@pytest.mark.parametrize(
    ("value", "typed_json"),
    [
        (None, None),
        (True, True),
        ("text", "text"),
        (5, 5),
        (-(2**63), -(2**63)),
        (1.5, 1.5),
        (-0.0, -0.0),
        (math.inf, {"$type": "double", "value": "Infinity"}),
        (-math.inf, {"$type": "double", "value": "-Infinity"}),
        ([1, "a", None], [1, "a", None]),
        ({"a": 1}, {"a": 1}),
        ({"$type": 1}, {"$type": "map", "value": {"$type": 1}}),
        ({1: "one", symbol("s"): 2}, {"$type": "map", "value": [[1, "one"],
         [{"$type": "symbol", "value": "s"}, 2]]}),
        (ubyte(255), {"$type": "ubyte", "value": 255}),
        (ushort(65535), {"$type": "ushort", "value": 65535}),
        (uint(2**32 - 1), {"$type": "uint", "value": 2**32 - 1}),
        (ulong(2**64 - 1), {"$type": "ulong", "value": 2**64 - 1}),
        (byte(-128), {"$type": "byte", "value": -128}),
        (short(-32768), {"$type": "short", "value": -32768}),
        (int32(-(2**31)), {"$type": "int", "value": -(2**31)}),
        (float32(1.5), {"$type": "float", "value": 1.5}),
        (float32(math.inf), {"$type": "float", "value": "Infinity"}),
        (decimal32(0x22500000), {"$type": "decimal32", "value": 0x22500000}),
        (decimal64(0x2238000000000000), {"$type": "decimal64", "value": 0x2238000000000000}),
        (decimal128(bytes(15) + b"\x01"), {"$type": "decimal128",
         "value": "AAAAAAAAAAAAAAAAAAAAAQ=="}),
        (char("\u00e9"), {"$type": "char", "value": "\u00e9"}),
        (timestamp(1714564800250), {"$type": "timestamp", "value": 1714564800250}),
        (UUID, {"$type": "uuid", "value": str(UUID)}),
        (b"\x00\x01", {"$type": "binary", "value": "AAE="}),
        (symbol("amqp:accepted:list"), {"$type": "symbol", "value": "amqp:accepted:list"}),
        (Described(symbol("com.example:point"), [1, 2]),
         {"$type": "described", "descriptor": "com.example:point", "value": [1, 2]}),
        (Described(ulong(0x77), "v"), {"$type": "described", "descriptor": 0x77, "value": "v"}),
        (Described("plain", 1), {"$type": "described",
         "descriptor": {"$type": "string", "value": "plain"}, "value": 1}),
        (Described(5, 1), {"$type": "described",
         "descriptor": {"$type": "long", "value": 5}, "value": 1}),
        (Array(UNDESCRIBED, AMQPType.INT, int32(1), int32(2)),
         {"$type": "array", "type": "int", "value": [1, 2]}),
        (Array(symbol("d"), AMQPType.SYMBOL, symbol("a")),
         {"$type": "array", "type": "symbol", "descriptor": "d", "value": ["a"]}),
        (Array(None, AMQPType.NULL, None), {"$type": "array", "type": "null",
         "descriptor": None, "value": [None]}),
        (Array(UNDESCRIBED, AMQPType.DOUBLE, math.nan, 1.0),
         {"$type": "array", "type": "double", "value": ["NaN", 1.0]}),
        (Array(UNDESCRIBED, AMQPType.BINARY, b"\x00"),
         {"$type": "array", "type": "binary", "value": ["AA=="]}),
        (Array(UNDESCRIBED, AMQPType.MAP, {"a": 1}, {1: 2}),
         {"$type": "array", "type": "map", "value": [{"a": 1}, [[1, 2]]]}),
        (Array(UNDESCRIBED, AMQPType.LIST, [ulong(1)]),
         {"$type": "array", "type": "list", "value": [[{"$type": "ulong", "value": 1}]]}),
        (Array(UNDESCRIBED, AMQPType.ARRAY, Array(UNDESCRIBED, AMQPType.UBYTE, ubyte(1))),
         {"$type": "array", "type": "array",
          "value": [{"$type": "array", "type": "ubyte", "value": [1]}]}),
    ],
)  # fmt: skip
def test_typed_json(value: Any, typed_json: Any) -> None:
    assert value_to_json(value) == typed_json
    s.assert_same(value_from_json(through_json(typed_json)), value)


def test_nan_is_tagged() -> None:
    assert value_to_json(math.nan) == {"$type": "double", "value": "NaN"}
    assert math.isnan(value_from_json({"$type": "double", "value": "NaN"}))
    assert math.isnan(value_from_json({"$type": "float", "value": "NaN"}))


@pytest.mark.parametrize(
    ("typed_json", "expected"),
    [
        # Other ways to write the same value.
        ({"$type": "ulong", "value": "18446744073709551615"}, ulong(2**64 - 1)),
        ({"$type": "long", "value": "-9223372036854775808"}, -(2**63)),
        ({"$type": "long", "value": 5}, 5),
        ({"$type": "double", "value": 1}, 1.0),
        ({"$type": "float", "value": 0.1}, float32(0.1)),
        ({"$type": "string", "value": "$type"}, "$type"),
        ({"$type": "null", "value": None}, None),
        ({"$type": "boolean", "value": False}, False),
        ({"$type": "list", "value": [1]}, [1]),
        ({"$type": "map", "value": {"a": 1}}, {"a": 1}),
        ({"$type": "map", "value": [["a", 1]]}, {"a": 1}),
        ({"$type": "timestamp", "value": "2024-05-01T12:00:00.250Z"}, timestamp(1714564800250)),
        ({"$type": "timestamp", "value": "1714564800250"}, timestamp(1714564800250)),
        ({"$type": "timestamp", "value": -1}, timestamp(-1)),
        ({"$type": "uuid", "value": UUID.hex}, UUID),
        ({"$type": "uuid", "value": str(UUID).upper()}, UUID),
        ({"$type": "char", "value": "\U0010ffff"}, char("\U0010ffff")),
        ({"$type": "described", "descriptor": {"$type": "string", "value": "d"}, "value": 1},
         Described("d", 1)),
    ],
)  # fmt: skip
def test_typed_json_alternatives(typed_json: Any, expected: Any) -> None:
    s.assert_same(value_from_json(typed_json), expected)


@pytest.mark.parametrize(
    ("typed_json", "culprit"),
    [
        (2**63, "9223372036854775808 does not fit an AMQP long (a ulong is written"),
        ({"$type": "ulong"}, 'ulong needs a "value"'),
        ({"$type": "ulong", "value": 1, "extra": 1}, "ulong has no field extra"),
        ({"$type": 5, "value": 1}, "/$type: 5 is not an AMQP type name"),
        ({"$type": "ubyte", "value": 256}, "/value: ubyte must be in [0, 255], not 256"),
        ({"$type": "ubyte", "value": 1.0}, "/value: expected an integer for ubyte, not 1.0"),
        ({"$type": "ubyte", "value": True}, "/value: expected an integer for ubyte, not True"),
        ({"$type": "ubyte", "value": "0x1"}, "expected an integer for ubyte"),
        ({"$type": "byte", "value": -129}, "byte must be in"),
        ({"$type": "long", "value": 2**63}, "does not fit an AMQP long"),
        ({"$type": "float", "value": 1e39}, "float32 out of range"),
        ({"$type": "float", "value": "nan"}, 'expected a number, "NaN", "Infinity"'),
        ({"$type": "double", "value": 10**400}, "is beyond a double"),
        ({"$type": "decimal128", "value": "AAE="}, "decimal128 takes exactly 16 bytes"),
        ({"$type": "char", "value": "ab"}, "a char is a string of one code point"),
        ({"$type": "char", "value": "\ud800"}, "a char is a string of one code point"),
        ({"$type": "timestamp", "value": "2024-05-01T12:00:00"}, "a timestamp is integer"),
        ({"$type": "timestamp", "value": 2**63}, "timestamp must be in"),
        ({"$type": "uuid", "value": "not-a-uuid"}, "a uuid is a string of 32 hex digits"),
        ({"$type": "binary", "value": "@@@@"}, "not base64 for binary"),
        ({"$type": "binary", "value": "caf\u00e9"}, "not base64 for binary"),
        ({"$type": "symbol", "value": "caf\u00e9"}, "a symbol is an ASCII string"),
        ({"$type": "string", "value": 1}, "expected a string"),
        ({"$type": "null", "value": 0}, "a null is null"),
        ({"$type": "list", "value": {}}, "a list is a JSON array"),
        ({"$type": "map", "value": [[1, 1], [1, 2]]}, "/value/1/0: key 1 is given twice"),
        ({"$type": "map", "value": [[[1], 2]]}, "a map key cannot be a list"),
        ({"$type": "described", "value": 1}, 'a described value needs a "descriptor"'),
        ({"$type": "described", "descriptor": "caf\u00e9", "value": 1},
         "/descriptor: a symbol is an ASCII string"),
        ({"$type": "described", "descriptor": -1, "value": 1}, "/descriptor: ulong must be in"),
        ({"$type": "array", "value": []}, "/type: None is not an array element type"),
        ({"$type": "array", "type": "described", "value": []}, "/type: 'described' is not"),
        ({"$type": "array", "type": "int", "value": 1}, "/value: an array's value is a JSON"),
        ({"$type": "array", "type": "int", "value": [1, 2**31]}, "/value/1: int32 must be in"),
        ({"$type": "array", "type": "array", "value": [[1]]}, "/value/0: expected a tagged array"),
        ({"$type": "array", "type": "int", "value": [], "x": 1}, "array has no field x"),
        ("\udfff", "a string with a lone surrogate"),
        ([[[[]]]], None),
    ],
)  # fmt: skip
def test_bad_typed_json(typed_json: Any, culprit: str | None) -> None:
    if culprit is None:
        value_from_json(typed_json)
        return
    error = mapping_error(value_from_json, typed_json)
    assert error.status == 422
    assert culprit in error.detail


def proton_map_entries(message: Message) -> list[tuple[str, Any]]:
    """The keys and values of the message's map body as Proton's C decoder walks them,
    each with its AMQP type name: a Python dict would fold true, 1 and 1.0 into one."""
    received = as_proton(message)
    data = proton.Data(cproton.pn_message_body(received._msg))
    data.rewind()
    assert data.next() == proton.Data.MAP
    data.enter()
    entries = []
    while data.next() is not None:
        entries.append((proton.Data.type_name(data.type()), data.get_object()))
    return entries


def test_map_keys_of_different_amqp_types_are_different_keys() -> None:
    """AMQP map keys differ by type as well as value: true and 1, 1 and 1.0, a string
    and a symbol, a long and a ulong are five keys (Python alone would see two)."""
    typed_json = {
        "$type": "map",
        "value": [
            [True, "bool"],
            [1, "long"],
            [1.0, "double"],
            [{"$type": "ulong", "value": 1}, "ulong"],
            ["a", "string"],
            [{"$type": "symbol", "value": "a"}, "symbol"],
        ],
    }
    value = value_from_json(typed_json)
    assert len(value) == 6
    entries = proton_map_entries(Message(body=value))
    keys = [(kind, key) for kind, key in entries[0::2]]
    assert keys == [("bool", True), ("long", 1), ("double", 1.0), ("ulong", 1),
                    ("string", "a"), ("symbol", "a")]  # fmt: skip
    assert [item for _, item in entries[1::2]] == [
        "bool", "long", "double", "ulong", "string", "symbol"
    ]  # fmt: skip
    # And back: the same keys, each with its type.
    assert through_json(value_to_json(value)) == typed_json
    assert value_from_json(through_json(value_to_json(value))) == value


@pytest.mark.parametrize(
    "pairs",
    [
        [[True, 1], [1, 2], [1, 3]],
        [[1, 1], [True, 2], [True, 3]],
        [[1.0, 1], ["1", 2], [1, 3], [1.0, 4]],
    ],
)
def test_the_same_key_of_the_same_type_twice_is_still_refused(pairs: list[Any]) -> None:
    error = mapping_error(value_from_json, {"$type": "map", "value": pairs})
    assert f"/value/{len(pairs) - 1}/0: key" in error.detail
    assert "given twice" in error.detail


def test_typed_json_nesting_is_bounded() -> None:
    deepest: Any = 1
    for _ in range(MAX_NESTING):
        deepest = {"$type": "described", "descriptor": 1, "value": deepest}
    value = value_from_json(deepest)
    Message(body=value).encode()
    too_deep = {"$type": "list", "value": [deepest]}
    assert "nest more than" in mapping_error(value_from_json, too_deep).detail


@SETTINGS
@given(s.values)
def test_every_value_round_trips_through_json(value: Any) -> None:
    typed_json = through_json(value_to_json(value))
    s.assert_same(value_from_json(typed_json), value)


@SETTINGS
@given(s.values.filter(lambda value: value is not None and not s.proton_misreads(value)))
def test_proton_reads_typed_json_bodies_as_their_amqp_type(value: Any) -> None:
    message = message_from_envelope({"body": through_json(value_to_json(value))})
    received = as_proton(message)
    s.assert_same(s.own_binaries(received.body), s.to_proton(value))


# ---------------------------------------------------------------------------------------
# Messages -> JSON


def test_message_to_json_shows_only_what_is_set() -> None:
    assert message_to_json(Message()) == {"body": None}
    message = Message(
        body={"sequence": 1},
        id=ulong(5),
        correlation_id=UUID,
        subject="s",
        address="q",
        user_id=b"\xff",
        priority=4,
        durable=False,
        ttl=1.5,
        properties={"colour": "green", "n": int32(5)},
        annotations={symbol("x-opt-a"): 1, "x-opt-b": 2},
    )
    assert message_to_json(message) == {
        "id": 5,
        "correlation_id": {"$type": "uuid", "value": str(UUID)},
        "address": "q",
        "subject": "s",
        "user_id": {"$type": "binary", "value": "/w=="},
        "ttl": 1.5,
        "properties": {"colour": "green", "n": {"$type": "int", "value": 5}},
        "annotations": {"x-opt-a": 1, "x-opt-b": 2},
        "body": {"sequence": 1},
    }


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (Message(body="hi"), {"body": "hi"}),
        (Message(body=PNG, inferred=True, content_type="image/png"),
         {"content_type": "image/png", "body_encoding": "base64", "body": "iVBORw0KGgoA/w=="}),
        (Message(body=b"\x00"), {"body_encoding": "base64", "inferred": False, "body": "AA=="}),
        (Message(body=DataSections([b"\x00", b"\x01"])),
         {"body_encoding": "base64", "body": ["AA==", "AQ=="]}),
        (Message(body=[1, "a"], inferred=True), {"inferred": True, "body": [1, "a"]}),
        (Message(body=SequenceSections([[1], [2]])), {"inferred": True, "body": [1, 2]}),
        (Message(body=(1, 2)), {"body": [1, 2]}),
        (Message(body=decimal128(bytes(16)), inferred=True),
         {"body_encoding": "base64", "body": "AAAAAAAAAAAAAAAAAAAAAA=="}),
    ],
)  # fmt: skip
def test_message_to_json_bodies(message: Message, shown: dict[str, Any]) -> None:
    assert message_to_json(message) == shown
    decoded = Message()
    decoded.decode(message.encode())
    assert message_to_json(decoded) == shown  # as the message is sent


def test_stream_frames_carry_the_delivery_handle_as_id() -> None:
    message = Message(body="hi", id=5, subject="s")
    assert stream_frame(17, message) == {"id": 17, "message_id": 5, "subject": "s", "body": "hi"}
    assert stream_frame("d1", Message(body=1)) == {"id": "d1", "body": 1}


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Messages with any fields and any kind of body (one amqp-sequence section: several
    come back as one, which is documented)."""
    fields: dict[str, Any] = {}
    optional = {
        "id": s.message_ids,
        "correlation_id": s.message_ids,
        "user_id": s.binaries.filter(bool),
        "address": s.texts,
        "subject": s.texts,
        "reply_to": s.texts,
        "group_id": s.texts,
        "reply_to_group_id": s.texts,
        "content_type": s.c_symbols,
        "content_encoding": s.c_symbols,
        "creation_time": s.milliseconds.map(lambda ms: ms / 1000),
        "expiry_time": s.milliseconds.map(lambda ms: ms / 1000),
        "ttl": st.integers(0, 2**32 - 1).map(lambda ms: ms / 1000),
        "group_sequence": st.integers(0, 2**32 - 1),
        "priority": st.integers(0, 255),
        "delivery_count": st.integers(0, 2**32 - 1),
        "durable": st.booleans(),
        "first_acquirer": st.booleans(),
        "instructions": s.annotation_maps,
        "annotations": s.annotation_maps,
        "properties": s.application_properties,
        "footer": s.annotation_maps,
    }
    for name in draw(st.sets(st.sampled_from(sorted(optional)))):
        fields[name] = draw(optional[name])
    kind = draw(st.sampled_from(["value", "data", "sections", "sequence", "binary", "none"]))
    if kind == "value":
        fields["body"] = draw(s.values)
    elif kind == "data":
        fields.update(body=draw(s.binaries), inferred=True)
    elif kind == "sections":
        fields["body"] = DataSections(draw(st.lists(s.binaries, min_size=2, max_size=3)))
    elif kind == "sequence":
        fields.update(body=draw(st.lists(s.small_values, max_size=4)), inferred=True)
    elif kind == "binary":
        fields["body"] = draw(s.binaries)
    return Message(**fields)


def assert_same_message(actual: Message, expected: Message) -> None:
    for name in Message.FIELDS:
        mine, theirs = getattr(actual, name), getattr(expected, name)
        if type(theirs) is DataSections:  # not a value: several sections
            assert type(mine) is DataSections and mine == theirs
        else:
            assert s.amqp_tag(mine) == s.amqp_tag(theirs), f"{name}: {mine!r} != {theirs!r}"


@SETTINGS
@given(messages())
def test_every_message_round_trips_through_an_envelope(sent: Message) -> None:
    received = Message()
    received.decode(sent.encode())
    envelope = through_json(message_to_json(received))
    again = message_from_envelope(envelope)
    assert_same_message(again, received)
    # And it is sent the same way: the same sections, fields and values.
    resent = Message()
    resent.decode(again.encode())
    assert_same_message(resent, received)


# ---------------------------------------------------------------------------------------
# Messages -> HTTP answers


@pytest.mark.parametrize(
    ("message", "body", "content_type"),
    [
        (Message(body="TWAS BRILLIG"), b"TWAS BRILLIG", "text/plain; charset=utf-8"),
        (Message(body="caf\u00e9"), "caf\u00e9".encode(), "text/plain; charset=utf-8"),
        (Message(body="<p/>", content_type="text/html; charset=latin-1"), b"<p/>",
         "text/html; charset=utf-8"),
        (Message(body="{}", content_type="application/json"), b"{}",
         "text/plain; charset=utf-8"),
        (Message(body=symbol("s")), b"s", "text/plain; charset=utf-8"),
        (Message(body={"sequence": 1}), b'{"sequence":1}', "application/json"),
        (Message(body=[1, ulong(2)]), b'[1,{"$type":"ulong","value":2}]', "application/json"),
        (Message(body=5), b"5", "application/json"),
        (Message(body=math.nan), b'{"$type":"double","value":"NaN"}', "application/json"),
        (Message(), b"null", "application/json"),
        (Message(body=[1, 2], inferred=True), b"[1,2]", "application/json"),
        (Message(body=SequenceSections([[1], [2]])), b"[1,2]", "application/json"),
        (Message(body=PNG, inferred=True, content_type="image/png"), PNG, "image/png"),
        (Message(body=PNG, inferred=True), PNG, "application/octet-stream"),
        (Message(body=b"raw"), b"raw", "application/octet-stream"),
        (Message(body=DataSections([b"a", b"b"]), content_type="text/plain"), b"ab",
         "text/plain"),
    ],
)  # fmt: skip
def test_reply_bodies(message: Message, body: bytes, content_type: str) -> None:
    reply = http_reply(message)
    assert (reply.body, reply.content_type) == (body, content_type)
    assert reply.headers == {}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain\r\nX-Injected: yes", "text"),
        ("application/x\nX-Injected: yes", b"bytes"),
        ("text/caf\u00e9", "text"),
        ("application/caf\u00e9", DataSections([b"bytes"])),
        ("image/png\x00", b"bytes"),
    ],
)
def test_a_reply_content_type_http_cannot_carry_is_a_502(content_type: str, body: Any) -> None:
    error = mapping_error(http_reply, Message(body=body, content_type=content_type))
    assert error.status == 502
    assert "content type" in error.detail


def test_a_reply_content_type_is_only_refused_where_it_would_be_carried() -> None:
    # A string body's non-text type is replaced by text/plain; a JSON body's is unused.
    for body in ("text", {"a": 1}):
        reply = http_reply(Message(body=body, content_type="application/x\r\nX: y"))
        assert "\n" not in reply.content_type


def test_reply_headers() -> None:
    message = Message(
        body="x",
        id=5,
        correlation_id="req 1",
        subject=" caf\u00e9 100%\r\n",
        reply_to="r",
        user_id=b"\xff a",
        group_id="g",
        group_sequence=2,
        reply_to_group_id="rg",
        content_encoding="gzip",
        creation_time=1714564800.25,
        expiry_time=1714568400,
        ttl=1.5,
        priority=9,
        durable=True,
        first_acquirer=True,
        delivery_count=3,
        address="the gateway's reply queue",  # not a header: the client never sees it
        properties={
            "colour": "green",
            "Caf\u00e9 au/lait": "\u20ac",
            "n": 5,
            "big": ulong(5),
            "ok": True,
        },
    )
    assert http_reply(message).headers == {
        "amqp-id": "5",
        "amqp-correlation-id": "req 1",
        "amqp-subject": "%20caf%C3%A9 100%25%0D%0A",
        "amqp-reply-to": "r",
        "amqp-user-id": "%FF a",
        "amqp-group-id": "g",
        "amqp-group-sequence": "2",
        "amqp-reply-to-group-id": "rg",
        "amqp-content-encoding": "gzip",
        "amqp-creation-time": "1714564800.25",
        "amqp-expiry-time": "1714568400",
        "amqp-ttl": "1.5",
        "amqp-priority": "9",
        "amqp-durable": "true",
        "amqp-first-acquirer": "true",
        "amqp-delivery-count": "3",
        "amqp-app-colour": "green",
        "amqp-app-Caf%C3%A9%20au%2Flait": "%E2%82%AC",
        "amqp-app-n": "5",
        "amqp-app-big": '{"$type":"ulong","value":5}',
        "amqp-app-ok": "true",
    }


@pytest.mark.parametrize(
    ("field", "value", "header"),
    [
        ("id", UUID, str(UUID)),
        ("id", b"\x00\x01", "%00%01"),
        ("id", "007", "007"),
        ("correlation_id", ulong(2**64 - 1), str(2**64 - 1)),
    ],
)
def test_reply_ids(field: str, value: Any, header: str) -> None:
    headers = http_reply(Message(**{field: value})).headers
    assert headers == {"amqp-" + field.replace("_", "-"): header}


def test_reply_headers_read_back_as_the_same_fields() -> None:
    message = Message(
        id="order 17",
        correlation_id=42,
        subject="\tcaf\u00e9 \u2603 100% done\n",
        user_id=b"\x00\xff",
        creation_time=1714564800.25,
        ttl=0.001,
        durable=True,
        properties={"caf\u00e9 au/lait": "x%y", "k": " padded "},
    )
    headers = http_reply(message).headers
    assert all(name.isascii() and value.isascii() and value.isprintable()
               for name, value in headers.items())  # fmt: skip
    read = message_from_body(b"", None, headers)
    for name in ("id", "correlation_id", "subject", "user_id", "creation_time", "ttl",
                 "durable", "properties"):  # fmt: skip
        assert getattr(read, name) == getattr(message, name), name


@SETTINGS
@given(st.text(st.characters(exclude_categories=["Cs"])), s.binaries)
def test_any_text_and_bytes_survive_reply_headers(text: str, raw: bytes) -> None:
    headers = http_reply(Message(subject=text, user_id=raw or None)).headers
    assert all(value.isascii() and value.isprintable() and value == value.strip()
               for value in headers.values())  # fmt: skip
    read = message_from_body(b"", None, headers)
    assert read.subject == text
    assert read.user_id == (raw or None)
