"""`Client`: a process of tests/peers/crowd_client.py (Qpid Proton clients that load a
broker), and its output lines with the time each came, read by a thread."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from processes import stop

CROWD_CLIENT = Path(__file__).resolve().parent / "peers" / "crowd_client.py"

#: Seconds to wait for a line by default.
PROMPTLY = 30.0


class Client:
    """A crowd_client.py process, and its output lines with the time each came."""

    def __init__(self, *arguments: str) -> None:
        command = [sys.executable, str(CROWD_CLIENT), *arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.output: list[tuple[float, str]] = []
        self._read_up_to = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.output.append((time.monotonic(), line.strip()))
                self._changed.notify_all()

    def line(self, timeout: float = PROMPTLY) -> str:
        """The next line of output."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.output) > self._read_up_to, timeout):
                code = self.process.poll()
                raise AssertionError(f"no output in {timeout} s (exit code {code})")
            self._read_up_to += 1
            return self.output[self._read_up_to - 1][1]

    def between(self, start: float, end: float) -> list[str]:
        """The lines that came from `start` to `end` (time.monotonic())."""
        with self._changed:
            return [line for when, line in self.output if start <= when <= end]

    def next_after(self, moment: float, timeout: float = PROMPTLY) -> float:
        """When the first line after `moment` came (for a probe: when the round trip
        under way at `moment` ended)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.output[-1][0] > moment, timeout):
                raise AssertionError(f"no output in {timeout} s")
            return next(when for when, _ in self.output if when > moment)

    def stop(self) -> None:
        stop(self.process)
        self._reader.join(PROMPTLY)
