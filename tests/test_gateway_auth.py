"""Authentication and authorization, end to end: the real gateway (a subprocess) with an
API key file, reached by httpx, the `websockets` library and Proton.

- no credentials or an unknown key: 401 with WWW-Authenticate; an address outside the
  grant: 403 naming the action and the address; both problem+json, both counted in
  /metrics by reason; /healthz, /readyz and /metrics stay open (--protect-metrics
  closes /metrics);
- WebSocket and SSE streams take the key in a header, or a single-use ticket; a refused
  stream attaches nothing on the AMQP side (a Proton peer records every attach);
- SIGHUP re-reads the key file: streams of a revoked key are closed (4401, an SSE error
  event), those whose grant shrank too (4403), the others go on; a bad file keeps the
  old keys;
- the gateway's reply address is out of every client's reach, and correlation ids are
  128 random bits: a client granted everything steals and forges no reply.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth_fixtures import (
    closed_with,
    new_key,
    next_frame,
    recording_peer,
    refusals,
    refused_websocket,
    sse,
    sse_status,
    ticket,
    websocket,
    write_keys,
)
from gateway_fixtures import (
    CALL_TIMEOUT,
    HOST,
    GatewayServer,
    Program,
    assert_problem,
    child_env,
    example,
    proton_connection,
    unique,
)
from processes import free_port

#: The keys of the module's gateway, made at test time.
FULL = new_key()  # may do everything
ORDERS = new_key()  # orders/* only, and calls svc/*
NOTHING = new_key()  # a valid key with no grant

GRANTS: dict[str, dict[str, Any]] = {
    FULL: {"name": "full", "send": ["*"], "receive": ["*"], "request": ["*"]},
    ORDERS: {"name": "orders", "send": ["orders/*"], "receive": ["orders/*"], "request": ["svc/*"]},
    NOTHING: {},
}
ENVELOPE = "application/vnd.amqp.message+json"


def key(value: str) -> dict[str, str]:
    return {"X-API-Key": value}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    folder = tmp_path_factory.mktemp("auth")
    keys = write_keys(folder / "keys.json", GRANTS)
    with GatewayServer(folder, "--api-keys", str(keys), "--sse-keepalive", "0.5") as server:
        yield server


@pytest.fixture(scope="module")
def service(gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """examples/server.py (it answers in upper case) at svc/upper; yields the address."""
    with Program(
        tmp_path_factory.mktemp("service"), example("server", "-a", f"{gateway.amqp}/svc/upper")
    ) as server:
        server.wait_for_line("Listening on")
        yield "svc/upper"


# -- 401, 403, granted --------------------------------------------------------------------


def _calls(address: str) -> dict[str, Any]:
    return {
        "POST /messages": lambda http, headers: http.post(
            f"/messages/{address}", json={"n": 1}, headers=headers
        ),
        "GET /messages": lambda http, headers: http.get(
            f"/messages/{address}", params={"timeout": 0}, headers=headers
        ),
        "POST /requests": lambda http, headers: http.post(
            f"/requests/{address}", content="hi", headers={"Request-Timeout": "1", **headers}
        ),
        "GET /streams (SSE)": lambda http, headers: http.get(
            f"/streams/{address}", headers={"Accept": "text/event-stream", **headers}
        ),
    }


def test_no_credentials_is_401_with_www_authenticate(gateway: GatewayServer) -> None:
    before = refusals(gateway).get("missing", 0)
    calls = _calls(unique("orders/none"))
    for name, call in calls.items():
        answer = call(gateway.http, {})
        problem = assert_problem(answer, 401)
        assert "X-API-Key" in problem["detail"], (name, problem)
        assert answer.headers["www-authenticate"].startswith("ApiKey"), name
    answer = gateway.http.post("/auth/tickets")
    assert_problem(answer, 401)
    assert refusals(gateway)["missing"] == before + len(calls) + 1


def test_an_unknown_key_is_401(gateway: GatewayServer) -> None:
    before = refusals(gateway).get("unknown-key", 0)
    for call in _calls(unique("orders/unknown")).values():
        answer = call(gateway.http, key(new_key()))
        assert "not known" in assert_problem(answer, 401)["detail"]
        assert "www-authenticate" in answer.headers
    # A key's hash, as the file stores it, is not the key.
    stored = "sha256:" + __import__("hashlib").sha256(FULL.encode()).hexdigest()
    assert_problem(gateway.post(unique("orders/x"), {}, headers=key(stored)), 401)
    assert refusals(gateway)["unknown-key"] == before + 5


def test_an_address_outside_the_grant_is_403_naming_action_and_address(
    gateway: GatewayServer,
) -> None:
    before = refusals(gateway).get("not-granted", 0)
    address = unique("billing")
    calls = _calls(address)
    for name, call in calls.items():
        problem = assert_problem(call(gateway.http, key(ORDERS)), 403)
        action = {"POST /messages": "send", "POST /requests": "request"}.get(name, "receive")
        assert f"may not {action} {address!r}" in problem["detail"], (name, problem)
        assert "orders" in problem["detail"], "the credential's name"
    # A valid key with no grant at all.
    assert_problem(gateway.post(unique("orders/x"), {}, headers=key(NOTHING)), 403)
    assert refusals(gateway)["not-granted"] == before + len(calls) + 1


def test_a_granted_key_sends_takes_and_calls(gateway: GatewayServer, service: str) -> None:
    address = unique("orders/granted")
    answer = gateway.post(address, {"n": 1}, headers=key(ORDERS))
    assert answer.status_code == 201, answer.text
    batch = [{"body": {"n": 2}}, {"body": {"n": 3}}]
    answer = gateway.http.post(
        f"/messages/{address}",
        content=json.dumps(batch),
        headers={"Content-Type": ENVELOPE, **key(ORDERS)},
    )
    assert answer.status_code == 207, answer.text
    taken = gateway.http.get(
        f"/messages/{address}", params={"count": 3, "timeout": 5}, headers=key(ORDERS)
    )
    assert taken.status_code == 200, taken.text
    assert [frame["body"] for frame in taken.json()["messages"]] == [{"n": 1}, {"n": 2}, {"n": 3}]
    reply = gateway.http.post(
        f"/requests/{service}",
        content="twas brillig",
        headers={"Content-Type": "text/plain", "Request-Timeout": "10", **key(ORDERS)},
    )
    assert reply.status_code == 200, reply.text
    assert reply.text == "TWAS BRILLIG"


def test_a_batch_to_an_address_outside_the_grant_sends_none(gateway: GatewayServer) -> None:
    address = unique("billing/batch")
    batch = [{"body": {"n": 1}}, {"body": {"n": 2}}]
    answer = gateway.http.post(
        f"/messages/{address}",
        content=json.dumps(batch),
        headers={"Content-Type": ENVELOPE, **key(ORDERS)},
    )
    assert_problem(answer, 403)
    taken = gateway.http.get(f"/messages/{address}", params={"timeout": 0.2}, headers=key(FULL))
    assert taken.status_code == 204, taken.text


def test_health_readiness_and_metrics_stay_open(gateway: GatewayServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/", "/openapi.json"):
        assert gateway.http.get(path).status_code == 200, path


def test_protect_metrics_asks_metrics_for_credentials(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.json", {NOTHING: {}})
    with GatewayServer(tmp_path, "--api-keys", str(keys), "--protect-metrics") as server:
        answer = server.http.get("/metrics")
        assert_problem(answer, 401)
        assert "www-authenticate" in answer.headers
        assert server.http.get("/metrics", headers=key(NOTHING)).status_code == 200
        assert server.http.get("/healthz").status_code == 200
        assert server.http.get("/readyz").status_code == 200


def test_a_bearer_token_without_token_settings_is_401(gateway: GatewayServer) -> None:
    answer = gateway.post(unique("orders/x"), {}, headers={"Authorization": "Bearer a.b.c"})
    assert "X-API-Key only" in assert_problem(answer, 401)["detail"]
    answer = gateway.post(unique("orders/x"), {}, headers={"Authorization": f"Basic {FULL}"})
    assert_problem(answer, 401)


# -- streams ------------------------------------------------------------------------------


def test_a_websocket_takes_the_key_in_a_header(gateway: GatewayServer) -> None:
    address = unique("orders/ws")
    assert gateway.post(address, {"n": 1}, headers=key(ORDERS)).status_code == 201
    with websocket(gateway, address, key(ORDERS)) as client:
        assert next_frame(client)["body"] == {"n": 1}


def test_a_websocket_without_a_valid_key_is_closed_4401_and_outside_its_grant_4403(
    gateway: GatewayServer,
) -> None:
    address = unique("billing/ws")
    code, reason, problem = refused_websocket(gateway, address)
    assert (code, reason, problem["status"]) == (4401, "Unauthorized", 401)
    code, _, problem = refused_websocket(gateway, address, key(new_key()))
    assert (code, problem["status"]) == (4401, 401)
    code, reason, problem = refused_websocket(gateway, address, key(ORDERS))
    assert (code, reason, problem["status"]) == (4403, "Forbidden", 403)
    assert f"may not receive {address!r}" in problem["detail"]


def test_a_ticket_opens_one_websocket_and_one_sse_stream_once(gateway: GatewayServer) -> None:
    address, sse_address = unique("orders/ticket"), unique("orders/ticket-sse")
    assert gateway.post(address, {"n": 0}, headers=key(ORDERS)).status_code == 201
    assert gateway.post(sse_address, {"n": 1}, headers=key(ORDERS)).status_code == 201
    first = ticket(gateway, key(ORDERS))
    with websocket(gateway, address, ticket=first) as client:
        assert next_frame(client)["body"] == {"n": 0}
    # Used up: the same ticket again is refused.
    code, _, problem = refused_websocket(gateway, address, ticket=first)
    assert code == 4401 and "ticket is not valid" in problem["detail"]
    second = ticket(gateway, key(ORDERS))
    with sse(gateway, sse_address, ticket=second) as events:
        assert json.loads(events.next_event()["data"])["body"] == {"n": 1}
    answer = gateway.http.get(
        f"/streams/{address}", params={"ticket": second}, headers={"Accept": "text/event-stream"}
    )
    assert_problem(answer, 401)
    # A ticket carries its key's grants, no more.
    code, _, _ = refused_websocket(gateway, unique("billing"), ticket=ticket(gateway, key(ORDERS)))
    assert code == 4403
    # Tickets open streams only: other routes want the key itself.
    answer = gateway.post(address, {}, params={"ticket": ticket(gateway, key(ORDERS))})
    assert_problem(answer, 401)


def test_a_made_up_ticket_is_401(gateway: GatewayServer) -> None:
    before = refusals(gateway).get("bad-ticket", 0)
    code, _, _ = refused_websocket(gateway, unique("orders/t"), ticket=new_key())
    assert code == 4401
    assert refusals(gateway)["bad-ticket"] == before + 1


def test_refused_streams_attach_nothing_on_the_amqp_side(tmp_path: Path) -> None:
    """Seen from a Proton peer the gateway connects to: the refused WebSocket, SSE and
    long-poll never attach a link to their address; a granted one does."""
    peer, peer_address = recording_peer(tmp_path)
    keys = write_keys(tmp_path / "keys.json", GRANTS)
    with (
        peer,
        GatewayServer(
            tmp_path, "--amqp-url", f"amqp://{peer_address}", "--api-keys", str(keys)
        ) as server,
    ):
        refused = unique("billing/refused")
        for headers in ({}, key(new_key()), key(ORDERS)):
            refused_websocket(server, refused, headers)
            answer = server.http.get(
                f"/streams/{refused}", headers={"Accept": "text/event-stream", **headers}
            )
            assert answer.status_code in (401, 403), answer.text
            answer = server.http.get(f"/messages/{refused}", params={"timeout": 0}, headers=headers)
            assert answer.status_code in (401, 403), answer.text
            answer = server.http.post(f"/messages/{refused}", json={}, headers=headers)
            assert answer.status_code in (401, 403), answer.text
        granted = unique("orders/granted")
        answer = server.http.get(f"/messages/{granted}", params={"timeout": 0}, headers=key(ORDERS))
        assert answer.status_code == 204, answer.text
        deadline = time.monotonic() + CALL_TIMEOUT
        while not any(granted in line for line in peer.lines()):
            assert time.monotonic() < deadline, peer.output()
            time.sleep(0.05)
    attached = [line for line in peer.lines() if line.startswith("attach")]
    assert not [line for line in attached if refused in line], attached


# -- SIGHUP -------------------------------------------------------------------------------


def test_sighup_rereads_the_keys_and_closes_what_they_no_longer_allow(tmp_path: Path) -> None:
    revoked, narrowed, kept = new_key(), new_key(), new_key()
    everything = {"send": ["*"], "receive": ["*"]}
    keys = write_keys(
        tmp_path / "keys.json",
        {revoked: everything, narrowed: everything, kept: {"name": "kept", **everything}},
    )
    with GatewayServer(tmp_path, "--api-keys", str(keys), "--sse-keepalive", "0.5") as server:
        address = unique("reload")
        unused_ticket = ticket(server, key(revoked))
        with (
            websocket(server, address, key(revoked)) as revoked_ws,
            websocket(server, address, key(narrowed)) as narrowed_ws,
            websocket(server, address, key(kept)) as kept_ws,
            sse(server, address, key(revoked)) as revoked_sse,
        ):
            write_keys(
                keys,
                {narrowed: {"receive": ["elsewhere/*"]}, kept: {"name": "kept", **everything}},
            )
            server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

            code, reason, frames = closed_with(revoked_ws)
            assert (code, reason) == (4401, "Unauthorized"), frames
            assert "was revoked" in frames[-1]["error"]["detail"]
            code, reason, frames = closed_with(narrowed_ws)
            assert (code, reason) == (4403, "Forbidden"), frames
            detail = frames[-1]["error"]["detail"]
            assert f"may not receive {address!r}: no longer granted" in detail
            event = revoked_sse.next_event()
            assert event["event"] == "error"
            assert json.loads(event["data"])["status"] == 401

            # The kept key's stream goes on, and the process still serves.
            assert server.post(address, {"after": "reload"}, headers=key(kept)).status_code == 201
            assert next_frame(kept_ws)["body"] == {"after": "reload"}
        assert server.process.poll() is None  # type: ignore[union-attr]
        assert refusals(server)["revoked"] == 3
        # The revoked key, and the ticket issued to it, open nothing now.
        assert_problem(server.post(address, {}, headers=key(revoked)), 401)
        code, _, _ = refused_websocket(server, address, ticket=unused_ticket)
        assert code == 4401


def test_a_bad_key_file_on_sighup_keeps_the_keys_read_before(tmp_path: Path) -> None:
    valid = new_key()
    keys = write_keys(tmp_path / "keys.json", {valid: {"send": ["*"]}})
    with GatewayServer(tmp_path, "--api-keys", str(keys)) as server:
        keys.write_text('{"sha256:not-hex": {}}')
        server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + CALL_TIMEOUT
        while "the API keys read before are kept" not in server.log_tail(200):
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)
        assert "entry 1 is not named by a key's hash" in server.log_tail(200)
        assert server.post(unique("kept"), {}, headers=key(valid)).status_code == 201


# -- reply addresses ----------------------------------------------------------------------

#: Answers each request on SERVICE in upper case, after a pause, and prints each
#: request's reply_to and correlation id as JSON lines (so that the test can give a thief
#: what it would see on the queue).
SLOW_SERVICE = """
import json, sys, time
from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Service(MessagingHandler):
    def __init__(self, url, address):
        super().__init__()
        self.url, self.address = url, address

    def on_start(self, event):
        connection = event.container.connect(self.url, reconnect=False)
        event.container.create_receiver(connection, self.address)
        self.sender = event.container.create_sender(connection, None)
        print("listening", flush=True)

    def on_message(self, event):
        request = event.message
        print(json.dumps({"reply_to": request.reply_to,
                          "correlation_id": request.correlation_id}), flush=True)
        time.sleep(0.3)
        self.sender.send(Message(address=request.reply_to, body=request.body.upper(),
                                 correlation_id=request.correlation_id))


