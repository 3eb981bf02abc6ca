"""A private RabbitMQ node with its AMQP 1.0 plugin, for tests and benchmarks.

Follows the recipe of /work/shared/peers.md (RabbitMQ 3.10 from Debian's
`rabbitmq-server`, which the package does not start): everything lives in one temporary
folder, the node listens on 127.0.0.1 only, on free ports, with the `rabbitmq_amqp1_0`
plugin enabled and the guest user allowed for AMQP 1.0 connections.

One addition to the recipe: the node gets an epmd of its own, started here on a free
loopback port (ERL_EPMD_PORT) as a child process. The node and rabbitmqctl use it
instead of the machine-wide epmd on port 4369, so the epmd we stop by its PID is surely
ours, and nodes of concurrent test runs never share (or stop) each other's.

    with RabbitMQ() as rabbit:
        connection = BlockingConnection(rabbit.url)

Everything is stopped by PID, never by name: TERM to the rabbitmq-server script (it
forwards to the Erlang VM), then TERM to our epmd; KILL if either does not go in time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from processes import free_port, stop, wait_for_port

#: Where Debian's rabbitmq-server keeps its scripts; the /usr/sbin wrappers switch user.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
#: Where the node's distribution port is, relative to its AMQP port (as in peers.md).
DIST_PORT_OFFSET = 20000


def rabbitmq_available() -> bool:
    """Whether Debian's rabbitmq-server is installed (`apt-get install rabbitmq-server`)."""
    return (RABBITMQ_BIN / "rabbitmq-server").is_file()


def _port_pair() -> int:
    """A free AMQP port whose distribution port (port + 20000) is free too."""
    for _ in range(200):
        port = free_port()
        dist = port + DIST_PORT_OFFSET
        if dist > 65535:
            continue
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", dist))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair (port, port + 20000) on 127.0.0.1")


def _is_vm_of(pid: int, folder: Path) -> bool:
    """Whether `pid` is the Erlang VM of the node in `folder` (its command line says
    `-home FOLDER`): checked before any signal sent by a PID read from a file."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    home = os.fsencode(folder)
    return any(
        flag == b"-home" and value == home
        for flag, value in zip(arguments, arguments[1:], strict=False)
    )


class RabbitMQ:
    """A RabbitMQ node in a temporary folder of its own, on free loopback ports.

    `start()` (or entering the context) returns once the node has booted and accepts
    AMQP connections, or raises RuntimeError after `startup_timeout` seconds, with the
    end of the server's output. `stop()` (or leaving the context) stops it by PID and
    removes the folder (kept if `keep_folder`).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        startup_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        keep_folder: bool = False,
    ) -> None:
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.keep_folder = keep_folder
        self.port = 0
        self.folder: Path | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}

    @property
    def url(self) -> str:
        """amqp://127.0.0.1:PORT"""
        return f"amqp://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """127.0.0.1:PORT"""
        return f"{self.host}:{self.port}"

    # -- starting ---------------------------------------------------------------------

    def _environment(self, folder: Path, epmd_port: int) -> dict[str, str]:
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_"))
        }
        loopback = "-kernel inet_dist_use_interface {127,0,0,1}"
        return {
            **inherited,
            "HOME": str(folder),
            "RABBITMQ_NODENAME": "rabbit@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + DIST_PORT_OFFSET),
            "ERL_EPMD_ADDRESS": self.host,
            "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback,
            "RABBITMQ_CTL_ERL_ARGS": loopback,
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "rabbit.pid"),
            "PATH": f"{RABBITMQ_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }

    def start(self) -> RabbitMQ:
        if not rabbitmq_available():
            raise RuntimeError(
                f"{RABBITMQ_BIN / 'rabbitmq-server'} is missing: apt-get install rabbitmq-server"
            )
        if self._server is not None:
            raise RuntimeError("this RabbitMQ is already started")
        epmd = shutil.which("epmd")
        if epmd is None:
            raise RuntimeError("epmd (Erlang's port mapper, from erlang-base) is not on PATH")
        folder = self.folder = Path(tempfile.mkdtemp(prefix="rabbitmq-"))
        try:
            self.port = _port_pair()
            epmd_port = free_port()
            self._env = self._environment(folder, epmd_port)
            (folder / "enabled_plugins").write_text("[rabbitmq_amqp1_0].\n")
            (folder / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = {self.host}:{self.port}\n"
                "amqp1_0.default_user = guest\n"
                "amqp1_0.default_vhost = /\n"
                "amqp1_0.protocol_strict_mode = false\n"
                "log.console = false\n"
            )
            self._epmd = subprocess.Popen(
                [epmd, "-port", str(epmd_port), "-address", self.host],
                env=self._env,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for_port(epmd_port, self.host, timeout=10)
            with open(folder / "server.out", "wb") as output:
                self._server = subprocess.Popen(
                    [str(RABBITMQ_BIN / "rabbitmq-server")],
                    env=self._env,
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            self._await_startup(time.monotonic() + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _await_startup(self, deadline: float) -> None:
        """Poll `rabbitmqctl await_startup` every 0.5 s (it fails at once while the node
        is not registered yet), then wait for the AMQP port."""
        assert self._server is not None
        last = ""
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server exited with code {self._server.returncode} while "
                    f"starting:\n{self.output()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(
                    f"RabbitMQ did not start in {self.startup_timeout} s "
                    f"(last rabbitmqctl: {last.strip()[-500:]})\n{self.output()}"
                )
            wait = str(max(1, min(60, int(remaining))))
            try:
                done = self.ctl("-q", "await_startup", "--timeout", wait, timeout=remaining + 5)
            except subprocess.TimeoutExpired:
                continue  # the deadline check above reports it
            if done.returncode == 0:
                break
            last = done.stdout + done.stderr
            time.sleep(0.5)
        wait_for_port(self.port, self.host, timeout=max(1.0, deadline - time.monotonic()))

    def ctl(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `rabbitmqctl ARGUMENTS` against this node, e.g. ("list_queues", "name")."""
        if self._server is None:
            raise RuntimeError("this RabbitMQ is not started")
        return subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), *arguments],
            env=self._env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- stopping ---------------------------------------------------------------------

    def output(self, characters: int = 4000) -> str:
        """The end of what rabbitmq-server printed."""
        if self.folder is None:
            return ""
        try:
            text = (self.folder / "server.out").read_text(errors="replace")
        except OSError:
            return ""
        return text[-characters:]

    def _vm_pid(self) -> int | None:
        """The Erlang VM's PID, from the node's pid file, if it is this node's VM."""
        folder = self.folder
        if folder is None:
            return None
        try:
            pid = int((folder / "rabbit.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_vm_of(pid, folder) else None

    def stop(self) -> None:
        """Stop the node and its epmd by PID; remove the folder."""
        server, self._server = self._server, None
        if server is not None:
            vm = self._vm_pid()
            stop(server, self.stop_timeout)
            # If the script had to be killed, the VM it started may still run: kill it
            # too, by the PID it wrote, once more checked to be this node's VM.
            if vm is not None and self.folder is not None and _is_vm_of(vm, self.folder):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(vm, signal.SIGKILL)
        epmd, self._epmd = self._epmd, None
        if epmd is not None:
            stop(epmd, 5)
        folder, self.folder = self.folder, None
        if folder is not None and not self.keep_folder:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> RabbitMQ:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RabbitMQ({self.url}, folder={self.folder})"
