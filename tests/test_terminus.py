"""`Terminus` has Proton's API, and its attach fields carry what Proton's would.

The Proton side is a real `proton.Connection` whose transport writes its attach frame
into memory; no network is involved. The same configuration function sets up both
termini, which is itself a check that the two APIs agree.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

import amqp_core
from amqp_core import codec, spec
from amqp_core.engine.terminus import (
    RCV_FIRST,
    RCV_SECOND,
    SND_MIXED,
    SND_SETTLED,
    SND_UNSETTLED,
    Terminus,
)
from amqp_core.types import UNDESCRIBED, AMQPType, Array, Described, symbol

proton = pytest.importorskip("proton")

OURS = SimpleNamespace(
    symbol=amqp_core.symbol,
    Described=amqp_core.Described,
    Array=amqp_core.Array,
    UNDESCRIBED=amqp_core.UNDESCRIBED,
)
THEIRS = SimpleNamespace(
    symbol=proton.symbol,
    Described=proton.Described,
    Array=proton.Array,
    UNDESCRIBED=proton.UNDESCRIBED,
)
SELECTOR = "apache.org:selector-filter:string"
ATTACH = 0x12
SOURCE_FIELD, TARGET_FIELD = 5, 6

Configure = Callable[[Any, SimpleNamespace], None]


def topic_subscriber(source: Any, lib: SimpleNamespace) -> None:
    source.address = "news"
    source.filter.put_dict({lib.symbol("selector"): lib.Described(lib.symbol(SELECTOR), "a = 1")})
    source.distribution_mode = Terminus.DIST_MODE_COPY
    source.capabilities.put_object(lib.symbol("topic"))


def dynamic_reply_queue(source: Any, lib: SimpleNamespace) -> None:
    source.dynamic = True
    lifetime = lib.Described(lib.symbol("amqp:delete-on-close:list"), [])
    source.properties.put_dict({lib.symbol("lifetime-policy"): lifetime})
    source.expiry_policy = Terminus.EXPIRE_WITH_LINK


def durable_subscription(source: Any, lib: SimpleNamespace) -> None:
    source.address = "orders"
    source.durability = Terminus.DELIVERIES
    source.expiry_policy = Terminus.EXPIRE_NEVER
    source.timeout = 30
    source.distribution_mode = Terminus.DIST_MODE_MOVE
    outcomes = [lib.symbol("amqp:accepted:list"), lib.symbol("amqp:rejected:list")]
    source.outcomes.put_py_array(lib.Array(lib.UNDESCRIBED, AMQPType.SYMBOL, *outcomes))
    source.capabilities.put_py_array(
        lib.Array(lib.UNDESCRIBED, AMQPType.SYMBOL, lib.symbol("queue"), lib.symbol("shared"))
    )


def configuration_durable(source: Any, lib: SimpleNamespace) -> None:
    source.address = "config"
    source.durability = Terminus.CONFIGURATION
    source.expiry_policy = Terminus.EXPIRE_WITH_CONNECTION


def sender_target(target: Any, lib: SimpleNamespace) -> None:
    target.address = "queue/a"
    target.capabilities.put_py_array(lib.Array(lib.UNDESCRIBED, AMQPType.SYMBOL, lib.symbol("q")))
    target.properties.put_dict({lib.symbol("x-opt"): 7})
    target.durability = Terminus.CONFIGURATION


def coordinator(target: Any, lib: SimpleNamespace) -> None:
    target.type = Terminus.COORDINATOR
    target.capabilities.put_object(lib.symbol("amqp:local-transactions"))


def unspecified(terminus: Any, lib: SimpleNamespace) -> None:
    terminus.type = Terminus.UNSPECIFIED


def untouched(terminus: Any, lib: SimpleNamespace) -> None:
    pass


# (link kind, which terminus the case configures, how)
CASES: list[tuple[str, str, Configure]] = [
    ("receiver", "source", topic_subscriber),
    ("receiver", "source", dynamic_reply_queue),
    ("receiver", "source", durable_subscription),
    ("receiver", "source", configuration_durable),
    ("receiver", "source", unspecified),
    ("receiver", "source", untouched),
    ("sender", "target", sender_target),
    ("sender", "target", coordinator),
    ("sender", "target", unspecified),
    ("sender", "source", untouched),
]
IDS = [f"{kind}-{which}-{configure.__name__}" for kind, which, configure in CASES]


def proton_attach_fields(kind: str, which: str, configure: Configure) -> tuple[bytes, bytes]:
    """The encoded source and target fields of the attach Proton writes for a link
    configured by `configure`."""
    connection = proton.Connection()
    transport = proton.Transport()
    transport.bind(connection)
    connection.open()
    session = connection.session()
    session.open()
    link = session.receiver("r") if kind == "receiver" else session.sender("s")
    configure(getattr(link, which), THEIRS)
    link.open()
    output = bytes(transport.peek(1 << 16))
    position = 8  # the AMQP protocol header
    while position < len(output):
        size, data_offset = struct.unpack_from(">IB", output, position)
        body = output[position + 4 * data_offset : position + size]
        position += size
        if body and codec.decode(body).descriptor == ATTACH:
            fields = proton.Data()
            fields.decode(body)
            attach = fields.get_object()
            source, target = attach.value[SOURCE_FIELD], attach.value[TARGET_FIELD]
            return _proton_encode(source), _proton_encode(target)
    raise AssertionError("Proton wrote no attach")


def _proton_encode(value: Any) -> bytes:
    data = proton.Data()
    data.put_object(value)
    return bytes(data.encode())


def our_fields(kind: str, which: str, configure: Configure) -> tuple[Terminus, Terminus]:
    source, target = Terminus(Terminus.SOURCE), Terminus(Terminus.TARGET)
    configure(source if which == "source" else target, OURS)
    return source, target


def _proton_value(raw: bytes) -> Any:
    data = proton.Data()
    data.decode(raw)
    return data.get_object()


def _symbols(value: Any) -> list[str] | None:
    """A multiple-symbol field as a list: the spec lets one symbol stand for an array of
    one, and Proton sends a lone capability that way."""
    if value is None:
        return None
    if isinstance(value, proton.Array):
        return list(value.elements)
    return [value]


# Field positions in the source and target lists (spec 3.5.3, 3.5.4).
PROPERTIES = 5
DIST_MODE, FILTER, OUTCOMES, SOURCE_CAPABILITIES = 6, 7, 9, 10
TARGET_CAPABILITIES = 6


def _field(described: Any, index: int) -> Any:
    items = described.value
    return items[index] if index < len(items) else None


@pytest.mark.parametrize(("kind", "which", "configure"), CASES, ids=IDS)
def test_attach_fields_match_protons(kind: str, which: str, configure: Configure) -> None:
    theirs = proton_attach_fields(kind, which, configure)
    ours = tuple(
        codec.encode(terminus.to_spec()) for terminus in our_fields(kind, which, configure)
    )
    for our_raw, their_raw in zip(ours, theirs, strict=True):
        # The whole terminus means the same: Proton writes some defaults (durable 0,
        # timeout 0) that we leave out, which the spec classes treat as equal.
        assert spec.decode(our_raw) == spec.decode(their_raw)
        # And Proton itself reads our maps and symbols as the ones it sent.
        our_value, their_value = _proton_value(our_raw), _proton_value(their_raw)
        if their_value is None:
            assert our_value is None
            continue
        assert our_value.descriptor == their_value.descriptor
        if their_value.descriptor == spec.Coordinator.descriptor:
            assert _symbols(_field(our_value, 0)) == _symbols(_field(their_value, 0))
            continue
        assert _field(our_value, PROPERTIES) == _field(their_value, PROPERTIES)
        if their_value.descriptor == spec.Source.descriptor:
            assert _field(our_value, DIST_MODE) == _field(their_value, DIST_MODE)
            assert _field(our_value, FILTER) == _field(their_value, FILTER)
            for index in (OUTCOMES, SOURCE_CAPABILITIES):
                assert _symbols(_field(our_value, index)) == _symbols(_field(their_value, index))
        else:
            capabilities = TARGET_CAPABILITIES
            assert _symbols(_field(our_value, capabilities)) == _symbols(
                _field(their_value, capabilities)
            )


def _settings(terminus: Any) -> tuple[Any, ...]:
    """Every scalar setting of an amqp_core or Proton terminus."""
    return (
        terminus.type,
        terminus.address,
        terminus.durability,
        terminus.expiry_policy,
        terminus.timeout,
        terminus.dynamic,
        terminus.distribution_mode,
    )


@pytest.mark.parametrize(("kind", "which", "configure"), CASES, ids=IDS)
def test_reading_protons_attach_fields(kind: str, which: str, configure: Configure) -> None:
    connection = proton.Connection()
    link = (
        connection.session().receiver("r")
        if kind == "receiver"
        else connection.session().sender("s")
    )
    configure(getattr(link, which), THEIRS)
    for their_raw, their_terminus in zip(
        proton_attach_fields(kind, which, configure), (link.source, link.target), strict=True
    ):
        ours = Terminus(Terminus.SOURCE)
        ours.from_spec(spec.decode(their_raw))
        assert _settings(ours) == _settings(their_terminus)


def test_constants_are_protons() -> None:
    for name in dir(proton.Terminus):
        if name.isupper():
            assert getattr(Terminus, name) == getattr(proton.Terminus, name), name
    assert (SND_UNSETTLED, SND_SETTLED, SND_MIXED) == (
        proton.Link.SND_UNSETTLED,
        proton.Link.SND_SETTLED,
        proton.Link.SND_MIXED,
    )
    assert (RCV_FIRST, RCV_SECOND) == (proton.Link.RCV_FIRST, proton.Link.RCV_SECOND)


def test_defaults_are_protons() -> None:
    link = proton.Connection().session().receiver("r")
    assert _settings(Terminus(Terminus.SOURCE)) == _settings(link.source)
    assert _settings(Terminus(Terminus.TARGET)) == _settings(link.target)
    assert _settings(Terminus()) == _settings(link.remote_source)


@pytest.mark.parametrize(
    "configure", [c for _, _, c in CASES], ids=[c.__name__ for _, _, c in CASES]
)
def test_round_trip_through_bytes(configure: Configure) -> None:
    for original in our_fields("receiver", "source", configure):
        raw = codec.encode(original.to_spec())
        received = Terminus(Terminus.TARGET)
        received.from_spec(spec.decode(raw))
        assert _settings(received) == _settings(original)
        assert codec.encode(received.to_spec()) == raw


def test_symbol_expiry_policies_and_distribution_modes_both_ways() -> None:
    expiry = {
        Terminus.EXPIRE_WITH_LINK: "link-detach",
        Terminus.EXPIRE_WITH_SESSION: "session-end",
        Terminus.EXPIRE_WITH_CONNECTION: "connection-close",
        Terminus.EXPIRE_NEVER: "never",
    }
    for number, name in expiry.items():
        source = Terminus(Terminus.SOURCE)
        source.expiry_policy = number
        decoded = spec.decode(codec.encode(source.to_spec()))
        assert decoded.expiry_policy == symbol(name)
        back = Terminus()
        back.from_spec(decoded)
        assert back.expiry_policy == number
    for number, mode in [(Terminus.DIST_MODE_COPY, "copy"), (Terminus.DIST_MODE_MOVE, "move")]:
        source = Terminus(Terminus.SOURCE)
        source.distribution_mode = number
        assert source.to_spec().distribution_mode == symbol(mode)
        back = Terminus()
        back.from_spec(spec.Source(distribution_mode=symbol(mode)))
        assert back.distribution_mode == number


def test_unknown_symbols_from_a_peer_read_as_the_defaults() -> None:
    received = Terminus()
    received.from_spec(
        spec.Source(expiry_policy=symbol("x-later"), distribution_mode=symbol("x-fanout"))
    )
    assert received.expiry_policy == Terminus.EXPIRE_WITH_SESSION
    assert received.distribution_mode == Terminus.DIST_MODE_UNSPECIFIED


def test_none_resets_to_unspecified() -> None:
    terminus = Terminus(Terminus.SOURCE)
    topic_subscriber(terminus, OURS)
    terminus.from_spec(None)
    assert _settings(terminus) == _settings(Terminus())
    assert len(terminus.filter) == len(terminus.capabilities) == 0
    assert terminus.to_spec() is None


def test_received_capabilities_are_an_array_however_sent() -> None:
    received = Terminus()
    received.from_spec(
        spec.decode(codec.encode(Described(symbol("amqp:target:list"), [None] * 6 + [symbol("q")])))
    )
    assert list(received.capabilities) == [Array(UNDESCRIBED, AMQPType.SYMBOL, symbol("q"))]


def test_several_puts_are_combined() -> None:
    source = Terminus(Terminus.SOURCE)
    source.filter.put_dict({symbol("a"): 1})
    source.filter.put_dict({symbol("b"): 2})
    source.capabilities.put_symbol("topic")
    source.capabilities.put_py_array(Array(UNDESCRIBED, AMQPType.SYMBOL, symbol("shared")))
    decoded = spec.decode(codec.encode(source.to_spec()))
    assert decoded.filter == {symbol("a"): 1, symbol("b"): 2}
    assert decoded.capabilities == [symbol("topic"), symbol("shared")]


def test_copy_is_deep() -> None:
    original = Terminus(Terminus.SOURCE)
    durable_subscription(original, OURS)
    dynamic_reply_queue(original, OURS)
    copy = Terminus()
    copy.copy(original)
    assert _settings(copy) == _settings(original)
    assert codec.encode(copy.to_spec()) == codec.encode(original.to_spec())
    copy.properties.clear()
    assert len(original.properties) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("expiry_policy", 9), ("durability", 3), ("distribution_mode", 5), ("type", 4)],
)
def test_settings_with_no_amqp_value_are_refused(name: str, value: int) -> None:
    terminus = Terminus(Terminus.SOURCE)
    setattr(terminus, name, value)
    with pytest.raises(ValueError, match=name):
        terminus.to_spec()


def test_from_spec_refuses_other_values() -> None:
    with pytest.raises(TypeError):
        Terminus().from_spec(spec.Open(container_id="c"))
