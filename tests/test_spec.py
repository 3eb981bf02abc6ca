"""How the classes made from the spec tables behave: encoding, decoding, defaults, errors."""

from __future__ import annotations

from typing import Any

import pytest

from amqp_core import codec, spec
from amqp_core.spec import (
    Accepted,
    AmqpValue,
    ApplicationProperties,
    Attach,
    Data,
    Detach,
    Error,
    Modified,
    Open,
    Source,
    Target,
    Transfer,
)
from amqp_core.types import UNDESCRIBED, AMQPType, Array, Described, symbol, ubyte, uint, ulong

SELECTOR = Described(symbol("apache.org:selector-filter:string"), "colour = 'red'")

# A value for a "*" field, by what the field requires.
REQUIRED_SAMPLES: dict[str, Any] = {
    "source": Source(address="queue", default_outcome=Modified(delivery_failed=True)),
    "target": Target(address="topic", capabilities=["topic"]),
    "delivery-state": spec.Rejected(error=Error(condition=spec.NOT_FOUND)),
    "outcome": spec.Released(),
    "address": "address",
    "message-id": ulong(42),
    "txn-id": b"txn-1",
    "global-tx-id": b"global-1",
}
# A value for a field of each primitive type: never a table default.
PRIMITIVE_SAMPLES: dict[str, Any] = {
    "boolean": True,
    "ubyte": ubyte(7),
    "ushort": 7,
    "uint": uint(7),
    "ulong": 7,
    "string": "text",
    "symbol": "sym",
    "binary": b"bytes",
    "timestamp": 1_700_000_000_000,
    "map": {b"tag": None},
}
RESTRICTED_SAMPLES: dict[str, Any] = {
    "fields": {"key": "value"},
    "node-properties": {"lifetime-policy": spec.DeleteOnClose()},
    "filter-set": {"selector": SELECTOR},
}


def sample(field: spec.Field) -> Any:
    """A value for `field` that differs from its default."""
    if field.type == "error":
        value: Any = Error(condition=spec.DECODE_ERROR, description="bad", info={"at": 3})
    elif field.type == "*":
        value = REQUIRED_SAMPLES[field.requires or ""]
    elif field.type in RESTRICTED_SAMPLES:
        value = RESTRICTED_SAMPLES[field.type]
    elif field.type in spec.RESTRICTED and spec.RESTRICTED[field.type].choices:
        names = [name for name in spec.RESTRICTED[field.type].choices if name != field.default]
        value = spec.choice(field.type, names[-1])
    else:
        value = PRIMITIVE_SAMPLES[spec.primitive_of(field.type)]
    return [value, value] if field.multiple else value


@pytest.mark.parametrize("name", sorted(spec.COMPOSITES))
def test_composite_round_trip_with_every_field_set(name: str) -> None:
    entry = spec.COMPOSITES[name]
    cls = spec.CLASSES[name]
    value = cls(**{spec.attribute_name(field.name): sample(field) for field in entry.fields})
    assert len(value.value) == len(entry.fields)
    decoded = spec.decode(codec.encode(value))
    assert type(decoded) is cls
    assert decoded == value
    assert codec.encode(decoded) == codec.encode(value)


@pytest.mark.parametrize(
    "section",
    [
        Data(b"\x00\x01"),
        AmqpValue({"nested": [1, 2.5, None]}),
        spec.AmqpSequence([1, "two"]),
        ApplicationProperties({"colour": "red"}),
        spec.DeliveryAnnotations({"x-opt-a": 1}),
        spec.MessageAnnotations({"x-opt-b": "b"}),
        spec.Footer({"hash": b"\x01"}),
    ],
    ids=lambda section: type(section).__name__,
)
def test_section_round_trip(section: Described) -> None:
    decoded = spec.decode(codec.encode(section))
    assert type(decoded) is type(section)
    assert decoded == section


def test_section_annotations_get_symbol_keys() -> None:
    assert spec.MessageAnnotations({"x-opt-b": 1, 5: 2}).value == {
        symbol("x-opt-b"): 1,
        ulong(5): 2,
    }


def test_classes_are_found_by_name_and_by_descriptor() -> None:
    assert spec.SaslInit(mechanism="PLAIN").descriptor == ulong(0x41)
    assert spec.SaslInit.amqp_type.code == 0x41
    assert spec.SaslInit.symbolic_descriptor == symbol("amqp:sasl-init:list")
    assert spec.DeleteOnNoLinksOrMessages.amqp_type.provides == ("lifetime-policy",)
    assert spec.CLASSES["sasl-init"] is spec.SaslInit
    assert spec.BY_DESCRIPTOR[0x41] is spec.SaslInit
    assert spec.BY_DESCRIPTOR["amqp:sasl-init:list"] is spec.SaslInit


