"""The interop matrix (issue 3): amqp_core against Qpid Proton and rhea, each peer as
client and as listener, cell by cell.

Both sides of every test are separate processes that print what happens as JSON lines:
our side is tests/peers/messaging_peer.py run on amqp_core, the Proton peer is the same
program run on Proton, and the rhea peer is tests/peers/rhea_peer.js (the scenarios are
described there). Ports are free ones, every wait is bounded, and every process is
stopped by its PID when the test ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from certificates import Certificates
from processes import free_port

PEERS = Path(__file__).parent / "peers"
REPOSITORY = Path(__file__).parent.parent
HOST = "127.0.0.1"

#: How long any one step may take on a slow shared machine before the test fails.
STEP_TIMEOUT = 20.0
#: Message counts and sizes of the cells.
MESSAGE_COUNT = 1000
LARGE_MESSAGE_SIZE = 5 * 1024 * 1024
HUGE_MESSAGE_SIZE = 50 * 1024 * 1024
#: Heartbeat cells: the idle timeout both sides announce, and how long the client idles.
IDLE_TIMEOUT = 1.0
IDLE_PERIOD = 3.0
#: A peer that stops answering must be noticed within this long (idle timeout 1 s).
DEAD_PEER_DEADLINE = 4.0

UNAUTHORIZED = "amqp:unauthorized-access"


class PeerProcess:
    """A running peer program: the events it printed, collected as they come."""

    def __init__(self, label: str, argv: list[str], log_dir: Path) -> None:
        self.label = label
        self.stderr_path = log_dir / f"{label}.stderr"
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")])
        )
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=environment,
                cwd=PEERS,
                text=True,
            )
        self.events: list[dict[str, Any]] = []
        self.other_output: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name=f"read-{label}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._changed:
                if isinstance(event, dict):
                    self.events.append(event)
                else:
                    self.other_output.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def find(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """The first event of this kind with these field values, if it came."""
        with self._changed:
            for event in self.events:
                if event["event"] == kind and all(event.get(k) == v for k, v in fields.items()):
                    return event
        return None

    def wait_for(self, kind: str, timeout: float = STEP_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Wait for an event of this kind with these field values; fail (showing what
        did happen) if it does not come in time or the program ends without it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                event = self.find(kind, **fields)
                if event is not None:
                    return event
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    break
                self._changed.wait(remaining)
        why = "ended" if self._eof else f"waited {timeout} s"
        pytest.fail(f"{self.label}: no {kind} event {fields or ''} ({why})\n{self.report()}")

    def report(self) -> str:
        """What the program printed, for failure messages."""
        stderr = self.stderr_path.read_text(errors="replace")[-4000:]
        events = [json.dumps(event)[:300] for event in self.events[-30:]]
        return (
            f"--- {self.label} (pid {self.pid}, exit {self.process.poll()}) events:\n"
            + "\n".join(events)
            + f"\n--- {self.label} other output:\n"
            + "".join(self.other_output[-30:])
            + f"--- {self.label} stderr:\n{stderr}"
        )

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def stop(self) -> None:
        """Stop the program by its PID (resuming it first if paused)."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def program(library: str, config: dict[str, Any]) -> list[str]:
    """The command line that runs one side on `library` (amqp_core, proton or rhea)."""
    if library == "rhea":
        if not (PEERS / "node_modules" / "rhea").is_dir():
            pytest.fail("rhea is not installed: run `npm ci --prefix tests/peers`")
        return ["node", str(PEERS / "rhea_peer.js"), json.dumps(config)]
    script = str(PEERS / "messaging_peer.py")
    return [sys.executable, script, "--library", library, json.dumps(config)]


@dataclass
class Pair:
    """One test's two sides, by role and by who wrote them."""

    listener: PeerProcess
    client: PeerProcess
    ours: PeerProcess
    theirs: PeerProcess

    def report(self) -> str:
        return self.listener.report() + "\n" + self.client.report()


