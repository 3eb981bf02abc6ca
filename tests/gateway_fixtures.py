"""Helpers for the gateway's end-to-end tests (tests/test_gateway_*.py).

- `GatewayServer`: the real gateway, ``python -m gateway`` in a subprocess on free
  loopback ports (with its embedded broker unless ``--amqp-url`` is given), ready once
  /readyz (or /healthz) answers 200, stopped by its PID (TERM, then KILL). It also sends
  signals and reads the process's resident memory.
- `Program`: a program (the tutorial's examples/, Proton's examples, a peer script) in a
  subprocess, its output in a file, stopped by its PID.
- AMQP checks through Proton's own BlockingConnection (a client nobody here wrote):
  `receive`, `receive_all`, `browse`, `send`.
- `assert_problem`: every error answer is application/problem+json with type, title,
  status and detail.

Every wait is bounded; the constants below are generous because the machine is shared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from processes import free_port, stop, wait_for_port
from proton import Message, Timeout
from proton.reactor import Copy, Selector
from proton.utils import BlockingConnection

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
HOST = "127.0.0.1"

#: Seconds for a gateway to answer /readyz after it was started.
START_TIMEOUT = 20.0
#: Seconds a stopped process gets before it is killed.
STOP_TIMEOUT = 10.0
#: Seconds a tutorial program gets to do its work.
RUN_TIMEOUT = 30.0
#: Seconds for one HTTP call or one AMQP operation.
CALL_TIMEOUT = 15.0
#: How long to wait to conclude that nothing more comes.
QUIET = 0.5


def unique(name: str) -> str:
    """An address no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def child_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


# -- the gateway --------------------------------------------------------------------------


