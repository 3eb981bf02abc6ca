"""Benchmark: amqp_core's message codec against Proton's, side by side in one run.

Times the per-message work of the tutorial's programs on a tutorial-shaped message:

- encode: ``Message(**fields).encode()``  (what a sender does for each message)
- decode: ``m = Message(); m.decode(data)``  (what a receiver does for each message),
  each library decoding the bytes it produced itself

for ``amqp_core.Message`` and ``proton.Message`` (python-qpid-proton, the C core).
Each figure is the best of ``--repeat`` runs of ``--iterations`` operations, the two
libraries interleaved run by run so that machine noise hits both alike. Absolute times on
a shared machine are noise; the ratio (Proton's time / amqp_core's, so above 1 means
amqp_core is faster) is the result.

Before timing, each library decodes the other's bytes and the fields are compared, so
that both sides are known to do the same work.

Usage: python bench/codec.py [--iterations N] [--repeat R]
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections.abc import Callable
from typing import Any

import proton

import amqp_core

N = 42
FIELDS: dict[str, Any] = {
    "id": N,
    "body": {"sequence": N},
    "subject": "tutorial",
    "reply_to": "reply-queue",
    "correlation_id": N,
    "properties": {"colour": "green", "n": 7},
}
LIBRARIES: dict[str, Any] = {"proton": proton.Message, "amqp_core": amqp_core.Message}
OPERATIONS = ("encode", "decode")


def make_timer(message_class: Any, operation: str, data: bytes) -> timeit.Timer:
    namespace = {"Message": message_class, "fields": FIELDS, "data": data}
    if operation == "encode":
        return timeit.Timer("Message(**fields).encode()", globals=namespace)
    return timeit.Timer("m = Message(); m.decode(data)", globals=namespace)


def fields_of(message: Any) -> dict[str, Any]:
    return {name: getattr(message, name) for name in FIELDS}


def check_interop(encoded: dict[str, bytes]) -> None:
    """Each library decodes every library's bytes to the fields we put in."""
    for reader, message_class in LIBRARIES.items():
        for writer, data in encoded.items():
            message = message_class()
            message.decode(data)
            got = fields_of(message)
            if got != FIELDS:
                sys.exit(
                    f"bench/codec.py: {reader} decoded {writer}'s bytes as {got!r}, "
                    f"expected {FIELDS!r}; the two sides would not do the same work"
                )


def run(
    iterations: int, repeat: int, progress: Callable[[str], None]
) -> dict[tuple[str, str], float]:
    encoded = {name: cls(**FIELDS).encode() for name, cls in LIBRARIES.items()}
    check_interop(encoded)
    for name, data in encoded.items():
        progress(f"{name:>9}: encoded message is {len(data)} bytes")

    timers = {
        (name, operation): make_timer(cls, operation, encoded[name])
        for operation in OPERATIONS
        for name, cls in LIBRARIES.items()
    }
    for timer in timers.values():  # warm up: imports, caches, first allocations
        timer.timeit(max(1, iterations // 10))

    best = {key: float("inf") for key in timers}
    for r in range(repeat):
        for key, timer in timers.items():
            best[key] = min(best[key], timer.timeit(iterations))
        progress(f"repeat {r + 1}/{repeat} done")
    return {key: seconds / iterations * 1e6 for key, seconds in best.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--iterations", type=int, default=5000, help="operations per timed run (default 5000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="timed runs per figure; the best counts (default 7)"
    )
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.repeat < 1:
        parser.error("--iterations and --repeat must be at least 1")

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"python-qpid-proton {'.'.join(map(str, proton.VERSION))}; "
        f"best of {args.repeat} x {args.iterations} iterations"
    )
    us = run(args.iterations, args.repeat, lambda line: print(line, file=sys.stderr))

    print(f"{'operation':<10}{'proton us/op':>14}{'amqp_core us/op':>17}{'ratio':>8}")
    for operation in OPERATIONS:
        theirs, ours = us["proton", operation], us["amqp_core", operation]
        print(f"{operation:<10}{theirs:>14.2f}{ours:>17.2f}{theirs / ours:>8.2f}")
    print("ratio = proton time / amqp_core time (above 1: amqp_core is faster)")


if __name__ == "__main__":
    main()
