"""rhea, the Node.js AMQP 1.0 client, against the embedded broker (`python -m
amqp_core.broker`): what a rhea user relies on.

- rhea's messages go through the broker to a rhea receiver, each accepted, and an
  accepted message is gone from the queue;
- a rhea receiver's JMS selector, in rhea's own form (filter key ``jms-selector``,
  numeric descriptor 0x0000468C00000004, as `rhea.filter.selector()` makes it), is
  applied: only matching messages arrive, the others stay queued for other consumers,
  and the broker echoes the filter in its attach, as rhea sees it;
- a selector that does not parse gets the link detached with ``amqp:invalid-field``;
- a rhea receiver with distribution-mode ``copy`` browses: it sees the messages and
  they stay queued.

The broker runs as a subprocess on a free port (shared by the tests, each with
addresses of its own), the rhea clients as node processes
(tests/peers/rhea_broker_client.js, which prints what rhea saw as JSON lines); every
wait is bounded and every process is stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import proton
import proton.utils
import pytest
from processes import free_port, stop, wait_for_port

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
CLIENT = PEERS / "rhea_broker_client.js"

#: How long one rhea client may take to do its part on a loaded machine.
STEP_TIMEOUT = 30.0
#: How long a test waits for something that should happen at once.
PROMPTLY = 10.0
#: How long a test watches for something that must not happen.
QUIETLY = 0.5

#: rhea's selector filter: its key and its descriptor (in hex, as the client reports it).
JMS_SELECTOR_KEY = "jms-selector"
JMS_SELECTOR_DESCRIPTOR = "0x468c00000004"


@dataclass
class Broker:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The broker on a free port, its output in a log file; stopped by its PID. The
    tests share it, each with addresses of its own."""
    if not (PEERS / "node_modules" / "rhea").is_dir():
        pytest.fail("rhea is not installed: run `npm ci --prefix tests/peers`")
    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "amqp_core.broker", "-a", f"127.0.0.1:{port}"],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
        yield Broker(process, port, log)
    finally:
        stop(process)