Container(Service(sys.argv[1], sys.argv[2])).run()
"""


def test_correlation_ids_are_128_random_bits(gateway: GatewayServer) -> None:
    """The ids a service sees: 32 hex digits each, no two alike, sharing no prefix or
    counter that would tell the next."""
    address = unique("svc/ids")
    ids = []
    with proton_connection(gateway.amqp) as amqp, ThreadPoolExecutor(1) as pool:
        receiver = amqp.create_receiver(address, credit=1)
        for _ in range(8):
            calling = pool.submit(
                gateway.http.post,
                f"/requests/{address}",
                content="x",
                headers={"Request-Timeout": "0.2", **key(FULL)},
            )
            request = receiver.receive(timeout=CALL_TIMEOUT)
            receiver.accept()
            ids.append(str(request.correlation_id))
            assert calling.result(timeout=CALL_TIMEOUT).status_code == 504
    assert all(re.fullmatch("[0-9a-f]{32}", value) for value in ids), ids
    assert len(set(ids)) == len(ids)
    assert len({value[:4] for value in ids}) > 1 and len({value[-4:] for value in ids}) > 1, ids


def test_a_client_granted_everything_steals_and_forges_no_reply(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    """A caller's requests go to a slow service; meanwhile a thief granted send, receive
    and request on "*" knows each request's reply_to and correlation id (as a browser of
    the queue would) and tries to read the replies there (stream, SSE, long-poll) and to
    post forged replies there, also under the names RabbitMQ gives the same queue. Every
    try is a 403, and each call gets its own genuine reply."""
    address = unique("svc/slow")
    script = tmp_path / "slow_service.py"
    script.write_text(SLOW_SERVICE)
    calls = 5
    with Program(
        tmp_path, ["python", str(script), gateway.amqp, address], name="slow-service"
    ) as service:
        service.wait_for_line("listening")
        with ThreadPoolExecutor(calls) as pool:
            calling = [
                pool.submit(
                    gateway.http.post,
                    f"/requests/{address}",
                    content=f"call {n}",
                    headers={"Content-Type": "text/plain", "Request-Timeout": "20", **key(FULL)},
                )
                for n in range(calls)
            ]
            thief = key(FULL)
            tries = forged_refused = stolen_refused = 0
            seen: list[dict[str, str]] = []
            deadline = time.monotonic() + CALL_TIMEOUT
            while len(seen) < calls and time.monotonic() < deadline:
                seen = [json.loads(line) for line in service.lines() if line.startswith("{")]
                time.sleep(0.02)
            assert len(seen) == calls, service.output()
            for request in seen:
                reply_to = request["reply_to"]
                for target in (reply_to, f"/queue/{reply_to}", f"/amq/queue/{reply_to}"):
                    forged = {"body": "FORGED", "correlation_id": request["correlation_id"]}
                    answer = gateway.http.post(
                        f"/messages/{target}",
                        content=json.dumps(forged),
                        headers={"Content-Type": ENVELOPE, **thief},
                    )
                    tries += 1
                    forged_refused += answer.status_code == 403
                    answer = gateway.http.get(
                        f"/messages/{target}", params={"timeout": 0.1}, headers=thief
                    )
                    stolen_refused += answer.status_code == 403
                    stolen_refused += sse_status(gateway, target, thief) == 403
                    code, _, _ = refused_websocket(gateway, target, thief)
                    stolen_refused += code == 4403
                    answer = gateway.http.post(f"/requests/{target}", content="x", headers=thief)
                    forged_refused += answer.status_code == 403
            answers = [future.result(timeout=CALL_TIMEOUT * 2) for future in calling]
    assert forged_refused == 2 * tries and stolen_refused == 3 * tries
    bodies = sorted(answer.text for answer in answers)
    assert [answer.status_code for answer in answers] == [200] * calls, bodies
    assert bodies == sorted(f"CALL {n}" for n in range(calls)), "a reply was stolen or forged"


# -- Host and Origin ----------------------------------------------------------------------


def test_a_foreign_host_is_400_against_dns_rebinding(gateway: GatewayServer) -> None:
    before = refusals(gateway).get("host", 0)
    answer = gateway.http.post(
        f"/messages/{unique('orders/x')}",
        json={},
        headers={"Host": f"rebound.example:{gateway.http_port}", **key(FULL)},
    )
    assert "rebound.example" in assert_problem(answer, 400)["detail"]
    for host in ("localhost", f"localhost:{gateway.http_port}", "127.0.0.1", "[::1]:8080"):
        assert gateway.http.get("/healthz", headers={"Host": host}).status_code == 200, host
    assert refusals(gateway)["host"] == before + 1


def test_a_foreign_origin_changes_nothing(gateway: GatewayServer) -> None:
    """A page on another site may not POST (not even text/plain, which needs no
    preflight), take messages by long-poll or SSE, or open a WebSocket."""
    address = unique("orders/origin")
    foreign = {"Origin": "https://evil.example", **key(FULL)}
    answer = gateway.http.post(
        f"/messages/{address}", content="hi", headers={"Content-Type": "text/plain", **foreign}
    )
    assert "evil.example" in assert_problem(answer, 403)["detail"]
    assert gateway.post(address, {"n": 1}, headers=key(FULL)).status_code == 201
    assert_problem(gateway.http.get(f"/messages/{address}", headers=foreign), 403)
    answer = gateway.http.get(
        f"/streams/{address}", headers={"Accept": "text/event-stream", **foreign}
    )
    assert_problem(answer, 403)
    with pytest.raises(Exception, match="403"), websocket(gateway, address, foreign):
        pass
    # A browser's no-cors GET (an <img src>, say) has no Origin, but says where it
    # comes from in Sec-Fetch-Site: another site, or another port of this one.
    for site in ("cross-site", "same-site"):
        no_cors = {"Sec-Fetch-Site": site, **key(FULL)}
        answer = gateway.http.get(f"/messages/{address}", params={"timeout": 0}, headers=no_cors)
        assert_problem(answer, 403)
    # The message is still there for the gateway's own page (same origin).
    own = {"Origin": gateway.url, "Sec-Fetch-Site": "same-origin", **key(FULL)}
    taken = gateway.http.get(f"/messages/{address}", params={"timeout": 5}, headers=own)
    assert taken.status_code == 200, taken.text
    assert taken.json()["messages"][0]["body"] == {"n": 1}
    assert gateway.http.get("/healthz", headers=foreign).status_code == 200


def test_cors_origins_are_allowed_origins(tmp_path: Path) -> None:
    with GatewayServer(tmp_path, "--cors-origins", '["https://app.example"]') as server:
        address = unique("cors")
        answer = server.post(address, {}, headers={"Origin": "https://app.example"})
        assert answer.status_code == 201, answer.text
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert_problem(server.post(address, {}, headers={"Origin": "https://evil.example"}), 403)


def test_allowed_hosts_replace_the_loopback_names(tmp_path: Path) -> None:
    # 127.0.0.1 too, which the fixture asks /readyz at.
    with GatewayServer(tmp_path, "--allowed-hosts", '["gw.example", "127.0.0.1"]') as server:
        assert server.http.get("/readyz", headers={"Host": "gw.example"}).status_code == 200
        assert_problem(server.http.get("/readyz", headers={"Host": "localhost"}), 400)


def test_the_gateway_answers_the_loopback_names_by_default(gateway: GatewayServer) -> None:
    with httpx.Client(base_url=f"http://localhost:{gateway.http_port}", trust_env=False) as http:
        assert http.get("/healthz").status_code == 200


# -- safe by default ----------------------------------------------------------------------


def _start(*flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", "--amqp-listen", f"{HOST}:{free_port()}", *flags]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=child_env(), check=False
    )


def test_another_address_than_loopback_without_authentication_does_not_start() -> None:
    port = free_port()
    done = _start("--http", f"0.0.0.0:{port}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "--insecure" in lines[0] and "0.0.0.0" in lines[0] and "--api-keys" in lines[0]
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=1).close()


def _everywhere(server: GatewayServer) -> GatewayServer:
    """`server` listening on every address rather than loopback (reached on loopback)."""
    flag = server.command.index("--http")
    server.command[flag + 1] = f"0.0.0.0:{server.http_port}"
    return server


def test_insecure_serves_another_address_with_a_warning(tmp_path: Path) -> None:
    with _everywhere(GatewayServer(tmp_path, "--insecure")) as server:
        assert server.post(unique("open"), {}).status_code == 201
        assert "--insecure: serving 0.0.0.0" in server.log_tail(100)


def test_another_address_with_api_keys_needs_no_insecure(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.json", GRANTS)
    with _everywhere(GatewayServer(tmp_path, "--api-keys", str(keys))) as server:
        assert_problem(server.post(unique("orders/x"), {}), 401)
        assert server.post(unique("orders/x"), {}, headers=key(ORDERS)).status_code == 201
        assert "--insecure" not in server.log_tail(100)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", ["is not JSON"]),
        ('{"my-secret-key": {"send": ["*"]}}', ["entry 1", "sha256:<64 hex digits>"]),
        ('{"sha256:' + "0" * 64 + '": {"send": ["a*b"]}}', ["key:00000000", "'a*b'"]),
        ('{"sha256:' + "0" * 64 + '": {"publish": ["a"]}}', ["unknown action 'publish'"]),
    ],
    ids=["not-json", "plain-key", "bad-pattern", "bad-action"],
)
def test_a_bad_key_file_does_not_start(tmp_path: Path, content: str, words: list[str]) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(content)
    done = _start("--http", f"{HOST}:{free_port()}", "--api-keys", str(keys))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert str(keys) in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "my-secret-key" not in lines[0], "a key is never repeated in a message"


# -- tickets, in the process --------------------------------------------------------------


def test_a_ticket_expires_with_its_lifetime_or_its_credential() -> None:
    """gateway.auth.Tickets, handed the time: 30 s at most, less when the credential
    (a token) ends sooner; the oldest are forgotten beyond the limit."""
    from amqp_core.grants import Credential, Grants
    from gateway.auth import TICKET_LIFETIME, Tickets

    credential = Credential("key:1", "api-key", Grants({}))
    tickets = Tickets(limit=3)
    first, lifetime = tickets.issue(credential, now=1000.0)
    assert lifetime == TICKET_LIFETIME == 30.0
    assert tickets.redeem(first, now=1000.0 + TICKET_LIFETIME) is None  # expired
    second, _ = tickets.issue(credential, now=1000.0)
    assert tickets.redeem(second, now=1029.0) == credential
    assert tickets.redeem(second, now=1029.0) is None  # used

    token = Credential("jwt:x", "jwt", Grants({}), expires=1005.0)
    short, lifetime = tickets.issue(token, now=1000.0)
    assert lifetime == 5.0
    assert tickets.redeem(short, now=1006.0) is None

    issued = [tickets.issue(credential, now=2000.0 + n)[0] for n in range(4)]
    assert len(tickets) == 3
    assert tickets.redeem(issued[0], now=2004.0) is None  # forgotten: the oldest
    assert tickets.redeem(issued[3], now=2004.0) == credential
