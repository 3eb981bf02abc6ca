"""`SortedList`: tuples kept in order, with O(log n) insertion and removal at any depth.

A queue's waiting messages and the broker's expiry index are millions deep at times, and
removing from the middle of one Python list costs a copy of everything behind it. Here
the items live in a list of sorted chunks of at most `2 * CHUNK` items, with the last
item of each chunk in a second list: a bisect there finds the chunk, a bisect in the chunk
finds the place, and an insertion or removal moves at most one chunk's items. (The layout
is the one of the `sortedcontainers` package, which amqp_core cannot depend on.)

Items are tuples whose first fields are unique, such as ``(key, ...)``: they compare by
those fields, and a shorter tuple of the same first fields, ``(key,)``, sorts just before
the item and finds it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from typing import Any

__all__ = ["CHUNK", "SortedList"]

#: Items per chunk, about: a chunk is split past twice this and merged with a neighbour
#: below half. Moving a thousand pointers is a fraction of a microsecond.
CHUNK = 1000


class SortedList:
    """Tuples in ascending order, unique by their leading fields."""

    __slots__ = ("_chunks", "_lasts", "_length")

    def __init__(self) -> None:
        self._chunks: list[list[Any]] = []
        #: The last item of each chunk, to bisect.
        self._lasts: list[Any] = []
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0

    def __iter__(self) -> Iterator[Any]:
        for chunk in self._chunks:
            yield from chunk

    def first(self) -> Any:
        """The smallest item; IndexError when empty."""
        return self._chunks[0][0]

    def add(self, item: Any) -> None:
        chunks, lasts = self._chunks, self._lasts
        self._length += 1
        if not lasts:
            chunks.append([item])
            lasts.append(item)
            return
        if item > lasts[-1]:  # the usual case: behind everything
            index = len(lasts) - 1
            chunk = chunks[index]
            chunk.append(item)
            lasts[index] = item
        else:
            index = bisect_left(lasts, item)
            chunk = chunks[index]
            insort(chunk, item)
        if len(chunk) > 2 * CHUNK:
            chunks.insert(index + 1, chunk[CHUNK:])
            del chunk[CHUNK:]
            lasts.insert(index, chunk[-1])

    def find(self, probe: tuple[Any, ...]) -> Any:
        """The item whose leading fields are `probe`, or None."""
        lasts = self._lasts
        index = bisect_left(lasts, probe)
        if index == len(lasts):
            return None
        chunk = self._chunks[index]
        item = chunk[bisect_left(chunk, probe)]
        return item if item[: len(probe)] == probe else None

    def remove(self, item: Any) -> None:
        """Remove `item`; ValueError if it is not here."""
        lasts = self._lasts
        index = bisect_left(lasts, item)
        if index < len(lasts):
            chunk = self._chunks[index]
            position = bisect_left(chunk, item)
            if chunk[position] == item:
                del chunk[position]
                self._length -= 1
                self._shrunk(index, position)
                return
        raise ValueError(f"{item!r} is not in the list")

    def pop_first(self) -> Any:
        """Remove and return the smallest item; IndexError when empty."""
        if not self._chunks:
            raise IndexError("pop from an empty SortedList")
        item = self._chunks[0].pop(0)
        self._length -= 1
        self._shrunk(0, 0)
        return item

    def _shrunk(self, index: int, position: int) -> None:
        """Chunk `index` lost its item at `position`: keep the chunks and lasts right."""
        chunks, lasts = self._chunks, self._lasts
        chunk = chunks[index]
        if not chunk:
            del chunks[index]
            del lasts[index]
            return
        if position == len(chunk):
            lasts[index] = chunk[-1]
        if len(chunk) < CHUNK // 2 and len(chunks) > 1:
            # Merge with a neighbour, so that chunks stay few whatever is removed where.
            if index == len(chunks) - 1:
                index -= 1
            merged = chunks[index] + chunks[index + 1]
            del chunks[index + 1]
            del lasts[index + 1]
            if len(merged) > 2 * CHUNK:
                half = len(merged) // 2
                chunks.insert(index + 1, merged[half:])
                lasts.insert(index + 1, merged[-1])
                del merged[half:]
            chunks[index] = merged
            lasts[index] = merged[-1]

    def starting_at(self, probe: tuple[Any, ...]) -> Iterator[Any]:
        """The items from the first one not below `probe`, in order. The list must not
        change while this is iterated."""
        lasts = self._lasts
        index = bisect_left(lasts, probe)
        if index == len(lasts):
            return
        chunks = self._chunks
        chunk = chunks[index]
        for position in range(bisect_left(chunk, probe), len(chunk)):
            yield chunk[position]
        for following in range(index + 1, len(chunks)):
            yield from chunks[following]
