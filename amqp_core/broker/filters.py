"""Source filters a consumer may ask for: the JMS selector, in either of its forms."""

from __future__ import annotations

from typing import Any

from amqp_core import symbol, ulong
from amqp_core.broker.selector import Selector

#: The selector filter's descriptor, by name (Proton's) and by code (rhea's, JMS's).
SELECTOR_DESCRIPTORS = (symbol("apache.org:selector-filter:string"), ulong(0x0000468C00000004))


def requested_selector(source: Any) -> tuple[Any, Any, Selector] | None:
    """The (filter name, filter, selector) of a source's selector filter, or None.

    Raises SelectorError (a ValueError) where the selector does not parse."""
    source.filter.rewind()
    filters = source.filter.get_dict() if source.filter.next() is not None else None
    for name, value in (filters or {}).items():
        if getattr(value, "descriptor", None) in SELECTOR_DESCRIPTORS:
            return name, value, Selector.parse(value.value)
    return None
