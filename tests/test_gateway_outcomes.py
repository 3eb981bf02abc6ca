"""End to end: the HTTP status of a POST mirrors the AMQP outcome.

The gateway (a subprocess) connects with --amqp-url to a small real AMQP peer: a Proton
listener (tests/gateway_fixtures.py, OUTCOME_PEER) that rejects, releases, modifies or
never settles, as the target address says. A second gateway points at a port nobody
listens on: the broker is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import (
    HOST,
    GatewayServer,
    Program,
    assert_problem,
    outcome_peer,
    receive_all,
    script,
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


#: A Proton listener that prints "received <message id>" for each message; with the
#: argument "vanish" it then exits at once, leaving the message unsettled: the gateway
#: sent it, and the connection is gone before any outcome.
VANISHING_PEER = """
import os
import sys
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Peer(MessagingHandler):
    def __init__(self, url, vanish):
        super().__init__(auto_accept=not vanish)
        self.url, self.vanish = url, vanish

    def on_start(self, event):
        event.container.listen(self.url)

    def on_link_opening(self, event):
        if event.link.is_receiver and event.link.remote_target:
            event.link.target.address = event.link.remote_target.address

    def on_message(self, event):
        print("received", event.message.id, flush=True)
        if self.vanish:
            os._exit(3)


Container(Peer(sys.argv[1], sys.argv[2] == "vanish")).run()
"""


def test_a_send_in_doubt_is_its_own_problem_and_a_retry_with_its_key_sends_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The peer took the message and vanished before settling it. That is not "broker
    unavailable" (503, safe to retry): the gateway answers 504 with the in-doubt type and
    the message id. A retry with the same Idempotency-Key gets that answer again and
    sends nothing, though the broker is back; a retry without the key is sent."""
    folder = tmp_path_factory.mktemp("in-doubt")
    port = free_port()
    peer = script(folder, "vanishing_peer", VANISHING_PEER)
    key = unique("key")
    with (
        Program(folder, [sys.executable, str(peer), f"{HOST}:{port}", "vanish"]) as first,
        GatewayServer(folder, "--amqp-url", f"amqp://{HOST}:{port}") as gw,
    ):
        wait_for_port(port)
        answer = gw.post("orders", {"order": 1}, headers={"Idempotency-Key": key})
        problem = assert_problem(answer, 504)
        assert problem["type"] == "/problems/in-doubt", problem
        assert problem["message_id"] == key
        assert "retry-after" not in answer.headers
        first.wait_for_line(f"received {key}")
        first.wait()
        with Program(folder, [sys.executable, str(peer), f"{HOST}:{port}", "accept"]) as second:
            wait_for_port(port)
            eventually(lambda: gw.http.get("/readyz").status_code == 200, "connected again")
            retry = gw.post("orders", {"order": 1}, headers={"Idempotency-Key": key})
            assert_problem(retry, 504)
            assert retry.headers.get("idempotent-replayed") == "true"
            assert retry.json() == problem
            fresh = gw.post("orders", {"order": 2}, headers={"amqp-id": "fresh"})
            assert fresh.status_code == 201, fresh.text
            second.wait_for_line("received fresh")
            assert not any(key in line for line in second.lines()), second.output()


