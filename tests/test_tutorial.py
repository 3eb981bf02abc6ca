"""The tutorial's programs, run as the tutorial runs them: as separate processes.

Each test starts the programs of one tutorial section on a free port and checks what
they print exactly as Proton's own test_examples.py does (standard error included).
Every program comes in two versions: ours (examples/, on amqp_core) and Proton's
(its example programs, on python-qpid-proton). Each pair runs
  (a) ours with ours, through our examples/broker.py;
  (b) ours with ours, through Proton's broker.py (it has no selectors or browsing);
  (c) ours with Proton's, both ways, through our broker or directly;
  (d) Proton's with Proton's, through Proton's broker.py with its imports changed to
      amqp_core: the tutorial's broker runs on amqp_core unchanged.
A test id reads "broker-<which>/<program>-<which>/...".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
HOST = "127.0.0.1"

OURS = "ours"
PROTON = "proton"
#: Proton's broker.py with `proton` replaced by `amqp_core` in its imports.
PROTON_ON_AMQP_CORE = "proton_on_amqp_core"

#: Seconds a server gets to listen, and a program to finish its work.
START_TIMEOUT = 15.0
RUN_TIMEOUT = 30.0
#: Seconds a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0

#: Programs whose -a names a queue or node as well as host and port.
TAKES_NODE = {
    "client",
    "colour_send",
    "direct_recv",
    "direct_send",
    "helloworld_direct",
    "selected_recv",
    "server",
    "simple_recv",
    "simple_send",
}
#: Proton's programs that have no -a but a fixed host and port, which the test rewrites.
FIXED_ADDRESS = {
    "helloworld": "localhost:5672",
    "queue_browser": "localhost:5672",
    "helloworld_direct": "localhost:8888",
    "server_direct": "0.0.0.0:8888",
}

POEM = [
    "Twas brillig, and the slithy toves",
    "Did gire and gymble in the wabe.",
    "All mimsy were the borogroves,",
    "And the mome raths outgrabe.",
]
CLIENT_OUTPUT = [f"{line} => {line.upper()}" for line in POEM]
CONFIRMED = ["all messages confirmed"]


def sequence(first: int, last: int) -> list[str]:
    """What simple_recv prints for the messages simple_send numbered first..last."""
    return [f"{{'sequence': {number}}}" for number in range(first, last + 1)]


class Process:
    """A started program; its standard output and error go to one file."""

    def __init__(self, name: str, argv: list[str], popen: subprocess.Popen[bytes], log: Path):
        self.name = name
        self.argv = argv
        self.popen = popen
        self.log = log

    def lines(self) -> list[str]:
        """Its output so far, each line stripped, as Proton's test compares them."""
        return [line.strip() for line in self.log.read_text(errors="replace").splitlines()]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Programs:
    """Starts the tutorial's programs, ours or Proton's, and stops every one of them."""

    def __init__(self, tmp_path: Path, proton_examples: Path) -> None:
        self.tmp_path = tmp_path
        self.proton_examples = proton_examples
        self.started: list[Process] = []
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}

    # -- commands -----------------------------------------------------------------------

    def command(self, side: str, name: str, port: int, *args: str) -> list[str]:
        """The command line of program `name` (ours or Proton's) using port `port`."""
        address = f"{HOST}:{port}" + ("/examples" if name in TAKES_NODE else "")
        if side == OURS:
            return [sys.executable, str(EXAMPLES / f"{name}.py"), "-a", address, *args]
        source = self.proton_examples / f"{name}.py"
        if name not in FIXED_ADDRESS:
            return [sys.executable, str(source), "-a", address, *args]
        fixed = FIXED_ADDRESS[name]
        text = source.read_text()
        assert fixed in text, f"Proton's {name}.py no longer uses {fixed}"
        return [sys.executable, str(self._copy(name, text.replace(fixed, f"{HOST}:{port}"))), *args]

    def broker_command(self, side: str, port: int) -> list[str]:
        address = f"{HOST}:{port}"
        if side == OURS:
            return [sys.executable, str(EXAMPLES / "broker.py"), "-a", address]
        text = (self.proton_examples / "broker.py").read_text()
        if side == PROTON_ON_AMQP_CORE:
            text = text.replace("from proton", "from amqp_core")
            text = text.replace("import proton", "import amqp_core")
            assert "proton" not in text.replace("Proton", ""), "an import was not rewritten"
        return [sys.executable, str(self._copy(f"broker_{side}", text)), "-a", address]

    def _copy(self, name: str, text: str) -> Path:
        path = self.tmp_path / f"{name}.py"
        path.write_text(text)
        return path

    # -- processes ----------------------------------------------------------------------

    def start(self, argv: list[str]) -> Process:
        name = f"{len(self.started)}-{Path(argv[1]).stem}"
        log = self.tmp_path / f"{name}.out"
        with log.open("wb") as output:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.tmp_path,
                env=self.env,
            )
        process = Process(name, argv, popen, log)
        self.started.append(process)
        return process

    def finish(self, process: Process) -> list[str]:
        """Wait for `process` to end by itself (bounded); return its output."""
        try:
            code = process.popen.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.stop()
            pytest.fail(f"{process.name} did not finish in {RUN_TIMEOUT} s\n{self.report()}")
        assert code == 0, f"{process.name} exited with {code}\n{self.report()}"
        return process.lines()

    def run(self, argv: list[str]) -> list[str]:
        return self.finish(self.start(argv))

    def start_server(self, argv: list[str], port: int) -> Process:
        """Start a program that listens on `port` and wait until it accepts connections."""
        process = self.start(argv)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1.0).close()
                return process
            except OSError:
                if process.popen.poll() is not None:
                    pytest.fail(f"{process.name} exited before listening\n{self.report()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{process.name} did not listen in {START_TIMEOUT} s")
                time.sleep(0.05)

    def broker(self, side: str) -> int:
        """Start a broker (ours, Proton's, or Proton's on amqp_core); return its port."""
        port = free_port()
        self.start_server(self.broker_command(side, port), port)
        return port

    def report(self) -> str:
        return "\n".join(
            f"--- {process.name}: {' '.join(process.argv[1:])}\n" + "\n".join(process.lines())
            for process in self.started
        )

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


