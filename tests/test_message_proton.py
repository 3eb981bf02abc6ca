"""amqp_core.Message against Qpid Proton's Message: each decodes the other's encoding to
the same field values, our own round trip keeps everything (footer and multi-section
bodies included), and the API behaves as Proton's where that is sane."""

from __future__ import annotations

import uuid
from typing import Any

import amqp_strategies as s
import proton
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amqp_core import DataSections, Message, SequenceSections, symbol

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

STRING_FIELDS = ("address", "subject", "reply_to", "group_id", "reply_to_group_id")
TIME_FIELDS = ("expiry_time", "creation_time", "ttl")
NUMBER_FIELDS = ("group_sequence", "priority", "delivery_count")
FLAG_FIELDS = ("durable", "first_acquirer", "inferred")
MAP_FIELDS = ("instructions", "annotations", "properties")


def _seconds(milliseconds: int) -> float:
    return milliseconds / 1000


@st.composite
def bodies(draw: st.DrawFn) -> tuple[Any, bool]:
    """(body, inferred): an amqp-value of any value, a data section, or an amqp-sequence."""
    kind = draw(st.sampled_from(["value", "data", "sequence"]))
    if kind == "data":
        return draw(s.binaries), True
    if kind == "sequence":
        return draw(st.lists(s.small_values, max_size=5)), True
    return draw(s.values.filter(lambda value: value is not None)), False


@st.composite
def all_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A value for every one of Proton's Message attributes."""
    body, inferred = draw(bodies())
    fields: dict[str, Any] = {
        "id": draw(s.message_ids),
        "correlation_id": draw(s.message_ids),
        "user_id": draw(s.binaries.filter(bool)),
        "content_type": draw(s.c_symbols),
        "content_encoding": draw(s.c_symbols),
        "expiry_time": _seconds(draw(s.milliseconds)),
        "creation_time": _seconds(draw(s.milliseconds)),
        "ttl": _seconds(draw(st.integers(0, 2**32 - 1))),
        "group_sequence": draw(st.integers(0, 2**32 - 1)),
        "priority": draw(st.integers(0, 255)),
        "delivery_count": draw(st.integers(0, 2**32 - 1)),
        "durable": draw(st.booleans()),
        "first_acquirer": draw(st.booleans()),
        "inferred": inferred,
        "instructions": draw(s.annotation_maps),
        "annotations": draw(s.annotation_maps),
        "properties": draw(s.application_properties),
        "body": body,
    }
    for name in STRING_FIELDS:
        fields[name] = draw(s.c_texts)
    return fields


def proton_misreads(fields: dict[str, Any]) -> bool:
    """Whether Proton 0.40's decoder gets these fields wrong, so it cannot be the oracle
    (see `amqp_strategies.proton_misreads`)."""
    return any(s.proton_misreads(fields.get(name)) for name in (*MAP_FIELDS, "body"))


def expected_id(value: Any) -> Any:
    """A message id as it comes back: a ulong (or a plain int, which travels as a ulong)
    reads back as a plain int, in both libraries."""
    return int(value) if isinstance(value, int) else value


def proton_id(value: Any) -> Any:
    """Proton's message id getter gives binary as a memoryview."""
    if type(value) is memoryview:
        return bytes(value)
    return value


def expected_time(seconds: float) -> float:
    """Both libraries store `int(seconds * 1000)` milliseconds."""
    return int(seconds * 1000) / 1000


def check_fields(
    message: Any, fields: dict[str, Any], get_id: Any = lambda value: value, body: bool = True
) -> None:
    """`message` (either library's) holds `fields` as they come back from the wire."""
    s.assert_same(get_id(message.id), expected_id(fields["id"]))
    s.assert_same(get_id(message.correlation_id), expected_id(fields["correlation_id"]))
    s.assert_same(message.user_id, fields["user_id"])
    s.assert_same(message.content_type, symbol(fields["content_type"]))
    s.assert_same(message.content_encoding, symbol(fields["content_encoding"]))
    for name in STRING_FIELDS:
        s.assert_same(getattr(message, name), fields[name])
    for name in TIME_FIELDS:
        assert getattr(message, name) == expected_time(fields[name]), name
    for name in NUMBER_FIELDS + FLAG_FIELDS:
        assert getattr(message, name) == fields[name], name
    for name in MAP_FIELDS:
        s.assert_same(s.own_binaries(getattr(message, name)), fields[name])
    if body:
        s.assert_same(s.own_binaries(message.body), fields["body"])


