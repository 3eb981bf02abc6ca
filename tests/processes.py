"""Helpers for tests that run servers: free ports, readiness, and stopping by PID."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port(family: int = socket.AF_INET) -> int:
    """A port nobody listens on now, on the loopback address of `family`."""
    with socket.socket(family) as probe:
        probe.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10) -> None:
    """Return once something accepts connections on host:port; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port} after {timeout} s")


def stop(
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None, timeout: float = 5
) -> None:
    """Terminate a started process by its PID, killing it if it does not go in `timeout`
    seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
