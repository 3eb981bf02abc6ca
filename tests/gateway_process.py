"""The real gateway in a subprocess, for end-to-end tests: `python -m gateway` with its
embedded broker on free loopback ports, ready once its /readyz answers 200, stopped by
its PID (TERM, then KILL).

    with GatewayProcess(tmp_path) as gateway:
        urllib.request.urlopen(gateway.http_url + "/healthz")
        BlockingConnection(gateway.amqp_address)
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from processes import free_port, stop, wait_for_port

REPO = Path(__file__).resolve().parent.parent

#: Seconds for the gateway to answer /readyz after it was started.
START_TIMEOUT = 20.0


class GatewayProcess:
    """`python -m gateway --http 127.0.0.1:<free> --amqp-listen 127.0.0.1:<free>`, its
    output in `folder`/gateway.log; `extra` flags are appended (with --amqp-url, the
    gateway uses that broker and amqp_address is not listened on)."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.http_port = free_port()
        self.amqp_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.amqp_address = f"127.0.0.1:{self.amqp_port}"
        self.log = folder / "gateway.log"
        self.command = [
            sys.executable,
            "-m",
            "gateway",
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--amqp-listen",
            self.amqp_address,
            "--log-format",
            "text",
            *extra,
        ]
        #: Whether the gateway runs its embedded broker on amqp_address (no --amqp-url).
        self.embedded = not any(flag.startswith("--amqp-url") for flag in extra)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GatewayProcess:
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                self.command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            self._wait_until_ready()
        except BaseException:
            stop(self.process)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stop(self.process)

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
                with urllib.request.urlopen(self.http_url + "/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        if self.embedded:
                            wait_for_port(self.amqp_port, timeout=5)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"the gateway did not answer /readyz in {START_TIMEOUT} s:\n{self.log_tail()}"
        )