def to_proton_message(fields: dict[str, Any]) -> proton.Message:
    message = proton.Message()
    for name, value in fields.items():
        if name in ("id", "correlation_id"):
            value = value if type(value) is int else s.to_proton(value)
        elif name in MAP_FIELDS or name == "body":
            value = s.to_proton(value)
        setattr(message, name, value)
    return message


# ---------------------------------------------------------------------------------------
# Interoperability


@SETTINGS
@given(all_fields())
def test_our_message_decodes_with_proton(fields: dict[str, Any]) -> None:
    assume(not proton_misreads(fields))
    encoded = Message(**fields).encode()
    theirs = proton.Message()
    theirs.decode(encoded)
    check_fields(theirs, fields, proton_id)


@SETTINGS
@given(all_fields())
def test_proton_message_decodes_with_ours(fields: dict[str, Any]) -> None:
    encoded = to_proton_message(fields).encode()
    ours = Message()
    ours.decode(encoded)
    check_fields(ours, fields)


@SETTINGS
@given(all_fields())
def test_decoding_without_the_body_reads_every_other_section_of_protons(
    fields: dict[str, Any],
) -> None:
    encoded = to_proton_message(fields).encode()
    ours = Message()
    ours.decode(encoded, body=False)
    check_fields(ours, {**fields, "inferred": False}, body=False)  # inferred: of the body
    assert (ours.body, ours.footer) == (None, None)


@SETTINGS
@given(s.message_ids, st.sampled_from(["id", "correlation_id"]))
def test_message_ids_of_every_type(value: Any, field: str) -> None:
    ours = Message(**{field: value}, body="x")
    theirs = proton.Message()
    theirs.decode(ours.encode())
    s.assert_same(proton_id(getattr(theirs, field)), expected_id(value))
    back = Message()
    back.decode(to_proton_message({field: value, "body": "x"}).encode())
    s.assert_same(getattr(back, field), expected_id(value))


@SETTINGS
@given(bodies())
def test_bodies_of_every_kind(body_and_inferred: tuple[Any, bool]) -> None:
    body, inferred = body_and_inferred
    assume(not proton_misreads({"body": body}))
    theirs = proton.Message()
    theirs.decode(Message(body=body, inferred=inferred).encode())
    s.assert_same(s.own_binaries(theirs.body), body)
    assert theirs.inferred == inferred
    ours = Message()
    ours.decode(proton.Message(body=s.to_proton(body), inferred=inferred).encode())
    s.assert_same(ours.body, body)
    assert ours.inferred == inferred


def test_tutorial_message_decoded_by_proton(capsys: pytest.CaptureFixture[str]) -> None:
    theirs = proton.Message()
    theirs.decode(Message(id=1, body={"sequence": 1}).encode())
    print(theirs.body)
    assert capsys.readouterr().out == "{'sequence': 1}\n"
    assert theirs.id == 1
    ours = Message()
    ours.decode(proton.Message(id=1, body={"sequence": 1}).encode())
    s.assert_same(ours.body, {"sequence": 1})
    s.assert_same(ours.id, 1)
    assert repr(ours) == repr(theirs) == "Message(priority=4, id=1, body={'sequence': 1})"


def test_body_only_message_has_no_other_sections() -> None:
    """Proton writes header and properties always; we leave default sections out, and
    Proton reads the result with its defaults."""
    encoded = Message(body="hello").encode()
    assert encoded.hex() == "005377a10568656c6c6f"
    theirs = proton.Message()
    theirs.decode(encoded)
    assert theirs.body == "hello"
    assert theirs.priority == 4
    assert theirs.durable is False


# ---------------------------------------------------------------------------------------
# Our own round trip


def sections_bodies() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(s.binaries, min_size=2, max_size=4).map(DataSections),
        st.lists(st.lists(s.values, max_size=4), min_size=2, max_size=4).map(SequenceSections),
    )


@SETTINGS
@given(all_fields(), s.annotation_maps)
def test_round_trip_with_footer(fields: dict[str, Any], footer: dict[Any, Any]) -> None:
    message = Message(**fields, footer=footer)
    decoded = Message()
    decoded.decode(message.encode())
    check_fields(decoded, fields)
    s.assert_same(decoded.footer, footer)
    assert decoded.encode() == message.encode()