class GatewayServer:
    """``python -m gateway --http 127.0.0.1:<free> --amqp-listen 127.0.0.1:<free>
    --log-format text <extra>``; its output goes to `folder`/gateway-<n>.log.

    `ready` is the path that must answer 200 before the gateway counts as started
    (/healthz for a gateway whose broker is down on purpose); `env` adds environment
    variables (GATEWAY_*).
    """

    def __init__(
        self,
        folder: Path,
        *extra: str,
        ready: str = "/readyz",
        env: dict[str, str] | None = None,
    ) -> None:
        self.http_port = free_port()
        self.amqp_port = free_port()
        self.url = f"http://{HOST}:{self.http_port}"
        self.ws_url = f"ws://{HOST}:{self.http_port}"
        #: host:port of the embedded broker (not listened on with --amqp-url).
        self.amqp = f"{HOST}:{self.amqp_port}"
        self.embedded = not any(flag.startswith("--amqp-url") for flag in extra)
        self.ready = ready
        self.env = env or {}
        self.log = folder / f"gateway-{uuid.uuid4().hex[:6]}.log"
        self.command = [
            sys.executable,
            "-m",
            "gateway",
            "--http",
            f"{HOST}:{self.http_port}",
            "--amqp-listen",
            self.amqp,
            "--log-format",
            "text",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=CALL_TIMEOUT, trust_env=False)

    # -- running ------------------------------------------------------------------------

    def __enter__(self) -> GatewayServer:
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(**self.env),
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """TERM by PID, then KILL if it is still there after STOP_TIMEOUT."""
        self.http.close()
        stop(self.process, STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM, for a test of graceful shutdown; does not wait."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait_exited(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def rss_kib(self) -> int:
        """The gateway process's resident memory in KiB (VmRSS in /proc/<pid>/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for process {self.pid}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the gateway exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if self.http.get(self.ready, timeout=1).status_code == 200:
                    if self.embedded:
                        wait_for_port(self.amqp_port, timeout=5)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"the gateway did not answer {self.ready} in {START_TIMEOUT} s:\n{self.log_tail()}"
        )

    # -- HTTP ---------------------------------------------------------------------------

    def post(self, address: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """POST /messages/<address>: JSON for `body`, or as `content=`/`headers=` say."""
        if body is not None:
            kwargs["json"] = body
        return self.http.post(f"/messages/{address}", **kwargs)

    def metrics(self) -> dict[str, float]:
        """/metrics parsed: 'name{labels}' -> value."""
        answer = self.http.get("/metrics")
        assert answer.status_code == 200, answer.text
        return parse_metrics(answer.text)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition: 'name{labels}' -> value."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


# -- problems -----------------------------------------------------------------------------


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    """Assert `answer` is an RFC 9457 problem with this status; return its body."""
    assert answer.status_code == status, f"{answer.status_code} {answer.text}"
    content_type = answer.headers.get("content-type", "")
    assert content_type.startswith("application/problem+json"), content_type
    problem = answer.json()
    for member in ("type", "title", "status", "detail"):
        assert member in problem, f"no {member!r} in {problem}"
    assert problem["status"] == status, problem
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    return dict(problem)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# -- AMQP through Proton ------------------------------------------------------------------


@contextmanager
def proton_connection(host_port: str) -> Iterator[BlockingConnection]:
    connection = BlockingConnection(host_port, timeout=CALL_TIMEOUT, reconnect=False)
    try:
        yield connection
    finally:
        connection.close()


def receive(
    host_port: str,
    address: str,
    count: int,
    *,
    selector: str | None = None,
    timeout: float = CALL_TIMEOUT,
    then_quiet: float | None = QUIET,
) -> list[Message]:
    """Take (accept) `count` messages from `address` with Proton, failing after
    `timeout`; then, unless `then_quiet` is None, assert that no more comes within it."""
    options = Selector(selector) if selector is not None else None
    with proton_connection(host_port) as connection:
        receiver = connection.create_receiver(address, credit=max(count, 1), options=options)
        messages = []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            left = deadline - time.monotonic()
            try:
                messages.append(receiver.receive(timeout=max(left, 0.01)))
            except Timeout:
                raise AssertionError(
                    f"{len(messages)} of {count} messages came from {address!r} in {timeout} s"
                ) from None
            receiver.accept()
        if then_quiet is not None:
            try:
                extra = receiver.receive(timeout=then_quiet)
            except Timeout:
                pass
            else:
                receiver.release()
                raise AssertionError(f"one more message came from {address!r}: {extra}")
        return messages


def receive_all(host_port: str, address: str, quiet: float = QUIET) -> list[Message]:
    """Take every message waiting at `address` (until none comes within `quiet`)."""
    with proton_connection(host_port) as connection:
        receiver = connection.create_receiver(address, credit=100)
        messages = []
        while True:
            try:
                messages.append(receiver.receive(timeout=quiet))
            except Timeout:
                return messages
            receiver.accept()


def browse(host_port: str, address: str, quiet: float = QUIET) -> list[Message]:
    """Copies of the messages waiting at `address`, leaving them there (not the ones
    a consumer holds unsettled)."""
    with proton_connection(host_port) as connection:
        receiver = connection.create_receiver(address, credit=500, options=Copy())
        messages = []
        while True:
            try:
                messages.append(receiver.receive(timeout=quiet))
            except Timeout:
                return messages


def send(host_port: str, address: str, *messages: Message) -> None:
    """Send each message with Proton and wait until the broker accepted it."""
    with proton_connection(host_port) as connection:
        sender = connection.create_sender(address)
        for message in messages:
            sender.send(message)


# -- programs -----------------------------------------------------------------------------


class Program:
    """A program started as a subprocess; standard output and error go to one file."""

    def __init__(self, folder: Path, argv: list[str], name: str | None = None) -> None:
        self.argv = argv
        self.name = name or Path(argv[1]).stem
        self.log = folder / f"{self.name}-{uuid.uuid4().hex[:6]}.out"
        with self.log.open("wb") as output:
            self.popen = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=child_env(),
            )

    def lines(self) -> list[str]:
        return [line.strip() for line in self.log.read_text(errors="replace").splitlines()]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        """Wait for the program to exit; fail (with its output) after `timeout`."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"{self.name} did not finish in {timeout} s; it printed:\n{self.output()}"
            ) from None

    def wait_for_line(self, text: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines()):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not print {text!r}; it printed:\n{self.output()}")

    def stop(self) -> None:
        stop(self.popen, STOP_TIMEOUT)

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def script(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(text)
    return path


def amqp_broker(folder: Path) -> tuple[Program, str]:
    """amqp_core's broker (``python -m amqp_core.broker``) on a free port: (program,
    host:port), ready to accept connections."""
    port = free_port()
    program = Program(
        folder,
        [sys.executable, "-m", "amqp_core.broker", "-a", f"{HOST}:{port}"],
        name="amqp-broker",
    )
    try:
        wait_for_port(port, timeout=START_TIMEOUT)
    except BaseException:
        program.stop()
        raise
    return program, f"{HOST}:{port}"


#: A Proton listener that settles each incoming message as its link's target address
#: says: ``reject`` (amqp:precondition-failed, "not today"), ``reject-odd`` (a condition
#: the gateway does not know), ``release``, ``modify``, ``ignore`` (never settled);
#: anything else is accepted.
OUTCOME_PEER = """
import sys
from proton import Condition
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Peer(MessagingHandler):
    def __init__(self, url):
        super().__init__(auto_accept=False)
        self.url = url

    def on_start(self, event):
        event.container.listen(self.url)

    def on_link_opening(self, event):
        if event.link.is_receiver and event.link.remote_target:
            event.link.target.address = event.link.remote_target.address
        elif event.link.remote_source:
            event.link.source.address = event.link.remote_source.address or "replies"

    def on_message(self, event):
        how = event.link.target.address.partition("-")[0]
        if how == "reject":
            event.delivery.local.condition = Condition("amqp:precondition-failed", "not today")
            self.reject(event.delivery)
        elif how == "rejectodd":
            event.delivery.local.condition = Condition("com.example:odd", "an odd one")
            self.reject(event.delivery)
        elif how == "release":
            self.release(event.delivery, delivered=False)
        elif how == "modify":
            self.release(event.delivery, delivered=True)
        elif how == "ignore":
            pass
        else:
            self.accept(event.delivery)


Container(Peer(sys.argv[1])).run()
"""


def outcome_peer(folder: Path) -> tuple[Program, str]:
    """`OUTCOME_PEER` on a free port: (program, host:port)."""
    port = free_port()
    path = script(folder, "outcome_peer", OUTCOME_PEER)
    program = Program(folder, [sys.executable, str(path), f"{HOST}:{port}"])
    try:
        wait_for_port(port, timeout=START_TIMEOUT)
    except BaseException:
        program.stop()
        raise
    return program, f"{HOST}:{port}"


#: A Proton listener that opens connections and sessions, and ends them when asked, but
#: never answers a link's attach: a broker that hangs on attaches.
SILENT_PEER = """
import sys
from proton.reactor import Container


class Silent:
    def __init__(self, url):
        self.url = url

    def on_reactor_init(self, event):
        event.container.listen(self.url)

    def on_connection_remote_open(self, event):
        event.connection.open()

    def on_session_remote_open(self, event):
        event.session.open()

    def on_session_remote_close(self, event):
        event.session.close()

    def on_connection_remote_close(self, event):
        event.connection.close()


Container(Silent(sys.argv[1])).run()
"""


def silent_peer(folder: Path) -> tuple[Program, str]:
    """`SILENT_PEER` on a free port: (program, host:port)."""
    port = free_port()
    path = script(folder, "silent_peer", SILENT_PEER)
    program = Program(folder, [sys.executable, str(path), f"{HOST}:{port}"])
    try:
        wait_for_port(port, timeout=START_TIMEOUT)
    except BaseException:
        program.stop()
        raise
    return program, f"{HOST}:{port}"


#: Sends COUNT messages of SIZE characters of random text (each different, so that no
#: compression shrinks them) to URL/ADDRESS with Proton, as fast as the broker gives
#: credit; prints "confirmed COUNT" once the broker accepted them all.
PRODUCER = """
import base64
import os
import sys
from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Send(MessagingHandler):
    def __init__(self, url, address, count, size):
        super().__init__()
        self.url, self.address, self.count, self.size = url, address, count, size
        self.sent = self.confirmed = 0

    def on_start(self, event):
        connection = event.container.connect(self.url, reconnect=False)
        event.container.create_sender(connection, self.address)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.count:
            self.sent += 1
            body = base64.b64encode(os.urandom(self.size)).decode()[: self.size]
            event.sender.send(Message(body=body, properties={"n": self.sent}))

    def on_accepted(self, event):
        self.confirmed += 1
        if self.confirmed == self.count:
            print("confirmed", self.count, flush=True)
            event.connection.close()


Container(Send(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))).run()
"""


def produce(folder: Path, host_port: str, address: str, count: int, size: int) -> Program:
    """Start `PRODUCER`; wait for it with `.wait()`."""
    path = script(folder, "producer", PRODUCER)
    return Program(folder, [sys.executable, str(path), host_port, address, str(count), str(size)])


def example(name: str, *args: str) -> list[str]:
    """The command line of the tutorial's examples/<name>.py."""
    return [sys.executable, str(EXAMPLES / f"{name}.py"), *args]


def frames_of(texts: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in texts]
