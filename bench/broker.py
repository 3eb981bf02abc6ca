"""Benchmark: producer -> broker -> consumer throughput, our broker against RabbitMQ.

One producer sends N messages to a queue of the broker while one consumer receives them
from that queue, each in its own process, both written with amqp_core
(MessagingHandler + Container). Every message is acknowledged at both ends: the broker
accepts it from the producer, which counts the accepted outcomes (and fails on any
other), and the consumer accepts each message it receives. The consumer grants credit W
messages at a time, and only once the last window is used up: RabbitMQ 3.10 sends more
than granted when credit is topped up while messages are on their way
(rabbitmq-server#2597), and amqp_core closes such a link (transfer-limit-exceeded). The
time runs from the producer's link opening to the later of its last acceptance and the
consumer's last message, so it covers the whole trip through the broker.

The brokers: ours (`python -m amqp_core.broker`, a subprocess on a free port), and, when
Debian's rabbitmq-server is installed, a private RabbitMQ 3.10 node with its AMQP 1.0
plugin (tests/rabbitmq.py), driven by the very same clients in the same run; the rounds
alternate between them. With --durable the messages are durable: our broker gets a
temporary --data-dir (it stores them, fsynced, before accepting), and both clients ask
for a durable queue (terminus durability `configuration`), without which RabbitMQ would
declare a transient queue and keep durable messages in memory only.

It prints each round's msgs/s, each broker's best and median, and the ratio
ours/RabbitMQ: of the best rates, and per round (a pair of neighbouring runs) with its
median, the figure to quote. Absolute rates on a shared 2-core machine are noise; the
ratio in one run is the result.

--depths N,N,... is the depth sweep instead: for each depth, the producer first fills a
queue nobody reads with N messages, then one consumer drains it, while a probe client
makes one round trip at a time (send, receive, accept) through another queue of the same
broker (tests/peers/crowd_client.py, a Proton client). It prints the drain rate, the
probe's round trips during the drain (p50, p99, max), and, for our broker, its resident
memory per queued message (the growth of its RSS while the queue filled, divided by N).

--memory N measures a broker in this process instead: N messages of --size bytes arrive
(each decoded from its bytes, as from a producer) on one queue; it prints the growth of
the process's RSS per message and how long a full garbage collection takes with them
waiting (the median of five).

--recovery N restarts our broker on a store of N durable messages of --size bytes
(written through the store's API): it prints how long the broker took to accept a
connection and to deliver the first message, its RSS then and at its peak, and the rate
at which one consumer then drains the queue.

--max-memory BYTES runs our broker with that bound (and a data directory, durable or
not): with --depths, the drain rate of a queue mostly on disk, to compare with a run
without it; with --recovery, the broker's RSS under the bound.

Usage: python bench/broker.py [--messages N] [--rounds R] [--size BYTES] [--durable]
                              [--prefetch W] [--no-rabbitmq] [--profile FILE]
                              [--max-memory BYTES]
                              [--depths N,N,... | --memory N | --recovery N]

--profile FILE runs our broker under cProfile and writes its statistics to FILE
(read them with `python -m pstats FILE`); its rates then include the profiler's cost.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CROWD_CLIENT = REPO / "tests" / "peers" / "crowd_client.py"
#: Seconds a producer or consumer may take before the round counts as failed.
ROUND_TIMEOUT = 600
#: Seconds a fill or a drain of the depth sweep may take.
DRAIN_TIMEOUT = 1800


def run_producer(url: str, address: str, messages: int, size: int, durable: bool) -> None:
    from amqp_core import Message
    from amqp_core.engine.terminus import Terminus
    from amqp_core.handlers import MessagingHandler
    from amqp_core.reactor import Container

    body = b"x" * size

    class Producer(MessagingHandler):
        def __init__(self) -> None:
            super().__init__()
            self.sent = 0
            self.accepted = 0
            self.started = 0.0

        def on_start(self, event: Any) -> None:
            connection = event.container.connect(url, reconnect=False)
            sender = event.container.create_sender(connection, address, name="bench-producer")
            if durable:
                sender.target.durability = Terminus.CONFIGURATION

        def on_link_opened(self, event: Any) -> None:
            self.started = time.monotonic()

        def on_sendable(self, event: Any) -> None:
            sender = event.sender
            while sender.credit and self.sent < messages:
                self.sent += 1
                sender.send(Message(id=self.sent, body=body, durable=durable))

        def on_accepted(self, event: Any) -> None:
            self.accepted += 1
            if self.accepted == messages:
                print(f"{self.started:.6f} {time.monotonic():.6f}", flush=True)
                event.connection.close()

        def on_rejected(self, event: Any) -> None:
            self.fail(event, "rejected")

        def on_released(self, event: Any) -> None:
            self.fail(event, "released")

        def on_disconnected(self, event: Any) -> None:
            if self.accepted < messages:
                self.fail(event, "disconnected")

        def fail(self, event: Any, what: str) -> None:
            print(f"producer: message {what} after {self.accepted} accepted", file=sys.stderr)
            os._exit(1)

    Container(Producer()).run()


def run_consumer(url: str, address: str, messages: int, prefetch: int, durable: bool) -> None:
    from amqp_core.engine.terminus import Terminus
    from amqp_core.handlers import MessagingHandler
    from amqp_core.reactor import Container

    class Consumer(MessagingHandler):
        def __init__(self) -> None:
            # Credit is granted here, a window at a time (see main's --prefetch help);
            # auto_accept accepts each message once on_message returns.
            super().__init__(prefetch=0)
            self.received = 0

        def on_start(self, event: Any) -> None:
            connection = event.container.connect(url, reconnect=False)
            receiver = event.container.create_receiver(connection, address, name="bench-consumer")
            if durable:
                receiver.source.durability = Terminus.CONFIGURATION
            receiver.flow(min(prefetch, messages))

        def on_link_opened(self, event: Any) -> None:
            print(f"ready {time.monotonic():.6f}", flush=True)

        def on_message(self, event: Any) -> None:
            self.received += 1
            receiver = event.receiver
            if self.received == messages:
                print(f"{time.monotonic():.6f}", flush=True)
                receiver.close()
                event.connection.close()
            elif receiver.credit == 0:
                receiver.flow(min(prefetch, messages - self.received))

        def on_disconnected(self, event: Any) -> None:
            if self.received < messages:
                print(f"consumer: disconnected after {self.received}", file=sys.stderr)
                os._exit(1)

    Container(Consumer()).run()


def read_line(process: subprocess.Popen[bytes], timeout: float, what: str = "the consumer") -> str:
    """The next line `process` prints, waiting at most `timeout` seconds."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            raise RuntimeError(f"no output from {what} in {timeout} s")
        chunk = os.read(process.stdout.fileno(), 1)
        if not chunk:
            raise RuntimeError(f"{what} exited (code {process.wait()})")
        line += chunk
    return line.decode().strip()


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """TERM a process we started, by its PID; KILL it if it does not go in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(url: str, address: str, args: argparse.Namespace) -> float:
    """Messages per second through the broker at `url`, queue `address`."""
    me = [sys.executable, __file__, "--url", url, "--address", address]
    options = ["--messages", str(args.messages), "--size", str(args.size)]
    options += ["--prefetch", str(args.prefetch)] + (["--durable"] if args.durable else [])
    consumer = subprocess.Popen([*me, "--role", "consumer", *options], stdout=subprocess.PIPE)
    try:
        if not read_line(consumer, 60).startswith("ready"):
            raise RuntimeError("the consumer did not attach")
        producer = subprocess.run(
            [*me, "--role", "producer", *options],
            capture_output=True,
            text=True,
            timeout=ROUND_TIMEOUT,
            check=False,
        )
        if producer.returncode != 0:
            raise RuntimeError(f"producer failed: {producer.stderr[-2000:]}")
        started, produced = map(float, producer.stdout.split())
        consumed = float(read_line(consumer, ROUND_TIMEOUT))
        consumer.wait(timeout=60)
    finally:
        stop(consumer, 5)
    return args.messages / (max(produced, consumed) - started)


def resident_kib(pid: int) -> int:
    """The resident memory of process `pid`, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Probe:
    """A bystander through `address` (tests/peers/crowd_client.py, a Proton client making
    one round trip after another), its round trips collected with the time each ended,
    by a thread reading its output."""

    def __init__(self, url: str, address: str) -> None:
        command = [sys.executable, str(CROWD_CLIENT), "probe", url, address]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE)
        self.round_trips: list[tuple[float, float]] = []  # (ended at, milliseconds)
        if read_line(self.process, 60, "the probe") != "ready":
            raise RuntimeError("the probe did not attach")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.round_trips.append((time.monotonic(), float(line)))

    def between(self, start: float, end: float) -> list[float]:
        return [rtt for ended, rtt in self.round_trips if start <= ended <= end]

    def finish_after(self, moment: float, timeout: float = ROUND_TIMEOUT) -> float:
        """Wait for the round trip under way at `moment` to end; when it did."""
        deadline = time.monotonic() + timeout
        while not self.round_trips or self.round_trips[-1][0] < moment:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no round trip ended in {timeout} s")
            time.sleep(0.01)
        return self.round_trips[-1][0]

    def stop(self) -> None:
        stop(self.process, 5)
        self._reader.join(5)


