"""Who may do what with which AMQP address: grants, their pattern grammar, and the
credential a client's key, token or certificate resolves to.

A grant is a pattern per action: ``send`` (put messages on an address), ``receive``
(take or browse them) and ``request`` (call a request/response service there). A
pattern is an address (``orders``), a prefix ending in ``*`` (``orders/*`` matches
``orders/eu`` and ``orders/``), or ``*`` alone, which matches every address. An address
that itself ends in ``*`` can only be reached by a prefix.

The JSON form, as in the gateway's API key file and in a JWT's grants claim::

    {"send": ["orders/*"], "receive": ["orders/eu"], "request": ["*"]}

Private addresses (reply queues: one client's replies, which another must neither read
nor forge) are reached by an exact pattern only, never by a prefix or ``*``.

Standard library only: the gateway and the embedded broker share this module, whatever
authenticates their clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIONS", "Credential", "Grants", "GrantsError"]

#: What a grant can allow.
ACTIONS = ("send", "receive", "request")


class GrantsError(ValueError):
    """Grants that cannot be read; the text names whose grants and which pattern."""


class _Rule:
    """One action's patterns: exact addresses in a set, prefixes in a tuple that
    str.startswith tries in one call ("*" is the empty prefix)."""

    __slots__ = ("exact", "prefixes", "patterns")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self.exact = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def matches(self, address: str, private: bool) -> bool:
        if address in self.exact:
            return True
        return not private and address.startswith(self.prefixes)


def _check_pattern(pattern: object, action: str, owner: str) -> str:
    where = f"{owner}: {action} pattern {pattern!r}"
    if not isinstance(pattern, str):
        raise GrantsError(f"{where} is not a string")
    if not pattern:
        raise GrantsError(f"{where} is empty: give an address, a prefix ending in *, or *")
    if "*" in pattern[:-1]:
        raise GrantsError(f"{where}: a * may only end a pattern (a prefix), or stand alone")
    return pattern


class Grants:
    """The address patterns allowed for each action; `allows` costs one set look-up and
    one C-level prefix scan, however many patterns there are."""

    __slots__ = ("_rules",)

    def __init__(self, patterns: Mapping[str, Iterable[str]], owner: str = "grants") -> None:
        """`patterns`: action -> patterns; GrantsError naming `owner` if one is wrong."""
        rules = {}
        for action, given in patterns.items():
            if action not in ACTIONS:
                raise GrantsError(
                    f"{owner}: unknown action {action!r}: one of {', '.join(ACTIONS)}"
                )
            if isinstance(given, str) or not isinstance(given, Iterable):
                raise GrantsError(f"{owner}: {action} takes a list of patterns, not {given!r}")
            checked = tuple(_check_pattern(pattern, action, owner) for pattern in given)
            rules[action] = _Rule(checked)
        self._rules: dict[str, _Rule] = rules

    @classmethod
    def from_json(cls, value: Any, owner: str = "grants") -> Grants:
        """Grants from their JSON form ({"send": [...], "receive": [...], "request": [...]},
        every action optional)."""
        if not isinstance(value, Mapping):
            raise GrantsError(f"{owner}: grants are an object of actions, not {value!r}")
        return cls(value, owner)

    @classmethod
    def from_scopes(cls, scopes: Iterable[str]) -> Grants:
        """Grants from OAuth 2 scope strings such as ``send:orders/*``; scopes of other
        forms (``openid``, ``profile``) are not grants and are left out."""
        patterns: dict[str, list[str]] = {}
        for scope in scopes:
            action, colon, pattern = scope.partition(":")
            if colon and action in ACTIONS:
                patterns.setdefault(action, []).append(pattern)
        return cls(patterns, owner="scope")

    @classmethod
    def everything(cls) -> Grants:
        """Every action on every (not private) address."""
        return cls({action: ["*"] for action in ACTIONS})

    def allows(self, action: str, address: str, *, private: bool = False) -> bool:
        """Whether `action` on `address` is granted. A `private` address (a reply queue)
        is reached only by a pattern naming it exactly."""
        rule = self._rules.get(action)
        return rule is not None and rule.matches(address, private)

    def patterns(self, action: str) -> tuple[str, ...]:
        rule = self._rules.get(action)
        return rule.patterns if rule is not None else ()

    def to_json(self) -> dict[str, list[str]]:
        return {action: list(rule.patterns) for action, rule in self._rules.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grants):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(tuple(sorted((a, r.patterns) for a, r in self._rules.items())))

    def __repr__(self) -> str:
        return f"Grants({self.to_json()!r})"


@dataclass(frozen=True)
class Credential:
    """Who a client proved to be, and what it may do.

    `name` is safe to log and to label metrics or limits with: never a secret (an API
    key's own name or the start of its hash, a token's subject, a certificate's
    subject). `kind` says what it came from: "api-key", "jwt", "certificate" or
    "anonymous". `source` identifies that thing for as long as it is valid (an API
    key's hash), so that a credential can be looked up again when keys are re-read;
    `expires` is when it ends (seconds since the epoch), if it does."""

    name: str
    kind: str
    grants: Grants
    source: str = ""
    expires: float | None = None
