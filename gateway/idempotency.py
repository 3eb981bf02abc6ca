"""Idempotency-Key support for POST /messages: a retry with the same key within the
window gets the first answer again, and nothing new is sent.

Bounded in time (`window` seconds) and in size (`max_keys`, oldest forgotten first), so
that clients inventing keys cannot grow the gateway's memory. A retry that arrives while
the first attempt is still waiting for the broker waits for that attempt's answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Answer = TypeVar("Answer")


class IdempotencyCache(Generic[Answer]):
    def __init__(self, window: float, max_keys: int) -> None:
        self.window = window
        self.max_keys = max_keys
        self._answers: OrderedDict[str, tuple[float, asyncio.Future[Answer]]] = OrderedDict()

    async def once(
        self, key: str, attempt: Callable[[], Awaitable[Answer]], keep: Callable[[Answer], bool]
    ) -> tuple[Answer, bool]:
        """(answer, replayed): the first answer for `key` within the window, else the
        answer of `attempt()`, remembered if `keep(answer)` (a failure worth retrying,
        such as a timeout, is not)."""
        now = time.monotonic()
        self._forget_expired(now)
        known = self._answers.get(key)
        if known is not None:
            return await asyncio.shield(known[1]), True
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[key] = (now, future)
        while len(self._answers) > self.max_keys:
            self._answers.popitem(last=False)
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
        known = self._answers.get(key)
        if known is not None and known[1] is future:
            del self._answers[key]

    def _forget_expired(self, now: float) -> None:
        answers = self._answers
        while answers:
            key, (stored_at, future) = next(iter(answers.items()))
            if now - stored_at < self.window or not future.done():
                break
            del answers[key]
