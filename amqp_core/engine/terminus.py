"""`Terminus`: a link's source or target, as Proton's API shows it, and its spec form.

Applications configure a link's local source and target through `Terminus` attributes
named as in Proton (``address``, ``durability``, ``expiry_policy``, ``distribution_mode``,
``filter`` ...) and read the peer's through ``link.remote_source``. The engine turns a
local terminus into the ``source``/``target`` field of an attach with `Terminus.to_spec`
and fills a remote one from a received attach with `Terminus.from_spec`.

The settle-mode constants live here too so that link options can use them without the
engine; `Link` re-exports them as ``Link.SND_SETTLED`` and so on.
"""

from __future__ import annotations

from typing import Any

from .. import spec
from ..data import Data
from ..types import UNDESCRIBED, AMQPType, Array, symbol

__all__ = [
    "RCV_FIRST",
    "RCV_SECOND",
    "SND_MIXED",
    "SND_SETTLED",
    "SND_UNSETTLED",
    "Terminus",
]

#: sender-settle-mode (spec 2.8.2): the sender sends deliveries unsettled.
SND_UNSETTLED = 0
#: The sender sends deliveries settled (at-most-once).
SND_SETTLED = 1
#: The sender may send deliveries either way.
SND_MIXED = 2
#: receiver-settle-mode (spec 2.8.3): the receiver settles first.
RCV_FIRST = 0
#: The receiver settles only after the sender has.
RCV_SECOND = 1


class Terminus:
    """A source or target of messages, with Proton's attribute names and constants.

    `properties` (the dynamic-node-properties map), `capabilities`, `outcomes` and
    `filter` are `Data` objects the application fills: a map for properties and
    filter, a symbol or an `Array` of symbols for capabilities and outcomes.
    """

    UNSPECIFIED = 0
    SOURCE = 1
    TARGET = 2
    COORDINATOR = 3

    NONDURABLE = 0
    CONFIGURATION = 1
    DELIVERIES = 2

    DIST_MODE_UNSPECIFIED = 0
    DIST_MODE_COPY = 1
    DIST_MODE_MOVE = 2

    EXPIRE_WITH_LINK = 0
    EXPIRE_WITH_SESSION = 1
    EXPIRE_WITH_CONNECTION = 2
    EXPIRE_NEVER = 3

    __slots__ = (
        "type",
        "address",
        "durability",
        "expiry_policy",
        "timeout",
        "dynamic",
        "distribution_mode",
        "_properties",
        "_capabilities",
        "_outcomes",
        "_filter",
    )

    def __init__(self, type: int = UNSPECIFIED) -> None:
        self.type = type
        self.address: str | None = None
        self.durability = self.NONDURABLE
        self.expiry_policy = self.EXPIRE_WITH_SESSION
        self.timeout = 0
        self.dynamic = False
        self.distribution_mode = self.DIST_MODE_UNSPECIFIED
        # Made when first asked for: most termini never have any, and a link holds four
        # termini (10,000 idle streams hold 80,000 of them between gateway and broker).
        self._properties: Data | None = None
        self._capabilities: Data | None = None
        self._outcomes: Data | None = None
        self._filter: Data | None = None

    @property
    def properties(self) -> Data:
        """The dynamic-node-properties: a map with symbol keys."""
        if self._properties is None:
            self._properties = Data()
        return self._properties

    @property
    def capabilities(self) -> Data:
        """The capabilities: a symbol or an array of symbols."""
        if self._capabilities is None:
            self._capabilities = Data()
        return self._capabilities

    @property
    def outcomes(self) -> Data:
        """The outcomes a source supports: a symbol or an array of symbols."""
        if self._outcomes is None:
            self._outcomes = Data()
        return self._outcomes

    @property
    def filter(self) -> Data:
        """A source's filter set: a map of symbol keys to (usually described) filters."""
        if self._filter is None:
            self._filter = Data()
        return self._filter

    def copy(self, other: Terminus) -> None:
        """Make this terminus a copy of `other`."""
        self.type = other.type
        self.address = other.address
        self.durability = other.durability
        self.expiry_policy = other.expiry_policy
        self.timeout = other.timeout
        self.dynamic = other.dynamic
        self.distribution_mode = other.distribution_mode
        for name in ("_properties", "_capabilities", "_outcomes", "_filter"):
            theirs: Data | None = getattr(other, name)
            ours: Data | None = getattr(self, name)
            if theirs is not None:
                if ours is None:
                    ours = Data()
                    setattr(self, name, ours)
                ours.copy(theirs)
            elif ours is not None:
                ours.clear()  # kept: the application may hold it

    def __repr__(self) -> str:
        shown = [f"type={self.type}"]
        defaults = Terminus()
        for name in ("address", "durability", "expiry_policy", "timeout", "dynamic"):
            if getattr(self, name) != getattr(defaults, name):
                shown.append(f"{name}={getattr(self, name)!r}")
        if self.distribution_mode != self.DIST_MODE_UNSPECIFIED:
            shown.append(f"distribution_mode={self.distribution_mode!r}")
        for name in ("properties", "capabilities", "outcomes", "filter"):
            data = getattr(self, "_" + name)
            if data is not None and len(data):
                shown.append(f"{name}={data!r}")
        return f"Terminus({', '.join(shown)})"

    # Conversion to and from the attach frame's source and target fields

    def to_spec(self) -> Any:
        """The attach field for this terminus: a `spec.Source`, `spec.Target` or
        `spec.Coordinator`, or None for an unspecified terminus (a null source or
        target, as Proton sends for a terminus whose type is UNSPECIFIED).

        Raises ValueError for a setting with no spec value."""
        if self.type == self.UNSPECIFIED:
            return None
        capabilities = _symbols_field(self._capabilities, "capabilities")
        if self.type == self.COORDINATOR:
            return spec.Coordinator(capabilities=capabilities)
        fields = {
            "address": self.address,
            "durable": _checked(self.durability, range(3), "durability"),
            "expiry_policy": _EXPIRY_SYMBOLS[
                _checked(self.expiry_policy, _EXPIRY_SYMBOLS, "expiry_policy")
            ],
            "timeout": self.timeout,
            "dynamic": self.dynamic,
            "dynamic_node_properties": _map_field(self._properties, "properties"),
            "capabilities": capabilities,
        }
        if self.type == self.TARGET:
            return spec.Target(**fields)
        if self.type != self.SOURCE:
            raise ValueError(f"Terminus.type must be 0 to 3, not {self.type!r}")
        mode = _checked(self.distribution_mode, _DIST_MODE_SYMBOLS, "distribution_mode")
        return spec.Source(
            **fields,
            distribution_mode=_DIST_MODE_SYMBOLS[mode],
            filter=_map_field(self._filter, "filter"),
            outcomes=_symbols_field(self._outcomes, "outcomes"),
        )

    def from_spec(self, value: Any) -> None:
        """Replace every setting with those of a decoded attach field: a `spec.Source`,
        `spec.Target` or `spec.Coordinator`; None makes the terminus UNSPECIFIED."""
        self.copy(_UNSPECIFIED)
        if value is None:
            return
        if isinstance(value, spec.Coordinator):
            self.type = self.COORDINATOR
            _put_symbols(self, "capabilities", value.capabilities)
            return
        if isinstance(value, spec.Source):
            self.type = self.SOURCE
            self.distribution_mode = _DIST_MODES.get(
                value.distribution_mode, self.DIST_MODE_UNSPECIFIED
            )
            if value.filter is not None:
                self.filter.put_dict(value.filter)
            _put_symbols(self, "outcomes", value.outcomes)
        elif isinstance(value, spec.Target):
            self.type = self.TARGET
        else:
            raise TypeError(f"not a source, target or coordinator: {value!r}")
        self.address = value.address
        self.durability = self.NONDURABLE if value.durable is None else int(value.durable)
        # An expiry policy this version of the spec does not name gets the spec's default.
        self.expiry_policy = _EXPIRY_POLICIES.get(value.expiry_policy, self.EXPIRE_WITH_SESSION)
        self.timeout = 0 if value.timeout is None else int(value.timeout)
        self.dynamic = bool(value.dynamic)
        if value.dynamic_node_properties is not None:
            self.properties.put_dict(value.dynamic_node_properties)
        _put_symbols(self, "capabilities", value.capabilities)