@pytest.fixture
def programs(tmp_path: Path, proton_examples: Path) -> Iterator[Programs]:
    started = Programs(tmp_path, proton_examples)
    try:
        yield started
    finally:
        started.stop_all()


def through_brokers(first: str, second: str) -> list[object]:
    """(broker, first program's side, second's side) for a pair of programs that talk
    through a broker: every mix on our broker, ours on Proton's broker, Proton's on
    Proton's broker running on amqp_core."""
    combinations = [
        (OURS, OURS, OURS),
        (OURS, PROTON, OURS),
        (OURS, OURS, PROTON),
        (OURS, PROTON, PROTON),
        (PROTON, OURS, OURS),
        (PROTON_ON_AMQP_CORE, PROTON, PROTON),
    ]
    return [
        pytest.param(broker, a, b, id=f"broker-{broker}/{first}-{a}/{second}-{b}")
        for broker, a, b in combinations
    ]


def pairs(first: str, second: str) -> list[object]:
    """Both programs ours, both Proton's, and each mix."""
    return [
        pytest.param(a, b, id=f"{first}-{a}/{second}-{b}")
        for a in (OURS, PROTON)
        for b in (OURS, PROTON)
    ]


# -- through a broker -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("broker", "side"),
    [
        pytest.param(broker, side, id=f"broker-{broker}/helloworld-{side}")
        for broker, side in [
            (OURS, OURS),
            (OURS, PROTON),
            (PROTON, OURS),
            (PROTON_ON_AMQP_CORE, PROTON),
        ]
    ],
)
def test_helloworld(programs: Programs, broker: str, side: str) -> None:
    port = programs.broker(broker)
    assert programs.run(programs.command(side, "helloworld", port)) == ["Hello World!"]


@pytest.mark.parametrize(("broker", "sender", "receiver"), through_brokers("send", "recv"))
def test_simple_send_recv(programs: Programs, broker: str, sender: str, receiver: str) -> None:
    port = programs.broker(broker)
    receiving = programs.start(programs.command(receiver, "simple_recv", port))
    assert programs.run(programs.command(sender, "simple_send", port)) == CONFIRMED
    assert programs.finish(receiving) == sequence(1, 100)


