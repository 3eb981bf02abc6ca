"""Benchmark: acknowledged message throughput, amqp_core against Proton, in one run.

One sender sends tutorial messages (``Message(id=n, body={'sequence': n})``) straight
to one receiver that listens, as the tutorial's simple_send.py and direct_recv.py do;
the receiver accepts each message and the sender counts the acceptances
(at-least-once). Each library talks to itself: amqp_core -> amqp_core, then
Proton -> Proton, each side in its own process. The time runs from the sender's link
opening to its last acceptance.

Absolute rates on a shared 2-core machine are noise; the ratio in one run is the result.

Usage: python bench/throughput.py [--messages N] [--prefetch W] [--rounds R]
"""

from __future__ import annotations

import argparse
import importlib
import socket
import subprocess
import sys
import time
from typing import Any


def load(library: str) -> tuple[Any, Any, Any]:
    """(Message, MessagingHandler, Container) of the named library."""
    package = "amqp_core" if library == "amqp_core" else "proton"
    root = importlib.import_module(package)
    handlers = importlib.import_module(f"{package}.handlers")
    reactor = importlib.import_module(f"{package}.reactor")
    return root.Message, handlers.MessagingHandler, reactor.Container


def run_receiver(library: str, port: int, messages: int, prefetch: int) -> None:
    _, MessagingHandler, Container = load(library)

    class Receiver(MessagingHandler):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__(prefetch=prefetch)
            self.received = 0

        def on_start(self, event: Any) -> None:
            self.acceptor = event.container.listen(f"127.0.0.1:{port}")

        def on_message(self, event: Any) -> None:
            self.received += 1
            if self.received == messages:
                event.receiver.close()
                event.connection.close()
                self.acceptor.close()

    Container(Receiver()).run()


def run_sender(library: str, port: int, messages: int) -> None:
    Message, MessagingHandler, Container = load(library)

    class Sender(MessagingHandler):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.sent = 0
            self.confirmed = 0
            self.started = 0.0

        def on_start(self, event: Any) -> None:
            event.container.create_sender(f"127.0.0.1:{port}/examples")

        def on_link_opened(self, event: Any) -> None:
            self.started = time.perf_counter()

        def on_sendable(self, event: Any) -> None:
            sender = event.sender
            while sender.credit and self.sent < messages:
                self.sent += 1
                sender.send(Message(id=self.sent, body={"sequence": self.sent}))

        def on_accepted(self, event: Any) -> None:
            self.confirmed += 1
            if self.confirmed == messages:
                print(f"{time.perf_counter() - self.started:.6f}", flush=True)
                event.connection.close()

    Container(Sender()).run()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"receiver did not listen on port {port}")


def measure(library: str, messages: int, prefetch: int) -> float:
    """Messages per second for one sender/receiver pair of `library`."""
    port = free_port()
    me = [sys.executable, __file__, "--library", library, "--port", str(port)]
    counts = ["--messages", str(messages), "--prefetch", str(prefetch)]
    receiver = subprocess.Popen([*me, "--role", "receiver", *counts])
    try:
        wait_for_port(port)
        done = subprocess.run(
            [*me, "--role", "sender", *counts], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"{library} sender failed: {done.stderr[-2000:]}")
        receiver.wait(timeout=60)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    return messages / float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--prefetch", type=int, default=10, help="receiver credit window")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the libraries R times")
    parser.add_argument("--role", choices=["receiver", "sender"], help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "receiver":
        run_receiver(args.library, args.port, args.messages, args.prefetch)
        return
    if args.role == "sender":
        run_sender(args.library, args.port, args.messages)
        return
    print(f"{args.messages} acknowledged messages, receiver prefetch {args.prefetch}")
    best: dict[str, float] = {}
    for round_number in range(args.rounds):
        for library in ("amqp_core", "proton"):
            rate = measure(library, args.messages, args.prefetch)
            best[library] = max(best.get(library, 0.0), rate)
            print(f"  round {round_number + 1}: {library:9s} {rate:10.0f} msgs/s", flush=True)
    print(f"{'library':10s} {'msgs/s':>10s}")
    for library, rate in best.items():
        print(f"{library:10s} {rate:10.0f}")
    print(f"ratio amqp_core/proton = {best['amqp_core'] / best['proton']:.2f}")


if __name__ == "__main__":
    main()
