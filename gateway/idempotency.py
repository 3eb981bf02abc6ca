"""Idempotency-Key support for POST /messages: a retry with the same key within the
window gets the first answer again, and nothing new is sent.

A key is bound to the request it came with, by a fingerprint of what makes the message
(the address, the settle mode, the Content-Type, the amqp-* headers, the body): the same
key on a different request is refused (`KeyReused`), never answered with another
request's result. A retry that arrives while the first attempt is still waiting for the
broker waits for that attempt's answer, so a key sends at most once however its retries
race. Keys are the gateway's, not a client's: the gateway has no credentials yet.

Bounded in time (`window` seconds) and in size (`max_keys`, oldest forgotten first), so
that clients inventing keys cannot grow the gateway's memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, NamedTuple, TypeVar

Answer = TypeVar("Answer")


class KeyReused(Exception):
    """The key was first used with another request (another address, headers or body)."""


class _Entry(NamedTuple, Generic[Answer]):
    stored_at: float
    fingerprint: bytes
    answer: asyncio.Future[Answer]


class IdempotencyCache(Generic[Answer]):
    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        self._entries: OrderedDict[str, _Entry[Answer]] = OrderedDict()

    async def once(
        self,
        key: str,
        fingerprint: bytes,
        attempt: Callable[[], Awaitable[Answer]],
        keep: Callable[[Answer], bool],
    ) -> tuple[Answer, bool]:
        """(answer, replayed): the first answer for `key` within the window, else the
        answer of `attempt()`, remembered if `keep(answer)` (a failure after which a
        retry is safe and worth it, such as "not connected", is not). KeyReused if
        `key` was first used with another `fingerprint`."""
        now = time.monotonic()
        self._forget_expired(now)
        known = self._entries.get(key)
        if known is not None:
            if known.fingerprint != fingerprint:
                raise KeyReused(key)
            return await asyncio.shield(known.answer), True
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._entries[key] = _Entry(now, fingerprint, future)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        try:
            answer = await attempt()
        except BaseException as error:
            self._drop(key, future)
            future.set_exception(error)
            future.exception()  # retrieved: a retry that waits on it re-raises it
            raise
        if not keep(answer):
            self._drop(key, future)
        future.set_result(answer)
        return answer, False

    def _drop(self, key: str, future: asyncio.Future[Answer]) -> None:
        known = self._entries.get(key)
        if known is not None and known.answer is future:
            del self._entries[key]

    def _forget_expired(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest.stored_at < self.window or not oldest.answer.done():
                break
            entries.popitem(last=False)