_UNSPECIFIED = Terminus()

_EXPIRY_SYMBOLS = {
    Terminus.EXPIRE_WITH_LINK: symbol("link-detach"),
    Terminus.EXPIRE_WITH_SESSION: symbol("session-end"),
    Terminus.EXPIRE_WITH_CONNECTION: symbol("connection-close"),
    Terminus.EXPIRE_NEVER: symbol("never"),
}
_EXPIRY_POLICIES = {name: number for number, name in _EXPIRY_SYMBOLS.items()}
_DIST_MODE_SYMBOLS = {
    Terminus.DIST_MODE_UNSPECIFIED: None,
    Terminus.DIST_MODE_COPY: symbol("copy"),
    Terminus.DIST_MODE_MOVE: symbol("move"),
}
_DIST_MODES = {name: number for number, name in _DIST_MODE_SYMBOLS.items() if name}


def _checked(value: int, allowed: Any, name: str) -> int:
    if value not in allowed:
        raise ValueError(f"Terminus.{name} has no AMQP value: {value!r}")
    return value


def _map_field(data: Data | None, name: str) -> Any:
    """The value of a map-valued field: None when empty, the map itself when there is
    one, the maps merged in order when options put several (a Selector and a Filter)."""
    values = list(data) if data is not None else []
    if len(values) <= 1:
        return values[0] if values else None
    if not all(isinstance(value, dict) for value in values):
        raise ValueError(f"Terminus.{name} must hold one map, not {values!r}")
    merged: dict[Any, Any] = {}
    for value in values:
        merged.update(value)
    return merged


def _symbols_field(data: Data | None, name: str) -> Any:
    """The value of a multiple-symbol field: None when empty, the one value put (a
    symbol or an array), or all the symbols when several values were put."""
    values = list(data) if data is not None else []
    if len(values) <= 1:
        return values[0] if values else None
    symbols: list[Any] = []
    for value in values:
        if isinstance(value, (Array, list, tuple)):
            symbols.extend(value)
        elif isinstance(value, str):
            symbols.append(value)
        else:
            raise ValueError(f"Terminus.{name} must hold symbols, not {value!r}")
    return symbols


def _put_symbols(terminus: Terminus, field: str, value: Any) -> None:
    """Put a decoded multiple-symbol field: always as an array, however it was sent."""
    if value is None:
        return
    if isinstance(value, str):
        value = [value]
    data: Data = getattr(terminus, field)
    data.put_py_array(Array(UNDESCRIBED, AMQPType.SYMBOL, *(symbol(item) for item in value)))