def test_defaults_are_the_specs() -> None:
    attach = Attach(name="link", handle=0, role=False)
    assert attach.snd_settle_mode == ubyte(2)
    assert attach.rcv_settle_mode == ubyte(0)
    assert attach.incomplete_unsettled is False
    assert attach.source is None
    assert Open().max_frame_size == uint(4294967295)
    assert Open().channel_max == 65535
    source = Source()
    assert (source.durable, source.expiry_policy, source.timeout) == (0, "session-end", 0)
    assert type(source.expiry_policy) is symbol


def test_trailing_nulls_and_defaults_are_left_out() -> None:
    assert Open(container_id="x").value == ["x"]
    assert codec.encode(Open(container_id="x")).hex() == "005310c00401a10178"
    # A field set to its default is sent as null: the same meaning, fewer bytes.
    assert Open(container_id="x", max_frame_size=4294967295).value == ["x"]
    assert Attach(name="l", handle=1, role=True, max_message_size=10).value == [
        "l",
        uint(1),
        True,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        ulong(10),
    ]
    assert Accepted().value == []


def test_values_are_coerced_to_the_field_types() -> None:
    open_ = Open(container_id="c", channel_max=10, idle_time_out=5000, properties={"p": 1})
    value = open_.value
    assert [type(item).__name__ for item in value[2:5]] == ["NoneType", "ushort", "uint"]
    assert list(value[9]) == [symbol("p")]
    transfer = Transfer(handle=1, delivery_id=2, delivery_tag=bytearray(b"t"), message_format=0)
    assert transfer.value == [uint(1), uint(2), b"t", uint(0)]
    assert type(transfer.value[2]) is bytes


def test_multiple_fields_encode_as_arrays_and_decode_as_lists() -> None:
    open_ = Open(container_id="x", offered_capabilities=["ANONYMOUS-RELAY"], outgoing_locales="en")
    value = open_.value
    assert value[7] == Array(UNDESCRIBED, AMQPType.SYMBOL, symbol("ANONYMOUS-RELAY"))
    assert value[5] == Array(UNDESCRIBED, AMQPType.SYMBOL, symbol("en"))
    decoded = spec.decode(codec.encode(open_))
    assert decoded.offered_capabilities == [symbol("ANONYMOUS-RELAY")]
    assert decoded.outgoing_locales == ["en"]
    # The spec lets a peer send one value instead of an array of one.
    single = Described(ulong(0x10), ["x", None, None, None, None, None, None, symbol("ONE")])
    assert spec.from_described(single).offered_capabilities == [symbol("ONE")]
    many = Described(ulong(0x40), [Array(UNDESCRIBED, AMQPType.SYMBOL, symbol("PLAIN"))])
    assert spec.from_described(many).sasl_server_mechanisms == [symbol("PLAIN")]


def test_nested_described_fields_become_classes() -> None:
    attach = Attach(
        name="l",
        handle=0,
        role=True,
        source=Source(address="q", default_outcome=Modified(), filter={"sel": SELECTOR}),
        target=Target(),
    )
    decoded = spec.decode(codec.encode(attach))
    assert type(decoded.source) is Source
    assert type(decoded.source.default_outcome) is Modified
    assert type(decoded.target) is Target
    # A filter is an extension type: it stays a plain Described.
    assert type(decoded.source.filter[symbol("sel")]) is Described
    detach = spec.decode(codec.encode(Detach(handle=0, error=Error(condition=spec.STOLEN))))
    assert detach.error == Error(condition=symbol("amqp:link:stolen"))


def test_unknown_descriptors_stay_described() -> None:
    unknown = Described(ulong(0x1234), [1, "two"])
    assert spec.decode(codec.encode(unknown)) == unknown
    assert type(spec.decode(codec.encode(unknown))) is Described
    by_symbol = Described(symbol("com.example:thing"), None)
    assert spec.from_described(by_symbol) is by_symbol
    assert spec.from_described("not described") == "not described"
    # An extension delivery state inside a transfer is kept, not an error.
    transfer = Described(ulong(0x14), [uint(0), None, None, None, None, None, None, unknown])
    assert spec.from_described(transfer).state == unknown


def test_symbolic_descriptors_and_extra_fields_are_accepted() -> None:
    decoded = spec.from_described(Described(symbol("amqp:open:list"), ["x"]))
    assert decoded == Open(container_id="x")
    extra = Described(ulong(0x18), [None, "a field from the future"])
    assert spec.from_described(extra) == spec.Close()


def test_a_missing_mandatory_field_is_an_encode_error() -> None:
    with pytest.raises(codec.EncodeError, match="open: mandatory field container-id"):
        codec.encode(Open(hostname="h"))
    with pytest.raises(codec.EncodeError, match="attach field handle"):
        codec.encode(Attach(name="l", handle=-1, role=False))


