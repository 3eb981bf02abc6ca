"""`Backoff` yields the reconnect delays of Proton's `proton.reactor.Backoff`."""

from __future__ import annotations

from itertools import islice
from typing import Any

import pytest

from amqp_core.reactor.backoff import Backoff

proton_reactor = pytest.importorskip("proton.reactor")


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"max_tries": 1},
        {"max_tries": 4},
        {"initial": 0.5},
        {"factor": 3, "max_delay": 5},
        {"initial": 1, "factor": 1.5, "max_delay": 60, "max_tries": 20},
    ],
)
def test_delays_are_protons(settings: dict[str, Any]) -> None:
    ours = list(islice(Backoff(**settings), 40))
    assert ours == list(islice(proton_reactor.Backoff(**settings), 40))


def test_default_schedule() -> None:
    expected = [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]
    assert list(islice(Backoff(), len(expected))) == pytest.approx(expected)


def test_next_and_reset() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(4)] == pytest.approx([0, 0.1, 0.2, 0.4])
    backoff.reset()
    assert backoff.next() == 0


def test_next_stops_after_max_tries() -> None:
    backoff = Backoff(max_tries=2)
    assert [backoff.next(), backoff.next()] == [0, 0.1]
    with pytest.raises(StopIteration):
        backoff.next()


def test_each_iteration_starts_over() -> None:
    backoff = Backoff()
    first = iter(backoff)
    next(first), next(first)
    assert next(iter(backoff)) == 0
    assert next(first) == pytest.approx(0.2)
