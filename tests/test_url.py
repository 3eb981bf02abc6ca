"""`amqp_core.Url` parses, defaults and prints addresses exactly as `proton.Url` does."""

from __future__ import annotations

from typing import Any

import pytest

from amqp_core.url import Url

proton = pytest.importorskip("proton")

ADDRESSES = [
    "localhost:5672/examples",
    "amqps://user:pass@host/path",
    "host",
    "[::1]:5673/q",
    "[::1]",
    "amqp://[fe80::1%25eth0]:5672/x",
    "0.0.0.0:8888",
    "localhost:8888/examples",
    "",
    None,
    "amqp://h:5672/a/b",
    "amqps://host",
    "amqp://",
    "//x",
    "a:b@c",
    "user@host",
    "HOST:amqps",
    "amqp://u%40x:p%2F@h/q?x=1#f",
    "amqp://h/p;params",
    "::1",
    "http://foo",
    "host:",
    "amqp://:5672",
    "amqp://user@:5672/q",
    "/path/only",
    "examples",
]


def _parts(url: Any) -> tuple[object, ...]:
    """Every attribute of an amqp_core or a Proton Url, the port as number and text."""
    port = url.port
    return (
        url.scheme,
        url.username,
        url.password,
        url.host,
        None if port is None else (int(port), str(port)),
        url.path,
        str(url),
        repr(url),
    )


@pytest.mark.parametrize("defaults", [True, False])
@pytest.mark.parametrize("address", ADDRESSES)
def test_parts_and_text_match_proton(address: str | None, defaults: bool) -> None:
    assert _parts(Url(address, defaults=defaults)) == _parts(proton.Url(address, defaults=defaults))


@pytest.mark.parametrize("address", ADDRESSES)
def test_defaults_method_matches_proton(address: str | None) -> None:
    ours = Url(address, defaults=False)
    theirs = proton.Url(address, defaults=False)
    assert ours.defaults() is ours
    assert _parts(ours) == _parts(theirs.defaults())


@pytest.mark.parametrize(
    "changes",
    [
        {"host": "::1"},
        {"host": "[::2]", "port": 1234},
        {"scheme": "amqps"},
        {"path": "queue"},
        {"path": "/queue"},
        {"username": "me", "password": "p@ss word"},
        {"port": "amqps"},
    ],
)
def test_keyword_parts_replace_parsed_ones_like_proton(changes: dict[str, Any]) -> None:
    ours = Url("amqp://user:pw@example.com:5672/orig", **changes)
    assert _parts(ours) == _parts(proton.Url("amqp://user:pw@example.com:5672/orig", **changes))


def test_unknown_keyword_is_an_error() -> None:
    with pytest.raises(AttributeError):
        Url("host", colour="red")


def test_copy_constructor() -> None:
    original = Url("amqps://u:p@h:1/q?x#y", defaults=False)
    copy = Url(original, defaults=False)
    assert _parts(copy) == _parts(original)
    copy.host = "other"
    assert original.host == "h"


def test_default_ports() -> None:
    assert Url("host").port == 5672
    assert Url("amqps://host").port == 5671
    assert Url("host:1234").port == 1234
    assert Url("host", defaults=False).port is None


def test_port_is_an_int_that_prints_as_given() -> None:
    port = Url.Port("amqps")
    assert isinstance(port, int)
    assert int(port) == 5671
    assert str(port) == "amqps"
    assert port == "amqps" and port == 5671 and port != 5672
    assert Url.Port(5672) == "5672"
    with pytest.raises(ValueError, match="service name"):
        Url.Port("no-such-service-here")


@pytest.mark.parametrize("number", [65536, 99999, -1])
def test_a_port_out_of_range_is_refused(number: int) -> None:
    """Else the system's resolver reads 99999 as 34463, and a broker listens there."""
    with pytest.raises(ValueError, match="out of range"):
        _ = Url(f"host:{number}").port
    assert Url("host:65535").port == 65535 and Url("host:0").port == 0


def test_equality_is_by_text() -> None:
    assert Url("localhost:5672/examples") == "amqp://localhost:5672/examples"
    assert Url("a") != Url("b")


def test_ipv6_literal_keeps_brackets_in_text_only() -> None:
    url = Url("[::1]:5673/q")
    assert url.host == "::1"
    assert str(url) == "amqp://[::1]:5673/q"
    url.host = "fe80::2"
    assert str(url) == "amqp://[fe80::2]:5673/q"