def test_nothing_sent_is_503_and_a_retry_with_its_key_sends_for_real(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Not connected: nothing was sent, so the answer is not remembered under the key,
    and the retry, once the broker is there, sends the message."""
    folder = tmp_path_factory.mktemp("not-sent")
    port = free_port()
    peer = script(folder, "vanishing_peer", VANISHING_PEER)
    key = unique("key")
    with GatewayServer(folder, "--amqp-url", f"amqp://{HOST}:{port}", ready="/healthz") as gw:
        answer = gw.post("orders", {"order": 1}, headers={"Idempotency-Key": key})
        problem = assert_problem(answer, 503)
        assert problem["type"] == "about:blank"
        assert answer.headers.get("retry-after", "").isdigit()
        with Program(folder, [sys.executable, str(peer), f"{HOST}:{port}", "accept"]) as peer_up:
            wait_for_port(port)
            eventually(lambda: gw.http.get("/readyz").status_code == 200, "connected")
            retry = gw.post("orders", {"order": 1}, headers={"Idempotency-Key": key})
            assert retry.status_code == 201, retry.text
            assert "idempotent-replayed" not in retry.headers
            peer_up.wait_for_line(f"received {key}")


#: The broker-kill test: messages posted, by this many clients at once, while the broker
#: is killed (SIGKILL) this many times.
KILL_MESSAGES = 2000
KILL_CLIENTS = 16
KILLS = 3


@pytest.mark.slow
def test_killing_the_broker_under_load_duplicates_nothing_retried_with_its_key(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Clients post durable messages, each with its own Idempotency-Key, and retry each
    503 with that key until they get a final answer; amqp_core's broker (its store on
    disk) is killed with SIGKILL three times meanwhile and started again. A consumer then
    sees every accepted message once, and no message twice: a send in doubt is answered
    504, and its retries with the key are answered that again instead of sending it
    again (they used to get 503 and send it again)."""
    folder = tmp_path_factory.mktemp("kill")
    port = free_port()
    broker_command = [
        sys.executable, "-m", "amqp_core.broker", "-a", f"{HOST}:{port}",
        "--data-dir", str(folder / "store"),
    ]  # fmt: skip
    address = unique("killed")
    brokers = [Program(folder, broker_command, name="broker")]
    wait_for_port(port)
    try:
        with GatewayServer(folder, "--amqp-url", f"amqp://{HOST}:{port}") as gw:
            answers = asyncio.run(_post_while_killing(gw, address, brokers, broker_command, port))
            received = receive_all(f"{HOST}:{port}", address, quiet=2.0)
    finally:
        for broker in brokers:
            broker.stop()
    ids = [message.id for message in received]
    duplicates = {key for key in ids if ids.count(key) > 1}
    accepted = {key for key, status in answers.items() if status == 201}
    in_doubt = {key for key, status in answers.items() if status == 504}
    assert set(answers.values()) <= {201, 504}, set(answers.values())
    assert duplicates == set(), f"{len(duplicates)} duplicates: {sorted(duplicates)[:5]}"
    assert accepted <= set(ids), f"{len(accepted - set(ids))} accepted messages lost"
    print(
        f"{len(accepted)} accepted, {len(in_doubt)} in doubt "
        f"({len(in_doubt & set(ids))} of them delivered), {len(ids)} received, 0 duplicates"
    )


async def _post_while_killing(
    gw: GatewayServer, address: str, brokers: list[Program], command: list[str], port: int
) -> dict[str, int]:
    """Post KILL_MESSAGES messages; kill and restart the broker KILLS times on the way.
    Each message's final status by its key; fails if the broker was never caught with a
    send in flight (the run proved nothing)."""
    keys = [f"{address}-{number}" for number in range(KILL_MESSAGES)]
    pending = list(reversed(keys))
    answers: dict[str, int] = {}
    retried = 0
    deadline = time.monotonic() + 240

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal retried
        while pending:
            key = pending.pop()
            while time.monotonic() < deadline:
                answer = await http.post(
                    f"/messages/{address}",
                    json={"key": key},
                    headers={"Idempotency-Key": key, "amqp-durable": "true"},
                )
                if answer.status_code != 503:
                    if answer.status_code == 504:
                        assert answer.json()["type"] == "/problems/in-doubt", answer.text
                    answers[key] = answer.status_code
                    break
                retried += 1
                await asyncio.sleep(0.05)

    async def killer() -> None:
        for kill in range(1, KILLS + 1):
            while len(answers) < kill * KILL_MESSAGES // (KILLS + 1):
                await asyncio.sleep(0.01)
            brokers[-1].popen.kill()
            await asyncio.to_thread(brokers[-1].popen.wait)
            await asyncio.sleep(0.3)
            brokers.append(Program(folder_of(brokers[-1]), command, name="broker"))
            await asyncio.to_thread(wait_for_port, port)

    limits = httpx.Limits(max_connections=KILL_CLIENTS)
    async with httpx.AsyncClient(
        base_url=gw.url, timeout=60, limits=limits, trust_env=False
    ) as http:
        await asyncio.gather(killer(), *(client(http) for _ in range(KILL_CLIENTS)))
    assert len(answers) == KILL_MESSAGES, f"{len(answers)} of {KILL_MESSAGES} answered in time"
    assert retried or 504 in answers.values(), "no kill caught a send in flight"
    return answers


def folder_of(program: Program) -> Path:
    return program.log.parent