class Rhea:
    """One rhea client process: start it, then `result()` waits for it to finish."""

    def __init__(self, broker: Broker, config: dict[str, Any]) -> None:
        config = {"host": "127.0.0.1", "port": broker.port, **config}
        self.config = config
        self.process = subprocess.Popen(
            ["node", str(CLIENT), json.dumps(config)],
            cwd=PEERS,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.output = ""

    def result(self) -> Rhea:
        try:
            stdout, stderr = self.process.communicate(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(self.process)
            stdout, stderr = self.process.communicate()
        self.output = f"rhea {self.config}\nexit {self.process.returncode}\n{stdout}\n{stderr}"
        self.events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        return self

    def event(self, kind: str) -> dict[str, Any]:
        """The one event of this kind that rhea reported; fail, showing its output, if
        there is none."""
        found = [event for event in self.events if event["event"] == kind]
        assert len(found) == 1, f"expected one {kind} event:\n{self.output}"
        return found[0]

    def stop(self) -> None:
        stop(self.process)


@pytest.fixture
def rhea(broker: Broker) -> Iterator[Callable[..., Rhea]]:
    """Start rhea clients of the test's broker with this configuration (see
    rhea_broker_client.js); stopped by PID at the end of the test."""
    started: list[Rhea] = []

    def start(**config: Any) -> Rhea:
        client = Rhea(broker, config)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


def run(start: Callable[..., Rhea], **config: Any) -> Rhea:
    """Run a rhea client to its end."""
    return start(**config).result()


def bodies(client: Rhea) -> list[Any]:
    return [message["body"] for message in client.event("received")["messages"]]


def assert_queue_empty(broker: Broker, address: str) -> None:
    """Nothing is left on `address` (checked with Proton's client)."""
    connection = proton.utils.BlockingConnection(broker.url, timeout=PROMPTLY)
    try:
        receiver = connection.create_receiver(address, name="checker", credit=10)
        with pytest.raises(proton.Timeout):
            left = receiver.receive(timeout=QUIETLY)
            pytest.fail(f"{address} still holds {left.body!r}")
    finally:
        connection.close()


def coloured(count: int) -> list[dict[str, Any]]:
    """Messages 0..count-1, coloured green, red, blue, green, ..."""
    colours = ("green", "red", "blue")
    return [
        {"body": number, "application_properties": {"colour": colours[number % 3]}}
        for number in range(count)
    ]


def test_hundred_messages_from_a_rhea_sender_reach_a_rhea_receiver(
    broker: Broker, rhea: Callable[..., Rhea]
) -> None:
    receiver = rhea(role="receive", address="relay", count=100)
    sender = run(rhea, role="send", address="relay", messages=[{"body": n} for n in range(100)])
    assert sender.event("settled")["outcomes"] == ["accepted"] * 100, sender.output
    received = receiver.result().event("received")["messages"]
    assert [message["body"] for message in received] == list(range(100)), receiver.output
    # Sent to rhea unsettled, for rhea to accept: a consumer, not a browser.
    assert not any(message["settled_by_broker"] for message in received)
    # rhea accepted every one of them before it closed its connection: none comes back.
    assert_queue_empty(broker, "relay")


def test_a_rhea_selector_gets_only_matching_messages_and_is_echoed(
    broker: Broker, rhea: Callable[..., Rhea]
) -> None:
    # Nine coloured messages, then a green "end": had the broker sent the receiver a
    # message that does not match, it would have come before "end".
    messages = [*coloured(9), {"body": "end", "application_properties": {"colour": "green"}}]
    sender = run(rhea, role="send", address="paint", messages=messages)
    assert sender.event("settled")["outcomes"] == ["accepted"] * 10, sender.output

    green = run(rhea, role="receive", address="paint", selector="colour = 'green'", until="end")
    assert bodies(green) == [0, 3, 6, "end"], green.output
    source = green.event("attached")["source"]
    assert source["address"] == "paint"
    assert source["filter"] == {
        JMS_SELECTOR_KEY: {"descriptor": JMS_SELECTOR_DESCRIPTOR, "value": "colour = 'green'"}
    }, green.output

    # The others were passed over, not dropped: they wait, in order, for other consumers.
    rest = run(rhea, role="receive", address="paint", count=6)
    assert bodies(rest) == [1, 2, 4, 5, 7, 8], rest.output
    assert "filter" not in rest.event("attached")["source"]
    assert_queue_empty(broker, "paint")


def test_a_rhea_selector_that_does_not_parse_detaches_with_invalid_field(
    broker: Broker, rhea: Callable[..., Rhea]
) -> None:
    # A message is waiting: a broker that ignored the bad filter would deliver it.
    sender = run(rhea, role="send", address="strict", messages=coloured(1))
    assert sender.event("settled")["outcomes"] == ["accepted"], sender.output

    refused = run(rhea, role="receive", address="strict", selector="colour = ", count=1)
    error = refused.event("link_error")
    assert error["condition"] == "amqp:invalid-field", refused.output
    assert "position 9" in error["description"], refused.output
    assert not any(event["event"] == "received" for event in refused.events), refused.output

    # The message is still there for a receiver whose selector parses.
    matching = run(rhea, role="receive", address="strict", selector="colour = 'green'", count=1)
    assert bodies(matching) == [0], matching.output


def test_a_rhea_receiver_with_distribution_mode_copy_browses_without_consuming(
    broker: Broker, rhea: Callable[..., Rhea]
) -> None:
    sender = run(rhea, role="send", address="shelf", messages=coloured(5))
    assert sender.event("settled")["outcomes"] == ["accepted"] * 5, sender.output

    for _ in range(2):
        browser = run(rhea, role="receive", address="shelf", distribution_mode="copy", count=5)
        assert browser.event("attached")["source"]["distribution_mode"] == "copy"
        browsed = browser.event("received")["messages"]
        assert [message["body"] for message in browsed] == [0, 1, 2, 3, 4], browser.output
        # Copies, settled by the broker as it sent them: there is nothing to accept.
        assert all(message["settled_by_broker"] for message in browsed), browser.output

    # Browsed twice, consumed by nobody: a consumer still gets every one, in order.
    consumer = run(rhea, role="receive", address="shelf", count=5)
    assert bodies(consumer) == [0, 1, 2, 3, 4], consumer.output
    assert_queue_empty(broker, "shelf")
