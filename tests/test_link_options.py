"""Link options change a link exactly as Proton's options change a Proton link."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import amqp_core
from amqp_core import codec
from amqp_core.data import Data
from amqp_core.engine.terminus import RCV_FIRST, SND_MIXED, SND_SETTLED, Terminus
from amqp_core.reactor import options
from amqp_core.types import Described, symbol

proton = pytest.importorskip("proton")
proton_reactor = pytest.importorskip("proton.reactor")

# Each case builds an option from a module of options and a module of AMQP types, so
# the same line builds ours (options, amqp_core) and Proton's (proton.reactor, proton).
MakeOption = Callable[[Any, ModuleType], Any]
CASES: dict[str, MakeOption] = {
    "LinkOption": lambda o, t: o.LinkOption(),
    "AtMostOnce": lambda o, t: o.AtMostOnce(),
    "AtLeastOnce": lambda o, t: o.AtLeastOnce(),
    "SenderOption": lambda o, t: o.SenderOption(),
    "ReceiverOption": lambda o, t: o.ReceiverOption(),
    "DynamicNodeProperties": lambda o, t: o.DynamicNodeProperties(
        {
            "x-opt-size": 10,
            t.symbol("lifetime-policy"): t.Described(t.symbol("amqp:delete-on-close:list"), []),
        }
    ),
    "DynamicNodeProperties-empty": lambda o, t: o.DynamicNodeProperties(),
    "Filter": lambda o, t: o.Filter(
        {
            t.symbol("subject"): t.Described(
                t.symbol("apache.org:legacy-amqp-topic-binding:string"), "a.*"
            )
        }
    ),
    "Filter-empty": lambda o, t: o.Filter(),
    "Selector": lambda o, t: o.Selector("colour = 'green'"),
    "Selector-named": lambda o, t: o.Selector("size > 3", name="big"),
    "DurableSubscription": lambda o, t: o.DurableSubscription(),
    "Move": lambda o, t: o.Move(),
    "Copy": lambda o, t: o.Copy(),
}


def fake_link(kind: str) -> SimpleNamespace:
    """The duck-typed link the options are written against, as a new link starts."""
    return SimpleNamespace(
        is_sender=kind == "sender",
        is_receiver=kind == "receiver",
        source=Terminus(Terminus.SOURCE),
        target=Terminus(Terminus.TARGET),
        snd_settle_mode=SND_MIXED,
        rcv_settle_mode=RCV_FIRST,
    )


def proton_link(kind: str) -> Any:
    session = proton.Connection().session()
    return session.receiver("r") if kind == "receiver" else session.sender("s")


def _values(data: Any) -> list[Any]:
    """The values in an amqp_core or Proton Data, as amqp_core values."""
    ours = Data()
    raw = bytes(data.encode())
    offset = 0
    while offset < len(raw):
        offset += ours.decode(raw[offset:])
    return list(ours)


def state(link: Any) -> tuple[Any, ...]:
    """Everything an option may change on a link (ours or Proton's)."""
    termini = []
    for terminus in (link.source, link.target):
        termini.append(
            (
                terminus.type,
                terminus.address,
                terminus.durability,
                terminus.expiry_policy,
                terminus.timeout,
                terminus.dynamic,
                terminus.distribution_mode,
                *(
                    _values(getattr(terminus, name))
                    for name in ("properties", "capabilities", "outcomes", "filter")
                ),
            )
        )
    return (link.snd_settle_mode, link.rcv_settle_mode, *termini)


def _configure(option: Any, link: Any) -> bool:
    """Apply the option as Proton's container does: only if its test passes."""
    applies = bool(option.test(link))
    if applies:
        option.apply(link)
    return applies


@pytest.mark.parametrize("kind", ["receiver", "sender"])
@pytest.mark.parametrize("name", list(CASES))
def test_option_changes_the_link_like_protons(name: str, kind: str) -> None:
    ours, theirs = fake_link(kind), proton_link(kind)
    assert state(ours) == state(theirs)
    applies = _configure(CASES[name](options, amqp_core), ours)
    assert applies == _configure(CASES[name](proton_reactor, proton), theirs)
    assert state(ours) == state(theirs)


def test_options_combine_like_protons() -> None:
    ours, theirs = fake_link("receiver"), proton_link("receiver")
    for name in ("AtMostOnce", "Copy", "DurableSubscription", "Selector"):
        _configure(CASES[name](options, amqp_core), ours)
        _configure(CASES[name](proton_reactor, proton), theirs)
    assert state(ours) == state(theirs)


def test_selector_filter_value() -> None:
    link = fake_link("receiver")
    options.Selector("colour = 'green'").apply(link)
    selector = Described(symbol("apache.org:selector-filter:string"), "colour = 'green'")
    assert list(link.source.filter) == [{symbol("selector"): selector}]
    spec_source = link.source.to_spec()
    assert codec.decode(codec.encode(spec_source)).value[7] == {symbol("selector"): selector}


def test_settle_modes() -> None:
    link = fake_link("sender")
    options.AtMostOnce().apply(link)
    assert link.snd_settle_mode == SND_SETTLED
    options.AtLeastOnce().apply(link)
    assert (link.snd_settle_mode, link.rcv_settle_mode) == (0, 0)


def test_dynamic_node_properties_keys_become_symbols() -> None:
    option = options.DynamicNodeProperties({"a": 1, symbol("b"): 2})
    assert all(type(key) is symbol for key in option.properties)
    receiver, sender = fake_link("receiver"), fake_link("sender")
    option.apply(receiver)
    option.apply(sender)
    assert list(receiver.source.properties) == [{symbol("a"): 1, symbol("b"): 2}]
    assert len(receiver.target.properties) == 0
    assert list(sender.target.properties) == [{symbol("a"): 1, symbol("b"): 2}]
    assert len(sender.source.properties) == 0


def test_option_objects_do_not_share_their_maps() -> None:
    first, second = options.Filter(), options.Filter()
    first.filter_set[symbol("x")] = 1
    assert second.filter_set == {}
