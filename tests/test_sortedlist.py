"""`SortedList`, the broker's ordered store of waiting messages and deadlines, against a
plain sorted Python list doing the same operations."""

from __future__ import annotations

import bisect
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqp_core.broker import sortedlist
from amqp_core.broker.sortedlist import SortedList

#: (operation, key): add or remove the item of that key, pop the first, iterate from key.
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "pop", "from"]), st.integers(0, 300)),
    max_size=600,
)


def item(key: int) -> tuple[int, str]:
    return (key, f"message {key}")


@settings(max_examples=300, deadline=None)
@given(OPERATIONS)
def test_behaves_like_a_sorted_list(operations: list[tuple[str, int]]) -> None:
    # Chunks of 4 items at most 8: every operation splits or merges chunks now and then.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sortedlist, "CHUNK", 4)
        ours = SortedList()
        model: list[Any] = []
        for operation, key in operations:
            present = item(key) in model
            if operation == "add" and not present:
                ours.add(item(key))
                bisect.insort(model, item(key))
            elif operation == "remove":
                if present:
                    ours.remove(item(key))
                    model.remove(item(key))
                else:
                    with pytest.raises(ValueError):
                        ours.remove(item(key))
            elif operation == "pop":
                if model:
                    assert ours.pop_first() == model.pop(0)
                else:
                    with pytest.raises(IndexError):
                        ours.pop_first()
            elif operation == "from":
                start = bisect.bisect_left(model, (key,))
                assert list(ours.starting_at((key,))) == model[start:]
            assert ours.find((key,)) == (item(key) if item(key) in model else None)
            assert len(ours) == len(model)
            assert list(ours) == model
            if model:
                assert ours.first() == model[0]


def test_a_million_items_stay_in_small_chunks() -> None:
    items = SortedList()
    for key in range(1_000_000):
        items.add((key,))
    for key in range(0, 1_000_000, 3):  # removals all along the list
        items.remove((key,))
    chunks = items._chunks
    assert max(len(chunk) for chunk in chunks) <= 2 * sortedlist.CHUNK
    assert len(chunks) <= 2 * len(items) // sortedlist.CHUNK + 1
    assert list(items.starting_at((999_998,))) == [(999_998,)]
