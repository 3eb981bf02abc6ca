"""The command lines `python -m gateway` (amqp-gateway) and `python -m amqp_core.broker`
(amqp-broker), run as real processes: each failure to start is one line on stderr that
names the problem and the flag to change, with an exit code per kind (2 a bad flag, 3 an
address that cannot be listened on, 4 a data directory in use or unusable), as their
--help says."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_fixtures import HOST, REPO, START_TIMEOUT, GatewayServer, Program, child_env
from processes import free_port, wait_for_port

GATEWAY = [sys.executable, "-m", "gateway"]
BROKER = [sys.executable, "-m", "amqp_core.broker"]


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=REPO,
        env=child_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


def assert_one_line_failure(
    result: subprocess.CompletedProcess[str], exit_code: int, *named: str
) -> str:
    """The process exited with `exit_code`, printing nothing but one line on stderr
    that names each of `named`."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"exit {result.returncode}, stderr:\n{result.stderr}"
    assert result.stdout == "", result.stdout
    assert result.returncode == exit_code, (result.returncode, lines[0])
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def gateway_command(*flags: str) -> list[str]:
    http = f"{HOST}:{free_port()}"
    return [*GATEWAY, "--http", http, "--amqp-listen", f"{HOST}:{free_port()}", *flags]


# -- amqp-gateway -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--max-body", "abc"], ["--max-body", "GATEWAY_MAX_BODY", "integer"]),
        (["--max-body", "5"], ["--max-body", "1048576"]),
        (["--http", "here:there"], ["--http", "HOST:PORT"]),
        # The resolver would take port 99999 as 34463 and listen there.
        (["--http", "127.0.0.1:99999"], ["--http", "99999", "out of range"]),
        (["--amqp-listen", "127.0.0.1:70000"], ["--amqp-listen", "70000", "out of range"]),
        (["--log-level", "loud"], ["--log-level", "debug"]),
        (["--no-such-flag"], ["--no-such-flag", "--help"]),
        (["--max-body"], ["--max-body", "argument"]),
        (["--max-memory", "1000000"], ["--max-memory", "GATEWAY_MAX_MEMORY", "--data-dir"]),
    ],
)
def test_a_bad_gateway_flag_is_one_line_and_exit_2(flags: list[str], named: list[str]) -> None:
    assert_one_line_failure(run([*GATEWAY, *flags]), 2, *named)


def test_a_bad_gateway_environment_variable_is_one_line_and_exit_2() -> None:
    result = run(GATEWAY, GATEWAY_SEND_TIMEOUT="soon")
    assert_one_line_failure(result, 2, "--send-timeout", "GATEWAY_SEND_TIMEOUT", "soon")


def test_a_taken_http_port_is_one_line_and_exit_3(taken_port: int) -> None:
    command = [*GATEWAY, "--http", f"{HOST}:{taken_port}", "--amqp-listen", f"{HOST}:0"]
    line = assert_one_line_failure(run(command), 3, "--http", str(taken_port))
    assert "in use" in line


def test_a_taken_amqp_port_is_one_line_and_exit_3(taken_port: int) -> None:
    command = [*GATEWAY, "--http", f"{HOST}:0", "--amqp-listen", f"{HOST}:{taken_port}"]
    line = assert_one_line_failure(run(command), 3, "--amqp-listen", str(taken_port))
    assert "in use" in line


def test_a_second_gateway_on_one_data_dir_is_one_line_and_exit_4(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with GatewayServer(tmp_path, "--data-dir", str(data)):
        result = run(gateway_command("--data-dir", str(data)))
    assert_one_line_failure(result, 4, "--data-dir", "in use")


def test_an_unusable_data_dir_is_one_line_and_exit_4(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = run(gateway_command("--data-dir", str(not_a_folder)))
    assert_one_line_failure(result, 4, "--data-dir", str(not_a_folder))


def test_gateway_help_lists_the_exit_codes() -> None:
    result = run([*GATEWAY, "--help"])
    assert result.returncode == 0, result.stderr
    assert "exit codes:" in result.stdout
    for code in ("2", "3", "4", "5"):
        assert f"\n  {code}  " in result.stdout, result.stdout


# -- amqp-broker --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--max-queue-depth", "many"], ["--max-queue-depth", "many"]),
        (["--max-message-size", "0"], ["--max-message-size", "at least 1"]),
        (["--no-such-flag"], ["--no-such-flag", "--help"]),
        (["-a", "127.0.0.1:99999"], ["--address", "99999", "out of range"]),
        (["-a", "127.0.0.1:amqq"], ["--address", "amqq"]),
        (["--max-memory", "1000000"], ["--max-memory", "needs --data-dir"]),
        (["--max-memory", "0", "--data-dir", "d"], ["--max-memory", "at least 1"]),
    ],
)
def test_a_bad_broker_option_is_one_line_and_exit_2(flags: list[str], named: list[str]) -> None:
    assert_one_line_failure(run([*BROKER, *flags]), 2, *named)


def test_a_taken_broker_port_is_one_line_and_exit_3(taken_port: int) -> None:
    result = run([*BROKER, "-a", f"{HOST}:{taken_port}"])
    line = assert_one_line_failure(result, 3, "-a HOST:PORT", str(taken_port))
    assert "in use" in line


def test_a_second_broker_on_one_data_dir_is_one_line_and_exit_4(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    first = Program(tmp_path, [*BROKER, "-a", f"{HOST}:{port}", "--data-dir", str(data)])
    with first:
        wait_for_port(port, timeout=START_TIMEOUT)
        result = run([*BROKER, "-a", f"{HOST}:{free_port()}", "--data-dir", str(data)])
    assert_one_line_failure(result, 4, "--data-dir", "in use")


def test_broker_help_lists_the_exit_codes() -> None:
    result = run([*BROKER, "--help"])
    assert result.returncode == 0, result.stderr
    assert "exit codes:" in result.stdout
    for code in ("2", "3", "4"):
        assert f"\n  {code}  " in result.stdout, result.stdout