Spawn = Callable[[str, str, dict[str, Any]], PeerProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start peer programs; stop every one of them when the test ends."""
    started: list[PeerProcess] = []

    def start(label: str, library: str, config: dict[str, Any]) -> PeerProcess:
        peer = PeerProcess(label, program(library, config), tmp_path)
        started.append(peer)
        return peer

    yield start
    for peer in reversed(started):
        peer.stop()


@pytest.fixture
def start_pair(spawn: Spawn, peer: str, our_role: str) -> Callable[..., Pair]:
    """Start a listener, wait until it listens, then start a client against it. Our side
    (amqp_core) takes `our_role`; `peer` takes the other."""

    def start(listener_config: dict[str, Any], client_config: dict[str, Any]) -> Pair:
        listener_library = "amqp_core" if our_role == "listener" else peer
        client_library = peer if our_role == "listener" else "amqp_core"
        requested = 0 if listener_library == "rhea" else free_port()
        listener = spawn(
            f"{listener_library}-listener",
            listener_library,
            {"role": "listen", "host": HOST, "port": requested, **listener_config},
        )
        port = listener.wait_for("ready")["port"]
        client = spawn(
            f"{client_library}-client",
            client_library,
            {"role": "connect", "host": HOST, "port": port, **client_config},
        )
        if our_role == "listener":
            return Pair(listener, client, ours=listener, theirs=client)
        return Pair(listener, client, ours=client, theirs=listener)

    return start


MATRIX = pytest.mark.parametrize(
    ("peer", "our_role"),
    [
        pytest.param("proton", "client", id="amqp_core-client-to-proton-listener"),
        pytest.param("proton", "listener", id="proton-client-to-amqp_core-listener"),
        pytest.param("rhea", "client", id="amqp_core-client-to-rhea-listener"),
        pytest.param("rhea", "listener", id="rhea-client-to-amqp_core-listener"),
    ],
)


def test_our_listener_on_port_0_listens_on_a_free_port(spawn: Spawn) -> None:
    """`listen("host:0")` picks a free port and `Acceptor.port` tells which. (The
    other tests hand every listener but rhea's a port found beforehand.)"""
    listener = spawn("amqp_core-listener", "amqp_core", {"role": "listen", "host": HOST, "port": 0})
    port = listener.wait_for("ready")["port"]
    assert port not in (0, 5672), f"listening on port 0 gave port {port}"
    client = spawn(
        "proton-client",
        "proton",
        {"role": "connect", "host": HOST, "port": port, "scenario": "open"},
    )
    client.wait_for("done")


def assert_no_errors(pair: Pair) -> None:
    for side in (pair.listener, pair.client):
        for name in ("transport_error", "connection_error", "link_error", "disconnected"):
            event = side.find(name)
            assert event is None, f"{side.label} reported {event}\n{pair.report()}"


@MATRIX
def test_thousand_messages_each_way_acknowledged_in_order(start_pair: Callable[..., Pair]) -> None:
    """The client sends 1000 messages to the listener's sink and receives 1000 from its
    source; every one arrives once, in order, and is accepted."""
    pair = start_pair({"count": MESSAGE_COUNT}, {"scenario": "messages", "count": MESSAGE_COUNT})
    pair.client.wait_for("done")
    numbers = list(range(MESSAGE_COUNT))
    assert pair.listener.wait_for("received", link="to-sink")["bodies"] == numbers
    assert pair.client.wait_for("received", link="from-source")["bodies"] == numbers
    assert pair.client.wait_for("accepted", link="to-sink")["count"] == MESSAGE_COUNT
    assert pair.listener.wait_for("accepted", link="from-source")["count"] == MESSAGE_COUNT
    assert_no_errors(pair)


@MATRIX
def test_dynamic_receiver_gets_the_address_the_listener_assigned(
    start_pair: Callable[..., Pair],
) -> None:
    pair = start_pair({}, {"scenario": "dynamic"})
    assigned = pair.listener.wait_for("link", link="dynamic")["address"]
    assert assigned.startswith("dynamic-")
    assert pair.client.wait_for("link", link="dynamic")["address"] == assigned
    assert pair.client.wait_for("received", link="dynamic")["bodies"] == [assigned]
    assert pair.listener.wait_for("accepted", link="dynamic")["count"] == 1
    pair.client.wait_for("done")
    assert_no_errors(pair)


@MATRIX
@pytest.mark.parametrize(
    "size",
    [LARGE_MESSAGE_SIZE, pytest.param(HUGE_MESSAGE_SIZE, marks=pytest.mark.slow)],
    ids=["5MB", "50MB"],
)
def test_a_large_message_each_way_arrives_intact(
    start_pair: Callable[..., Pair], size: int
) -> None:
    config = {"count": 1, "size": size}
    pair = start_pair(config, {"scenario": "messages", **config})
    pair.client.wait_for("done")
    for sender, receiver, link in [
        (pair.client, pair.listener, "to-sink"),
        (pair.listener, pair.client, "from-source"),
    ]:
        sent = sender.wait_for("sent")["bodies"]
        assert sent[0]["size"] == size
        assert receiver.wait_for("received", link=link)["bodies"] == sent
        assert sender.wait_for("accepted", link=link)["count"] == 1
    assert_no_errors(pair)


SASL_MATRIX = pytest.mark.parametrize(
    ("peer", "our_role"),
    [
        # Proton's listener cannot check a PLAIN password: see the test after this one.
        pytest.param("proton", "listener", id="proton-client-to-amqp_core-listener"),
        pytest.param("rhea", "client", id="amqp_core-client-to-rhea-listener"),
        pytest.param("rhea", "listener", id="rhea-client-to-amqp_core-listener"),
    ],
)
USERS = {"alice": "right password"}


@SASL_MATRIX
def test_sasl_plain_with_the_right_password_logs_in(start_pair: Callable[..., Pair]) -> None:
    pair = start_pair(
        {"users": USERS}, {"scenario": "open", "user": "alice", "password": USERS["alice"]}
    )
    pair.client.wait_for("done")
    assert pair.listener.wait_for("opened")["user"] == "alice"
    assert_no_errors(pair)


@SASL_MATRIX
def test_sasl_plain_with_a_wrong_password_is_refused(start_pair: Callable[..., Pair]) -> None:
    pair = start_pair({"users": USERS}, {"scenario": "open", "user": "alice", "password": "wrong"})
    error = pair.client.wait_for("transport_error")
    assert error["condition"] == UNAUTHORIZED, pair.report()
    assert pair.client.find("opened") is None
    assert pair.listener.find("opened") is None


@pytest.mark.parametrize(("peer", "our_role"), [("proton", "client")])
def test_sasl_plain_refused_by_a_proton_listener_that_cannot_check_it(
    start_pair: Callable[..., Pair],
) -> None:
    """Proton built without Cyrus (as pip builds it) offers only ANONYMOUS as a server.
    A client that insists on PLAIN must then be refused with unauthorized-access, not
    hang or log in anonymously."""
    pair = start_pair(
        {},
        {"scenario": "open", "user": "alice", "password": "secret", "allowed_mechs": "PLAIN"},
    )
    error = pair.client.wait_for("transport_error")
    assert error["condition"] == UNAUTHORIZED, pair.report()
    assert pair.client.find("opened") is None


#: The name every client verifies the server's certificate against. Proton checks only
#: DNS names, not IP addresses, so the clients connect to 127.0.0.1 and ask for this.
SNI = "localhost"


@MATRIX
def test_tls_with_peer_verification(
    start_pair: Callable[..., Pair],
    spawn: Spawn,
    certificates: Certificates,
    our_role: str,
    peer: str,
) -> None:
    """Messages flow over amqps:// to a server whose certificate the client verified
    (chain and name); a client that does not trust the server's CA refuses it."""
    server = {"cert": str(certificates.server_cert), "key": str(certificates.server_key)}
    pair = start_pair(
        {"tls": server, "count": 10},
        {"scenario": "messages", "count": 10, "tls": {"ca": str(certificates.ca)}, "sni": SNI},
    )
    pair.client.wait_for("done")
    assert pair.listener.wait_for("received", link="to-sink")["bodies"] == list(range(10))
    assert pair.client.wait_for("received", link="from-source")["bodies"] == list(range(10))
    assert_no_errors(pair)

    distrustful_library = peer if our_role == "listener" else "amqp_core"
    distrustful = spawn(
        f"{distrustful_library}-distrustful-client",
        distrustful_library,
        {
            "role": "connect",
            "host": HOST,
            "port": pair.listener.wait_for("ready")["port"],
            "scenario": "open",
            "tls": {"ca": str(certificates.other_ca)},
            "sni": SNI,
        },
    )
    distrustful.wait_for("transport_error")
    assert distrustful.find("opened") is None


@MATRIX
def test_heartbeats_keep_an_idle_connection_alive(start_pair: Callable[..., Pair]) -> None:
    """Both sides announce a 1 s idle timeout; the client idles for 3 s, then a message
    still goes through and nobody saw an error."""
    pair = start_pair(
        {"idle_timeout": IDLE_TIMEOUT, "count": 1},
        {"scenario": "heartbeat", "idle_timeout": IDLE_TIMEOUT, "delay": IDLE_PERIOD},
    )
    pair.client.wait_for("opened")
    pair.client.wait_for("done", timeout=IDLE_PERIOD + STEP_TIMEOUT)
    assert pair.listener.wait_for("received", link="after-idle")["bodies"] == ["after idling"]
    assert_no_errors(pair)


@MATRIX
def test_a_peer_that_stops_answering_is_detected(
    start_pair: Callable[..., Pair], our_role: str
) -> None:
    """With a 1 s idle timeout, our side reports the transport error within a few
    seconds of the peer freezing (SIGSTOP)."""
    ours = {"idle_timeout": IDLE_TIMEOUT}
    if our_role == "listener":
        pair = start_pair(ours, {"scenario": "idle"})
    else:
        pair = start_pair({}, {"scenario": "idle", **ours})
    pair.client.wait_for("opened")
    pair.listener.wait_for("opened")
    pair.theirs.pause()
    error = pair.ours.wait_for("transport_error", timeout=DEAD_PEER_DEADLINE)
    assert error["condition"] == "amqp:resource-limit-exceeded", pair.report()