@pytest.mark.parametrize(("broker", "client", "server"), through_brokers("client", "server"))
def test_client_server(programs: Programs, broker: str, client: str, server: str) -> None:
    port = programs.broker(broker)
    programs.start(programs.command(server, "server", port))
    assert programs.run(programs.command(client, "client", port)) == CLIENT_OUTPUT


@pytest.mark.parametrize(("sender", "receiver"), pairs("colour_send", "selected_recv"))
def test_selected_recv(programs: Programs, sender: str, receiver: str) -> None:
    """Proton's test_selected_recv: the selector takes the green messages only, and the
    red ones are still there for a plain receiver (our broker: Proton's has no
    selectors)."""
    port = programs.broker(OURS)
    assert programs.run(programs.command(sender, "colour_send", port)) == CONFIRMED
    greens = programs.run(programs.command(receiver, "selected_recv", port, "-m", "50"))
    assert greens == [f"green {number}" for number in range(1, 101, 2)]
    reds = programs.run(programs.command(receiver, "simple_recv", port, "-m", "50"))
    assert reds == [f"red {number}" for number in range(2, 101, 2)]


@pytest.mark.parametrize("side", [OURS, PROTON], ids=lambda side: f"queue_browser-{side}")
def test_queue_browser(programs: Programs, side: str) -> None:
    """The browser prints messages as Proton prints a Message, ends by itself once it
    has printed all that arrived, and takes none off the queue."""
    port = programs.broker(OURS)
    assert programs.run(programs.command(side, "simple_send", port, "-m", "10")) == CONFIRMED
    browsed = programs.run(programs.command(side, "queue_browser", port))
    queue = [f"Message(priority=4, id={n}, body={{'sequence': {n}}})" for n in range(1, 11)]
    assert browsed, "the browser printed nothing"
    assert browsed == queue[: len(browsed)]
    assert programs.run(programs.command(side, "simple_recv", port, "-m", "10")) == sequence(1, 10)


@pytest.mark.parametrize("side", [OURS, PROTON], ids=lambda side: f"simple_recv-{side}")
def test_receiver_leaves_the_rest(programs: Programs, side: str) -> None:
    """A receiver that stops after 3 messages (with more prefetched) leaves the rest on
    the queue, in order, for the next: what it released or left unsettled goes back,
    what it accepted does not."""
    port = programs.broker(OURS)
    assert programs.run(programs.command(OURS, "simple_send", port)) == CONFIRMED
    assert programs.run(programs.command(side, "simple_recv", port, "-m", "3")) == sequence(1, 3)
    rest = programs.run(programs.command(side, "simple_recv", port, "-m", "97"))
    assert rest == sequence(4, 100)


# -- without a broker -------------------------------------------------------------------


@pytest.mark.parametrize("side", [OURS, PROTON], ids=lambda side: f"helloworld_direct-{side}")
def test_helloworld_direct(programs: Programs, side: str) -> None:
    port = free_port()
    assert programs.run(programs.command(side, "helloworld_direct", port)) == ["Hello World!"]


@pytest.mark.parametrize(("sender", "receiver"), pairs("simple_send", "direct_recv"))
def test_simple_send_direct_recv(programs: Programs, sender: str, receiver: str) -> None:
    port = free_port()
    receiving = programs.start_server(programs.command(receiver, "direct_recv", port), port)
    assert programs.run(programs.command(sender, "simple_send", port)) == CONFIRMED
    assert programs.finish(receiving) == sequence(1, 100)


@pytest.mark.parametrize(("sender", "receiver"), pairs("direct_send", "simple_recv"))
def test_direct_send_simple_recv(programs: Programs, sender: str, receiver: str) -> None:
    port = free_port()
    sending = programs.start_server(programs.command(sender, "direct_send", port), port)
    assert programs.run(programs.command(receiver, "simple_recv", port)) == sequence(1, 100)
    assert programs.finish(sending) == CONFIRMED


@pytest.mark.parametrize(("client", "server"), pairs("client", "server_direct"))
def test_client_server_direct(programs: Programs, client: str, server: str) -> None:
    port = free_port()
    programs.start_server(programs.command(server, "server_direct", port), port)
    assert programs.run(programs.command(client, "client", port)) == CLIENT_OUTPUT
