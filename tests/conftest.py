"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import proton
import proton.utils
import pytest
from certificates import Certificates, make_certificates
from crowd_clients import Client
from in_process_broker import InProcessBroker
from processes import free_port, stop, wait_for_port
from rabbitmq import RABBITMQ_BIN, RabbitMQ, rabbitmq_available

from amqp_core.broker.server import BrokerConfig

REPO = Path(__file__).resolve().parent.parent

#: Debian's package of Proton's example programs: unpacked, never installed (installing
#: it would pull in the C development packages).
PROTON_EXAMPLES_PACKAGE = "libqpid-proton11-dev-examples"
PROTON_EXAMPLES_SUBDIR = Path("usr/share/proton/examples/python")


def _apt_get(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="session")
def proton_examples() -> Path:
    """The folder holding Proton's example programs (broker.py, simple_send.py, ...).

    They are looked for in the cache folder $PROTON_EXAMPLES_DIR, else in
    .cache/proton-examples under the repository; if missing, the Debian package is
    downloaded with `apt-get download` (after `apt-get update` if the first try fails)
    and unpacked there with `dpkg -x`.
    """
    cache = Path(os.environ.get("PROTON_EXAMPLES_DIR") or REPO / ".cache" / "proton-examples")
    for folder in (cache, cache / PROTON_EXAMPLES_SUBDIR):
        if (folder / "broker.py").is_file():
            return folder
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.fail(
            f"Proton's example programs are not in {cache} and there is no apt-get/dpkg "
            f"to fetch them: unpack Debian's {PROTON_EXAMPLES_PACKAGE} there "
            f"(dpkg -x {PROTON_EXAMPLES_PACKAGE}_*.deb {cache})"
        )
    cache.mkdir(parents=True, exist_ok=True)
    download = _apt_get("download", PROTON_EXAMPLES_PACKAGE, cwd=cache)
    if download.returncode != 0:
        _apt_get("update", cwd=cache)
        download = _apt_get("download", PROTON_EXAMPLES_PACKAGE, cwd=cache)
    packages = sorted(cache.glob(f"{PROTON_EXAMPLES_PACKAGE}_*.deb"))
    if download.returncode != 0 or not packages:
        pytest.fail(
            f"cannot download {PROTON_EXAMPLES_PACKAGE} into {cache} "
            f"(apt-get download exit code {download.returncode}):\n{download.stderr}"
            "\nRun `apt-get update` (as root), or unpack the package there yourself."
        )
    unpack = subprocess.run(
        ["dpkg", "-x", str(packages[-1]), str(cache)], capture_output=True, text=True, check=False
    )
    examples = cache / PROTON_EXAMPLES_SUBDIR
    if unpack.returncode != 0 or not (examples / "broker.py").is_file():
        pytest.fail(f"cannot unpack {packages[-1]} into {cache}:\n{unpack.stderr}")
    return examples


def _broker(script: Path) -> Iterator[str]:
    port = free_port()
    broker = subprocess.Popen(
        [sys.executable, str(script), "-a", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        stop(broker)


@pytest.fixture
def proton_broker(proton_examples: Path) -> Iterator[str]:
    """Proton's example broker.py on a free port; yields its host:port."""
    yield from _broker(proton_examples / "broker.py")


@pytest.fixture
def our_broker() -> Iterator[str]:
    """examples/broker.py on a free port; yields its host:port."""
    yield from _broker(REPO / "examples" / "broker.py")


@pytest.fixture
def in_process_broker() -> Iterator[tuple[InProcessBroker, str]]:
    """amqp_core's broker in a thread of this process, on a free port; yields it and its
    host:port."""
    port = free_port()
    broker = InProcessBroker(BrokerConfig(address=f"127.0.0.1:{port}"))
    try:
        wait_for_port(port)
        yield broker, f"127.0.0.1:{port}"
    finally:
        broker.stop()


@pytest.fixture
def crowd() -> Iterator[Callable[..., Client]]:
    """Start tests/peers/crowd_client.py processes; stopped after the test."""
    clients: list[Client] = []

    def start(*arguments: str) -> Client:
        client = Client(*arguments)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.stop()


@pytest.fixture
def connect() -> Iterator[Callable[[str], Any]]:
    """Open Proton blocking connections (10 s timeouts); closed after the test.
    tests/test_broker.py has its own, for each client library."""
    connections: list[Any] = []

    def open_connection(url: str) -> Any:
        connection = proton.utils.BlockingConnection(url, timeout=10.0)
        connections.append(connection)
        return connection

    yield open_connection
    for connection in connections:
        with contextlib.suppress(proton.ConnectionException, proton.Timeout):
            connection.close()  # fails only where the test failed already


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Throwaway TLS certificates: a CA with a server and a client certificate."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    """A private RabbitMQ 3.10 node with its AMQP 1.0 plugin (tests/rabbitmq.py), started
    once per session; `.url` / `.port` say where. Fails when Debian's rabbitmq-server is
    not installed: CI installs it (.ci/run)."""
    if not rabbitmq_available():
        pytest.fail(
            f"RabbitMQ is not installed ({RABBITMQ_BIN / 'rabbitmq-server'} is missing): "
            "run `apt-get install -y --no-install-recommends rabbitmq-server` (as root); "
            "the package does not start it, the fixture does"
        )
    with RabbitMQ() as node:
        yield node