@SETTINGS
@given(all_fields(), sections_bodies(), st.none() | s.annotation_maps)
def test_round_trip_multiple_sections(
    fields: dict[str, Any], body: Any, footer: dict[Any, Any] | None
) -> None:
    fields = {**fields, "body": body, "inferred": True}
    message = Message(**fields, footer=footer)
    decoded = Message()
    decoded.decode(message.encode())
    assert type(decoded.body) is type(body)
    assert len(decoded.body) == len(body)
    for part, original in zip(decoded.body, body, strict=True):
        s.assert_same(part, original)
    check_fields(decoded, fields, body=False)
    s.assert_same(decoded.footer, footer)


@pytest.mark.parametrize(
    "body",
    [DataSections([b"a", b"b"]), SequenceSections([[1], [2]])],
    ids=["data", "sequence"],
)
def test_multiple_sections_then_footer(body: Any) -> None:
    """The kind of a multi-section body must not depend on what section follows it."""
    decoded = Message()
    decoded.decode(Message(body=body, footer={symbol("x"): 1}).encode())
    assert type(decoded.body) is type(body)
    assert decoded.body == body
    assert decoded.footer == {symbol("x"): 1}


def test_single_sections_decode_as_plain_bodies() -> None:
    for body, plain in [(DataSections([b"a"]), b"a"), (SequenceSections([[1]]), [1])]:
        decoded = Message()
        decoded.decode(Message(body=body).encode())
        assert type(decoded.body) is type(plain)
        assert decoded.body == plain
        assert decoded.inferred is True


def test_multiple_data_sections_on_the_wire() -> None:
    encoded = Message(body=DataSections([b"ab", b"c"])).encode()
    assert encoded.hex() == "005375a0026162" + "005375a00163"
    encoded = Message(body=SequenceSections([[1], []])).encode()
    assert encoded.hex() == "005376c003015501" + "00537645"


# ---------------------------------------------------------------------------------------
# The API


def test_repr_shows_fields_and_values() -> None:
    message = Message(
        id=1, address="queue", durable=True, priority=9, body={"sequence": 1}, subject="hi"
    )
    text = repr(message)
    assert text.startswith("Message(")
    for part in ("id=1", "address='queue'", "durable=True", "priority=9", "subject='hi'"):
        assert part in text
    assert "body={'sequence': 1}" in text
    assert repr(Message()) == repr(proton.Message()) == "Message(priority=4)"
    uid = uuid.UUID(int=7)
    assert repr(uid) in repr(Message(correlation_id=uid))


def test_unknown_keyword_raises_type_error() -> None:
    with pytest.raises(TypeError, match="colour"):
        Message(colour="red")
    with pytest.raises(TypeError):
        Message(body="x", adress="typo")


DEFAULTS_AS_PROTON = (
    "id", "correlation_id", "address", "subject", "reply_to", "group_id",
    "reply_to_group_id", "expiry_time", "creation_time", "group_sequence", "durable",
    "priority", "ttl", "first_acquirer", "delivery_count", "inferred", "instructions",
    "annotations", "properties", "body",
)  # fmt: skip


@pytest.mark.parametrize("name", DEFAULTS_AS_PROTON)
def test_defaults_match_protons(name: str) -> None:
    assert getattr(Message(), name) == getattr(proton.Message(), name)


def test_defaults() -> None:
    message = Message()
    assert message.priority == 4 == Message.DEFAULT_PRIORITY == proton.Message.DEFAULT_PRIORITY
    assert message.durable is False
    assert message.ttl == 0
    assert message.delivery_count == 0
    # Proton's getters give b'' and symbol('None') for these when unset; ours say None.
    assert message.user_id is None
    assert message.content_type is None
    assert message.content_encoding is None
    assert message.footer is None


def test_clear_restores_defaults() -> None:
    message = Message(id=1, priority=1, body="x")
    message.clear()
    assert message == Message()
    assert repr(message) == "Message(priority=4)"


def test_a_non_ascii_symbol_from_protons_message_reads_and_writes_back_as_utf8() -> None:
    """AMQP symbols are ASCII, yet Proton's Message writes a content type it was given
    in UTF-8 (and reads it back). A message a Proton program sends must decode here, or
    a broker or gateway on amqp_core refuses it, and must go on as it came."""
    theirs = proton.Message(body=b"x", content_type="t\u00ebxt/plain")
    encoded = bytes(theirs.encode())
    ours = Message()
    ours.decode(encoded)
    assert ours.content_type == "t\u00ebxt/plain"
    back = proton.Message()
    back.decode(ours.encode())
    assert back.content_type == "t\u00ebxt/plain" and back.body == b"x"
