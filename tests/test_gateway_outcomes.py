"""End to end: the HTTP status of a POST mirrors the AMQP outcome.

The gateway (a subprocess) connects with --amqp-url to a small real AMQP peer: a Proton
listener (tests/gateway_fixtures.py, OUTCOME_PEER) that rejects, releases, modifies or
never settles, as the target address says. A second gateway points at a port nobody
listens on: the broker is unreachable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from gateway_fixtures import (
    HOST,
    GatewayServer,
    Program,
    assert_problem,
    outcome_peer,
    timed,
    unique,
)
from processes import free_port, wait_for_port
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

#: The gateway's --send-timeout in this module: how long a POST waits for an outcome.
SEND_TIMEOUT = 1.0
#: Seconds within which "at once" answers must come (a hang would be the send timeout).
AT_ONCE = 0.75


def eventually(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("outcomes")
    peer, address = outcome_peer(folder)
    with peer:
        flags = ["--amqp-url", f"amqp://{address}", "--send-timeout", str(SEND_TIMEOUT)]
        with GatewayServer(folder, *flags) as server:
            yield server


def test_accepted_is_201(gateway: GatewayServer) -> None:
    answer = gateway.post(unique("accept"), {"sequence": 1})
    assert answer.status_code == 201, answer.text
    assert answer.json()["outcome"] == "accepted"


def test_rejected_is_a_4xx_carrying_the_amqp_condition(gateway: GatewayServer) -> None:
    address = unique("reject")
    problem = assert_problem(gateway.post(address, {"sequence": 1}), 412)
    assert problem["condition"] == "amqp:precondition-failed"
    assert "not today" in problem["detail"]
    assert address in problem["detail"]


def test_rejected_with_a_condition_the_gateway_does_not_know_is_422(
    gateway: GatewayServer,
) -> None:
    problem = assert_problem(gateway.post(unique("rejectodd"), "x"), 422)
    assert problem["condition"] == "com.example:odd"
    assert "an odd one" in problem["detail"]


@pytest.mark.parametrize("how", ["release", "modify"])
def test_released_or_modified_is_503_with_retry_after(gateway: GatewayServer, how: str) -> None:
    answer = gateway.post(unique(how), {"sequence": 1})
    assert_problem(answer, 503)
    assert answer.headers.get("retry-after", "").isdigit(), answer.headers


def test_no_outcome_within_the_send_timeout_is_504(gateway: GatewayServer) -> None:
    answer, elapsed = timed(lambda: gateway.post(unique("ignore"), {"sequence": 1}))
    assert_problem(answer, 504)
    assert SEND_TIMEOUT * 0.9 <= elapsed < SEND_TIMEOUT + 4, elapsed


def test_a_batch_reports_each_outcome(gateway: GatewayServer) -> None:
    # One address, one outcome: a rejecting address rejects every envelope of a batch,
    # and an envelope that cannot be mapped is refused before it is sent.
    batch = [{"body": 1}, {"body": 2, "bogus": True}]
    answer = gateway.post(
        unique("reject"),
        content=json.dumps(batch),
        headers={"Content-Type": "application/vnd.amqp.message+json"},
    )
    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert [item["status"] for item in results] == [412, 422]
    assert results[0]["problem"]["condition"] == "amqp:precondition-failed"


def test_a_rejected_request_is_a_4xx_too(gateway: GatewayServer) -> None:
    answer = gateway.http.post(
        f"/requests/{unique('reject')}",
        content="Twas brillig",
        headers={"Content-Type": "text/plain", "Request-Timeout": "5"},
    )
    problem = assert_problem(answer, 412)
    assert problem["condition"] == "amqp:precondition-failed"


def test_an_unreachable_broker_is_503_at_once_and_not_ready(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    nobody = free_port()
    folder = tmp_path_factory.mktemp("unreachable")
    with GatewayServer(folder, "--amqp-url", f"amqp://127.0.0.1:{nobody}", ready="/healthz") as gw:
        assert gw.http.get("/healthz").status_code == 200
        assert_problem(gw.http.get("/readyz"), 503)
        gw.post(unique("warm-up"), 1)  # the first request of a process costs more
        for _ in range(3):
            answer, elapsed = timed(lambda: gw.post(unique("down"), {"sequence": 1}))
            assert_problem(answer, 503)
            assert answer.headers.get("retry-after", "").isdigit(), answer.headers
            assert elapsed < AT_ONCE, f"{elapsed:.3f} s: a 503 must come at once"
        answer, elapsed = timed(
            lambda: gw.http.post(
                "/requests/examples", content="hi", headers={"Content-Type": "text/plain"}
            )
        )
        assert_problem(answer, 503)
        assert elapsed < AT_ONCE, f"{elapsed:.3f} s: a 503 must come at once"
        for path, headers in [
            (f"/messages/{unique('down')}?timeout=5", {}),
            (f"/streams/{unique('down')}", {"Accept": "text/event-stream"}),
        ]:
            answer, elapsed = timed(lambda: gw.http.get(path, headers=headers))  # noqa: B023
            assert_problem(answer, 503)
            assert elapsed < AT_ONCE, f"{elapsed:.3f} s for GET {path}: a 503 must come at once"
        url = f"{gw.ws_url}/streams/{unique('down')}"
        with connect(url, proxy=None, open_timeout=10, close_timeout=5) as client:
            error = json.loads(client.recv(timeout=5))
            assert error["error"]["status"] == 503, error
            with pytest.raises(ConnectionClosed):
                client.recv(timeout=5)
            assert client.close_code == 1013, (client.close_code, client.close_reason)


def test_an_idempotency_key_replays_a_rejection_but_not_a_503(gateway: GatewayServer) -> None:
    """A rejection is final: its retry gets the same answer, marked replayed. A 503 is
    worth retrying for real: its retry is sent again (and released again)."""
    key = unique("key")
    rejecting = unique("reject")
    first = gateway.post(rejecting, "x", headers={"Idempotency-Key": key})
    assert_problem(first, 412)
    assert "idempotent-replayed" not in first.headers
    retry = gateway.post(rejecting, "x", headers={"Idempotency-Key": key})
    assert_problem(retry, 412)
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.json() == first.json()

    other_key = unique("key")
    releasing = unique("release")
    for _ in range(2):
        answer = gateway.post(releasing, "x", headers={"Idempotency-Key": other_key})
        assert_problem(answer, 503)
        assert "idempotent-replayed" not in answer.headers


def test_readyz_and_posts_follow_a_broker_that_goes_away_and_comes_back(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("flaky")
    port = free_port()
    broker = Program(folder, [sys.executable, "-m", "amqp_core.broker", "-a", f"{HOST}:{port}"])
    with broker:
        wait_for_port(port)
        with GatewayServer(folder, "--amqp-url", f"amqp://{HOST}:{port}") as gw:
            assert gw.post(unique("up"), 1).status_code == 201
            broker.stop()
            eventually(lambda: gw.http.get("/readyz").status_code == 503, "not ready")
            assert gw.http.get("/healthz").status_code == 200
            answer, elapsed = timed(lambda: gw.post(unique("down"), 1))
            assert_problem(answer, 503)
            assert elapsed < AT_ONCE, f"{elapsed:.3f} s: a 503 must come at once"
            with Program(
                folder, [sys.executable, "-m", "amqp_core.broker", "-a", f"{HOST}:{port}"]
            ):
                wait_for_port(port)
                # Reconnecting with backoff: 0, 0.1, 0.2 ... s between attempts.
                eventually(lambda: gw.http.get("/readyz").status_code == 200, "ready again")
                answer = gw.post(unique("back"), 1)
                assert answer.status_code == 201, answer.text
