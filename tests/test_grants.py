"""amqp_core.grants: the pattern grammar (an address, a prefix ending in *, or * alone),
grants read from JSON and from OAuth scopes with errors that name whose grants and which
pattern, and private addresses (reply queues) that only an exact pattern reaches."""

from __future__ import annotations

import pytest

from amqp_core.grants import ACTIONS, Credential, Grants, GrantsError


def test_an_exact_pattern_matches_that_address_only() -> None:
    grants = Grants({"send": ["orders"]})
    assert grants.allows("send", "orders")
    assert not grants.allows("send", "orders/eu")
    assert not grants.allows("send", "order")
    assert not grants.allows("receive", "orders"), "another action is not granted"


def test_a_prefix_pattern_matches_what_starts_with_it() -> None:
    grants = Grants({"receive": ["orders/*", "audit"]})
    assert grants.allows("receive", "orders/")
    assert grants.allows("receive", "orders/eu/paris")
    assert grants.allows("receive", "audit")
    assert not grants.allows("receive", "orders")
    assert not grants.allows("receive", "ordersx")
    assert not grants.allows("receive", "audit/2024")


def test_a_star_alone_matches_every_address() -> None:
    grants = Grants({"request": ["*"]})
    for address in ("a", "/queue/x", "", "*", "with space", "ünïcode"):
        assert grants.allows("request", address)
    assert not grants.allows("send", "a")


def test_everything_grants_every_action() -> None:
    grants = Grants.everything()
    assert all(grants.allows(action, "x/y") for action in ACTIONS)


def test_a_private_address_is_reached_by_an_exact_pattern_only() -> None:
    """A reply queue: neither * nor a prefix reaches it; a pattern naming it does."""
    reply = "replies-4f2a"
    assert not Grants.everything().allows("receive", reply, private=True)
    assert not Grants({"receive": ["replies-*"]}).allows("receive", reply, private=True)
    assert Grants({"receive": [reply]}).allows("receive", reply, private=True)


def test_grants_from_json_and_back() -> None:
    value = {"send": ["a/*"], "receive": ["b"], "request": []}
    grants = Grants.from_json(value)
    assert grants.to_json() == value
    assert grants == Grants(value)
    assert grants.patterns("send") == ("a/*",)
    assert grants.patterns("request") == ()
    assert not grants.allows("request", "b")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"send": ["a*b"]}, ["billing", "send", "'a*b'", "may only end"]),
        ({"send": ["**"]}, ["billing", "'**'"]),
        ({"receive": [""]}, ["billing", "receive", "empty"]),
        ({"receive": [3]}, ["billing", "receive", "3", "not a string"]),
        ({"send": "orders"}, ["billing", "send", "list of patterns"]),
        ({"publish": ["a"]}, ["billing", "unknown action", "'publish'"]),
        (["send"], ["billing", "object"]),
    ],
)
def test_bad_grants_are_refused_naming_the_owner_and_pattern(
    value: object, words: list[str]
) -> None:
    with pytest.raises(GrantsError) as refused:
        Grants.from_json(value, owner="billing")
    for word in words:
        assert word in str(refused.value), str(refused.value)


def test_scopes_become_grants_and_other_scopes_are_left_out() -> None:
    grants = Grants.from_scopes(
        ["openid", "profile", "send:orders/*", "receive:orders/eu", "request:*", "admin:x"]
    )
    assert grants.to_json() == {
        "send": ["orders/*"],
        "receive": ["orders/eu"],
        "request": ["*"],
    }
    assert Grants.from_scopes(["openid email"]).to_json() == {}


def test_a_scope_with_a_bad_pattern_is_refused() -> None:
    with pytest.raises(GrantsError, match="a\\*b"):
        Grants.from_scopes(["send:a*b"])


def test_many_patterns_match_as_few_do() -> None:
    """10,000 prefixes and 10,000 addresses: the right ones match, the others not."""
    grants = Grants({"send": [f"tenant-{n}/*" for n in range(10_000)] + ["exact"]})
    assert grants.allows("send", "tenant-9999/orders")
    assert grants.allows("send", "tenant-0/")
    assert grants.allows("send", "exact")
    assert not grants.allows("send", "tenant-10000/orders")
    assert not grants.allows("send", "tenant-1")


def test_a_credential_carries_a_name_safe_to_log_and_its_grants() -> None:
    credential = Credential(name="key:1a2b3c4d", kind="api-key", grants=Grants({"send": ["a"]}))
    assert credential.grants.allows("send", "a")
    assert credential.expires is None
    with pytest.raises(AttributeError):
        credential.name = "other"  # type: ignore[misc]
