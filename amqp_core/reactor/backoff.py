"""`Backoff`: the delays between reconnect attempts, as Proton computes them.

The first attempt is immediate (0 s), the second waits `initial` (0.1 s), and each
later one waits `factor` (2) times longer, up to `max_delay` (10 s): 0, 0.1, 0.2, 0.4,
... 6.4, 10, 10, ... With `max_tries` the sequence stops after that many attempts.

A `Backoff` is both what Proton 0.40 takes for ``reconnect=`` (an iterable of delays)
and what older Proton took (an object with ``reset()`` and ``next()``).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["Backoff", "delays"]


def delays(
    initial: float = 0.1,
    factor: float = 2.0,
    max_delay: float = 10.0,
    max_tries: int | None = None,
) -> Iterator[float]:
    """Yield the delay before each attempt: 0, then `initial` growing by `factor` up
    to `max_delay`; `max_tries` delays in all, or without end when it is None."""
    yield 0.0
    tries = 1
    delay = initial
    while max_tries is None or tries < max_tries:
        yield delay
        tries += 1
        delay = min(max_delay, factor * delay)


class Backoff:
    """A reconnect delay schedule (see the module docstring).

    Iterating gives a fresh schedule each time, starting at 0: unlike Proton 0.40,
    whose `Backoff` hands out one shared iterator, so a reconnect after a successful
    connection there continues from the previous delay instead of starting over.
    `next()` and `reset()` step through and restart one schedule kept by the object.
    """

    def __init__(
        self,
        initial: float = 0.1,
        factor: float = 2.0,
        max_delay: float = 10.0,
        max_tries: int | None = None,
    ) -> None:
        self.initial = initial
        self.factor = factor
        self.max_delay = max_delay
        self.max_tries = max_tries
        self._schedule = iter(self)

    def __iter__(self) -> Iterator[float]:
        return delays(self.initial, self.factor, self.max_delay, self.max_tries)

    def reset(self) -> None:
        """Start the schedule of `next` again from 0."""
        self._schedule = iter(self)

    def next(self) -> float:
        """The next delay in seconds; StopIteration once `max_tries` delays were given."""
        return next(self._schedule)

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial!r}, factor={self.factor!r}, "
            f"max_delay={self.max_delay!r}, max_tries={self.max_tries!r})"
        )