def depth_sweep(url: str, pid: int | None, depth: int, args: argparse.Namespace) -> str:
    """Fill a queue with `depth` messages, then drain it; one line of results."""
    me = [sys.executable, __file__, "--url", url]
    tag = uuid.uuid4().hex[:8]
    queue, probe_queue = f"depth-{tag}", f"probe-{tag}"
    if pid is None:  # RabbitMQ: /queue/NAME declares the queue on attach
        queue, probe_queue = f"/queue/{queue}", f"/queue/{probe_queue}"
    options = ["--address", queue, "--messages", str(depth), "--size", str(args.size)]
    options += ["--prefetch", str(args.prefetch)] + (["--durable"] if args.durable else [])
    before = resident_kib(pid) if pid else 0
    subprocess.run(
        [*me, "--role", "producer", *options],
        timeout=DRAIN_TIMEOUT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    per_message = f"{(resident_kib(pid) - before) * 1024 / depth:6.0f}" if pid else "     -"
    probe = Probe(url, probe_queue)
    consumer = subprocess.Popen([*me, "--role", "consumer", *options], stdout=subprocess.PIPE)
    try:
        started = float(read_line(consumer, 60).split()[1])
        finished = float(read_line(consumer, DRAIN_TIMEOUT))
        consumer.wait(timeout=60)
    finally:
        stop(consumer, 5)
        probe.stop()
    round_trips = sorted(probe.between(started, finished)) or [float("nan")]
    p50 = round_trips[len(round_trips) // 2]
    p99 = round_trips[min(len(round_trips) - 1, len(round_trips) * 99 // 100)]
    rate = depth / (finished - started)
    return (
        f"{depth:>9d} {rate:10.0f} {p50:9.1f} {p99:9.1f} {round_trips[-1]:9.1f} "
        f"{len(round_trips):7d} {per_message}"
    )


def memory(count: int, size: int) -> None:
    """RSS per waiting message, and the time of a full collection with them waiting."""
    import gc

    from amqp_core import Message
    from amqp_core.broker.server import Broker

    broker = Broker()
    encoded = Message(id=1, body=b"x" * size).encode()
    gc.collect()
    before = resident_kib(os.getpid())
    for _ in range(count):
        message = Message()
        message.decode(encoded)
        broker.publish("memory", message, lambda state, condition: None)
    del message
    gc.collect()
    per_message = (resident_kib(os.getpid()) - before) * 1024 / count
    collections = []
    for _ in range(5):
        started = time.perf_counter()
        gc.collect()
        collections.append(time.perf_counter() - started)
    print(
        f"{count} waiting messages of {len(encoded)} bytes (body {size}): "
        f"RSS {per_message:.0f} bytes per message, "
        f"full garbage collection {statistics.median(collections) * 1000:.1f} ms"
    )


def peak_kib(pid: int) -> int:
    """The peak resident memory of process `pid` so far, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def recovery(count: int, args: argparse.Namespace) -> None:
    """Restart our broker on a store of `count` durable messages; print when it listened
    and delivered the first message, its RSS, and the drain rate."""
    from processes import free_port

    from amqp_core import Message
    from amqp_core.broker.store import MessageStore
    from amqp_core.utils import BlockingConnection

    encoded = Message(body=b"x" * args.size, durable=True).encode()
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as data_dir:
        with MessageStore.open(Path(data_dir)) as store:
            for start in range(0, count, 10_000):
                store.add_many([("recovery", encoded)] * min(10_000, count - start))
        port = free_port()
        url = f"127.0.0.1:{port}"
        command = [sys.executable, "-m", "amqp_core.broker", "-a", url, "--data-dir", data_dir]
        if args.max_memory:
            command += ["--max-memory", str(args.max_memory)]
        started = time.monotonic()
        broker = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() - started > ROUND_TIMEOUT or broker.poll() is not None:
                        raise RuntimeError("the broker does not listen") from None
                    time.sleep(0.01)
            listening = time.monotonic() - started
            connection = BlockingConnection(url, timeout=ROUND_TIMEOUT)
            connection.create_receiver("recovery", credit=1).receive(timeout=ROUND_TIMEOUT)
            connection.close()
            first = time.monotonic() - started
            rss_first = resident_kib(broker.pid) // 1024
            time.sleep(5)  # messages read back while nobody consumes, up to the bound
            rss_idle = resident_kib(broker.pid) // 1024
            me = [sys.executable, __file__, "--url", url, "--address", "recovery"]
            drain = [*me, "--role", "consumer", "--messages", str(count - 1)]
            drain += ["--prefetch", str(args.prefetch), "--durable"]
            consumer = subprocess.Popen(drain, stdout=subprocess.PIPE)
            try:
                drain_started = float(read_line(consumer, 60).split()[1])
                drained = float(read_line(consumer, DRAIN_TIMEOUT))
                consumer.wait(timeout=60)
            finally:
                stop(consumer, 5)
            peak = peak_kib(broker.pid) // 1024
        finally:
            stop(broker, 60)
    bound = f"--max-memory {args.max_memory}" if args.max_memory else "no --max-memory"
    print(
        f"restart with {count} durable messages of {len(encoded)} bytes ({bound}): "
        f"listening after {listening:.2f} s, first message delivered after {first:.2f} s "
        f"(RSS {rss_first} MiB); RSS {rss_idle} MiB 5 s later; drained at "
        f"{(count - 1) / (drained - drain_started):.0f} msgs/s; peak RSS {peak} MiB"
    )


@contextlib.contextmanager
def our_broker(
    durable: bool, profile: str | None, max_memory: int | None = None
) -> Iterator[tuple[str, int]]:
    """`python -m amqp_core.broker` on a free port (optionally under cProfile, or with
    a memory bound): its URL and PID."""
    from processes import free_port, wait_for_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as data_dir:
        command = [sys.executable]
        if profile:
            command += ["-m", "cProfile", "-o", profile]
        command += ["-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}"]
        if durable or max_memory:
            command += ["--data-dir", data_dir]
        if max_memory:
            command += ["--max-memory", str(max_memory)]
        broker = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port, timeout=30)
            yield f"amqp://127.0.0.1:{port}", broker.pid
        finally:
            stop(broker, 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the brokers R times")
    parser.add_argument("--size", type=int, default=100, help="message body size in bytes")
    parser.add_argument("--durable", action="store_true", help="send durable messages")
    parser.add_argument(
        "--prefetch",
        type=int,
        default=100,
        metavar="W",
        help="consumer credit: W messages more each time it runs out (not topped up "
        "while messages are on their way: RabbitMQ 3.10 then sends more than granted, "
        "rabbitmq-server#2597, which amqp_core refuses with transfer-limit-exceeded)",
    )
    parser.add_argument("--no-rabbitmq", action="store_true", help="measure our broker only")
    parser.add_argument("--profile", metavar="FILE", help="cProfile our broker into FILE")
    parser.add_argument(
        "--depths",
        metavar="N,N,...",
        help="the depth sweep: fill a queue with N messages, then drain it (e.g. "
        "10000,100000,1000000)",
    )
    parser.add_argument(
        "--memory", type=int, metavar="N", help="memory and garbage collection, N messages"
    )
    parser.add_argument(
        "--recovery", type=int, metavar="N", help="restart our broker on N stored messages"
    )
    parser.add_argument(
        "--max-memory", type=int, metavar="BYTES", help="run our broker with this bound"
    )
    parser.add_argument("--role", choices=["producer", "consumer"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "producer":
        run_producer(args.url, args.address, args.messages, args.size, args.durable)
        return
    if args.role == "consumer":
        run_consumer(args.url, args.address, args.messages, args.prefetch, args.durable)
        return
    if args.memory:
        memory(args.memory, args.size)
        return
    sys.path.insert(0, str(REPO / "tests"))  # tests/rabbitmq.py and tests/processes.py
    if args.recovery:
        recovery(args.recovery, args)
        return

    from rabbitmq import RabbitMQ, rabbitmq_available

    kind = "durable" if args.durable else "non-durable"
    if args.depths:
        print(
            f"depth sweep: {kind} messages of {args.size} bytes fill a queue, then one "
            f"consumer drains it (credit window {args.prefetch}) while a probe makes round "
            "trips through another queue"
        )
    else:
        print(
            f"{args.messages} acknowledged {kind} messages of {args.size} bytes, producer -> "
            f"queue -> consumer (credit window {args.prefetch}), {args.rounds} round(s)"
        )
    with contextlib.ExitStack() as stack:
        url, pid = stack.enter_context(our_broker(args.durable, args.profile, args.max_memory))
        brokers: dict[str, tuple[str, int | None]] = {"ours": (url, pid)}
        if args.no_rabbitmq:
            pass
        elif rabbitmq_available():
            started = time.monotonic()
            rabbit = stack.enter_context(RabbitMQ())
            print(f"  RabbitMQ 3.10 started in {time.monotonic() - started:.1f} s")
            brokers["rabbitmq"] = (rabbit.url, None)
        else:
            print("  rabbitmq-server is not installed: measuring our broker only")
        if args.depths:
            print(
                f"{'broker':10s} {'depth':>9s} {'drain/s':>10s} {'probe p50':>9s} {'p99':>9s} "
                f"{'max ms':>9s} {'probes':>7s} {'RSS B/msg':>9s}"
            )
            for depth in (int(text) for text in args.depths.split(",")):
                for name, (url, pid) in brokers.items():
                    print(f"{name:10s} {depth_sweep(url, pid, depth, args)}", flush=True)
            return
        rates: dict[str, list[float]] = {name: [] for name in brokers}
        for round_number in range(args.rounds):
            for name, (url, _) in brokers.items():
                # A queue of its own each round; RabbitMQ declares /queue/NAME on attach.
                queue = f"bench-{uuid.uuid4().hex[:8]}"
                address = f"/queue/{queue}" if name == "rabbitmq" else queue
                rate = measure(url, address, args)
                rates[name].append(rate)
                print(f"  round {round_number + 1}: {name:8s} {rate:10.0f} msgs/s", flush=True)
    print(f"{'broker':10s} {'best':>10s} {'median':>10s}  msgs/s")
    for name, values in rates.items():
        print(f"{name:10s} {max(values):10.0f} {statistics.median(values):10.0f}")
    if "rabbitmq" in rates:
        ours, theirs = rates["ours"], rates["rabbitmq"]
        per_round = [mine / other for mine, other in zip(ours, theirs, strict=True)]
        print(f"ratio ours/RabbitMQ, best rates: {max(ours) / max(theirs):.2f}")
        print(
            "ratio ours/RabbitMQ, per round: "
            + ", ".join(f"{ratio:.2f}" for ratio in per_round)
            + f" (median {statistics.median(per_round):.2f})"
        )


if __name__ == "__main__":
    main()