def test_a_missing_mandatory_field_is_a_decode_error() -> None:
    with pytest.raises(codec.DecodeError, match="begin: mandatory field next-outgoing-id"):
        spec.from_described(Described(ulong(0x11), [None, None, uint(1), uint(1)]))


@pytest.mark.parametrize(
    ("described", "message"),
    [
        (Described(ulong(0x12), ["l", "zero", False]), "attach field handle: expected handle"),
        (Described(ulong(0x16), [uint(0), False, "oops"]), "detach field error: expected error"),
        (
            Described(ulong(0x15), [True, uint(0), None, True, Open(container_id="x")]),
            "disposition field state: expected delivery-state",
        ),
        (Described(ulong(0x10), "not a list"), "open must be a described list"),
        (Described(ulong(0x75), "text"), "data must hold a binary"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_decode_error(described: Described, message: str) -> None:
    with pytest.raises(codec.DecodeError, match=message):
        spec.from_described(described)


def test_unknown_constructor_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="maxframe"):
        Open(container_id="x", maxframe=1)


def test_repr_shows_fields_that_differ_from_their_defaults() -> None:
    assert repr(Open(container_id="x")) == "Open(container_id='x')"
    assert repr(Attach(name="l", handle=0, role=True, snd_settle_mode=2)) == (
        "Attach(name='l', handle=0, role=True)"
    )
    assert repr(Data(b"x")) == "Data(b'x')"


def test_error_conditions_are_constants() -> None:
    assert spec.DECODE_ERROR == "amqp:decode-error"
    assert type(spec.DECODE_ERROR) is symbol
    assert spec.FRAMING_ERROR == "amqp:connection:framing-error"
    assert spec.NOT_ALLOWED == "amqp:not-allowed"
    assert spec.TRANSFER_LIMIT_EXCEEDED == "amqp:link:transfer-limit-exceeded"
    # "redirect" is both a connection and a link error.
    assert spec.CONNECTION_REDIRECT == "amqp:connection:redirect"
    assert spec.LINK_REDIRECT == "amqp:link:redirect"
    assert spec.TRANSACTION_ROLLBACK == "amqp:transaction:rollback"
    assert len(spec.ERROR_CONDITIONS) == 13 + 3 + 4 + 5 + 3
    assert spec.MIN_MAX_FRAME_SIZE == 512 and spec.PORT == 5672


def _typed(value: Any) -> Any:
    """`value` as nested (type name, value) pairs, so equal-looking values of different
    AMQP types (uint(1) and ulong(1)) compare unequal."""
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, dict):
        return {_typed(key): _typed(item) for key, item in value.items()}
    if type(value).__name__ == "Described":
        return ("described", _typed(value.descriptor), _typed(value.value))
    if type(value).__name__ == "Array":
        return ("array", repr(value.descriptor), int(value.type), _typed(list(value.elements)))
    return (type(value).__name__, value)


def test_proton_reads_what_we_write_and_we_read_what_it_writes() -> None:
    proton = pytest.importorskip("proton")
    attach = Attach(
        name="link",
        handle=1,
        role=True,
        snd_settle_mode=1,
        source=Source(
            address="queue",
            durable=2,
            default_outcome=Modified(delivery_failed=True, message_annotations={"x-opt-a": 1}),
            outcomes=["amqp:accepted:list", "amqp:modified:list"],
        ),
        target=Target(address="reply", capabilities=["temporary-queue"]),
        initial_delivery_count=0,
        max_message_size=1024,
    )
    sym, ulong_, uint_ = proton.symbol, proton.ulong, proton.uint
    expected = proton.Described(
        ulong_(0x12),
        [
            "link",
            uint_(1),
            True,
            proton.ubyte(1),
            None,
            proton.Described(
                ulong_(0x28),
                [
                    "queue",
                    uint_(2),
                    *[None] * 6,
                    proton.Described(ulong_(0x27), [True, None, {sym("x-opt-a"): 1}]),
                    proton.Array(
                        proton.UNDESCRIBED,
                        proton.Data.SYMBOL,
                        sym("amqp:accepted:list"),
                        sym("amqp:modified:list"),
                    ),
                ],
            ),
            proton.Described(
                ulong_(0x29),
                [
                    "reply",
                    *[None] * 5,
                    proton.Array(proton.UNDESCRIBED, proton.Data.SYMBOL, sym("temporary-queue")),
                ],
            ),
            None,
            None,
            uint_(0),
            ulong_(1024),
        ],
    )
    data = proton.Data()
    data.decode(codec.encode(attach))
    assert _typed(data.get_object()) == _typed(expected)

    data = proton.Data()
    data.put_object(expected)
    decoded = spec.decode(data.encode())
    assert decoded == attach
    assert type(decoded.source.default_outcome) is Modified
