"""Bearer tokens, end to end: the real gateway (a subprocess) checks JWTs that an
identity provider stand-in issues.

The tokens are minted with joserfc, a JOSE implementation other than the gateway's
(PyJWT), from RSA, EC and HMAC keys made at test time; the JWKS is served by a real HTTP
server on loopback (http.server in a thread), which counts its fetches: an unknown key
id makes the gateway fetch it again, at most once per --jwks-min-refresh however many
tokens name unknown ids, and a key added there (a rotation) works after that fetch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from auth_fixtures import (
    closed_with,
    next_frame,
    refusals,
    refused_websocket,
    sse,
    ticket,
    websocket,
)
from gateway_fixtures import HOST, GatewayServer, assert_problem, unique
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

ISSUER = "https://idp.example/realms/test"
AUDIENCE = "amqp-gateway"
#: --jwks-min-refresh of the URL gateway: seconds between fetches for unknown key ids.
MIN_REFRESH = 1.5

RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "alg": "RS256"})
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "alg": "ES256"})
ROTATED_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "alg": "RS256"})
SECRET = base64.urlsafe_b64encode(hashlib.sha256(b"test secret").digest())
HMAC_KEY = OctKey.import_key(SECRET)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    value = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "service-account-billing",
        "iat": now,
        "exp": now + 300,
        "scope": "openid profile send:orders/* receive:orders/* request:svc/*",
    }
    value.update(overrides)
    return {name: item for name, item in value.items() if item is not None}


def token(key: Any = RSA_KEY, algorithm: str = "RS256", **overrides: Any) -> str:
    header = {"alg": algorithm}
    if key.kid:
        header["kid"] = key.kid
    return jwt.encode(header, claims(**overrides), key)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def hand_made(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """A token signed with HMAC-SHA256 under `key`, whatever its header says."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


# -- the identity provider's JWKS ---------------------------------------------------------


class JwksServer:
    """Serves `document` at /jwks on a free loopback port and counts the fetches."""

    def __init__(self) -> None:
        self.document = KeySet([RSA_KEY, EC_KEY]).as_dict(private=False)
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.fetches += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200 if self.path == "/jwks" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(jwks: JwksServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """Keys from the JWKS URL; grants from the scope claim."""
    folder = tmp_path_factory.mktemp("jwt")
    with GatewayServer(
        folder,
        "--jwt-jwks",
        jwks.url,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--jwks-min-refresh",
        str(MIN_REFRESH),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def file_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """Keys from a JWKS file and an HS256 secret; grants as an object in a nested claim."""
    folder = tmp_path_factory.mktemp("jwt-file")
    jwks_file = folder / "jwks.json"
    jwks_file.write_text(json.dumps(KeySet([RSA_KEY]).as_dict(private=False)))
    secret_file = folder / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    with GatewayServer(
        folder,
        "--jwt-jwks",
        str(jwks_file),
        "--jwt-secret-file",
        str(secret_file),
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--jwt-grants-claim",
        "amqp.grants",
    ) as server:
        yield server


# -- accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "algorithm"), [(RSA_KEY, "RS256"), (EC_KEY, "ES256")])
def test_rs256_and_es256_tokens_from_the_jwks_url_are_accepted(
    gateway: GatewayServer, key: Any, algorithm: str
) -> None:
    address = unique("orders/jwt")
    headers = bearer(token(key, algorithm))
    assert gateway.post(address, {"n": 1}, headers=headers).status_code == 201
    taken = gateway.http.get(f"/messages/{address}", params={"timeout": 5}, headers=headers)
    assert taken.status_code == 200, taken.text
    # Scopes that are not grants (openid, profile) grant nothing.
    problem = assert_problem(gateway.post(unique("billing"), {}, headers=headers), 403)
    assert "jwt:service-account-billing may not send" in problem["detail"]


def test_hs256_and_an_object_claim(file_gateway: GatewayServer) -> None:
    grants = {"grants": {"send": ["orders/*"], "receive": ["orders/eu"]}}
    headers = bearer(token(HMAC_KEY, "HS256", amqp=grants, scope=None))
    assert file_gateway.post(unique("orders/hs"), {}, headers=headers).status_code == 201
    assert_problem(
        file_gateway.http.get("/messages/orders/us", params={"timeout": 0}, headers=headers), 403
    )
    # RS256 from the JWKS file, on the same gateway.
    headers = bearer(token(RSA_KEY, "RS256", amqp=grants))
    assert file_gateway.post(unique("orders/rs"), {}, headers=headers).status_code == 201
    # No grants claim at all: authenticated, and granted nothing.
    headers = bearer(token(HMAC_KEY, "HS256", scope=None))
    assert_problem(file_gateway.post(unique("orders/none"), {}, headers=headers), 403)


def test_streams_take_a_bearer_header_or_a_ticket_from_one(gateway: GatewayServer) -> None:
    address, sse_address = unique("orders/jwt-ws"), unique("orders/jwt-sse")
    headers = bearer(token())
    assert gateway.post(address, {"n": 0}, headers=headers).status_code == 201
    assert gateway.post(sse_address, {"n": 1}, headers=headers).status_code == 201
    with websocket(gateway, address, headers) as client:
        assert next_frame(client)["body"] == {"n": 0}
    with sse(gateway, sse_address, ticket=ticket(gateway, headers)) as events:
        assert json.loads(events.next_event()["data"])["body"] == {"n": 1}
    code, _, problem = refused_websocket(gateway, unique("billing"), headers)
    assert code == 4403


def test_clock_skew_within_the_leeway_is_allowed(gateway: GatewayServer) -> None:
    now = int(time.time())
    headers = bearer(token(exp=now - 5, nbf=now + 5))  # --jwt-leeway: 10 s by default
    assert gateway.post(unique("orders/skew"), {}, headers=headers).status_code == 201


def test_a_stream_opened_with_a_token_is_closed_when_the_token_expires(
    gateway: GatewayServer,
) -> None:
    """Its token expires 2 s from now (10 s of leeway): the WebSocket (bearer header) and
    the SSE stream (a ticket from that token) close with 401; a stream opened with a
    longer-lived token goes on."""
    address = unique("orders/jwt-expiry")
    short = bearer(token(exp=int(time.time()) - 8))
    long = bearer(token())
    before = refusals(gateway).get("expired-token", 0)
    with (
        websocket(gateway, address, short) as expiring,
        sse(gateway, address, ticket=ticket(gateway, short)) as expiring_events,
        websocket(gateway, address, long) as lasting,
    ):
        code, reason, frames = closed_with(expiring)
        assert (code, reason) == (4401, "Unauthorized"), frames
        assert "jwt:service-account-billing expired" in frames[-1]["error"]["detail"]
        event = expiring_events.next_event()
        assert event["event"] == "error" and json.loads(event["data"])["status"] == 401
        assert gateway.post(address, {"n": "after"}, headers=long).status_code == 201
        assert next_frame(lasting)["body"] == {"n": "after"}
    assert refusals(gateway)["expired-token"] == before + 2
    # The token was verified once and kept: kept no longer than it is valid.
    assert "expired" in _refused(gateway, short["Authorization"].split()[1])["detail"]


def test_an_exp_of_digits_in_a_string_is_read_as_its_number(gateway: GatewayServer) -> None:
    """PyJWT accepts an `exp` that int() reads; the gateway then keeps it as that time."""
    headers = bearer(token(exp=str(int(time.time()) + 300)))
    for _ in range(2):  # the second from the tokens verified before
        assert gateway.post(unique("orders/exp-text"), {}, headers=headers).status_code == 201
    assert "expired" in _refused(gateway, token(exp=str(int(time.time()) - 60)))["detail"]


def test_a_key_gone_from_the_jwks_file_refuses_its_tokens_verified_before(
    tmp_path: Path,
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(KeySet([RSA_KEY]).as_dict(private=False)))
    flags = ["--jwt-jwks", str(jwks_file), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE]
    with GatewayServer(tmp_path, *flags) as server:
        headers = bearer(token(RSA_KEY))
        assert server.post(unique("orders/withdrawn"), {}, headers=headers).status_code == 201
        jwks_file.write_text(json.dumps(KeySet([ROTATED_KEY]).as_dict(private=False)))
        server.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while (
            answer := server.post(unique("orders/withdrawn"), {}, headers=headers)
        ).status_code == 201:
            assert time.monotonic() < deadline, "a withdrawn key's token is still accepted"
            time.sleep(0.05)
        assert "unknown key" in assert_problem(answer, 401)["detail"]


# -- refused ------------------------------------------------------------------------------


def _refused(gateway: GatewayServer, value: str) -> dict[str, Any]:
    answer = gateway.post(unique("orders/refused"), {}, headers=bearer(value))
    problem = assert_problem(answer, 401)
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, challenge
    return problem


def test_an_expired_token_is_401_and_counted_apart(gateway: GatewayServer) -> None:
    before = refusals(gateway).get("expired-token", 0)
    problem = _refused(gateway, token(exp=int(time.time()) - 60))
    assert "expired" in problem["detail"]
    assert refusals(gateway)["expired-token"] == before + 1


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iss": "https://other.example/realms/test"}, "issuer"),
        ({"aud": "another-service"}, "audience"),
        ({"exp": None}, "no exp claim"),
        ({"aud": None}, "no aud claim"),
        ({"iss": None}, "no iss claim"),
    ],
    ids=["nbf", "iss", "aud", "no-exp", "no-aud", "no-iss"],
)
def test_claims_are_checked(gateway: GatewayServer, overrides: dict[str, Any], words: str) -> None:
    assert words in _refused(gateway, token(**overrides))["detail"]


def test_forged_and_malformed_tokens_are_401(
    gateway: GatewayServer, file_gateway: GatewayServer
) -> None:
    before = refusals(gateway).get("invalid-token", 0)
    good = token()
    header, payload, signature = good.split(".")
    grant_all = (
        base64.urlsafe_b64encode(json.dumps(claims(scope="send:* receive:*")).encode())
        .rstrip(b"=")
        .decode()
    )
    _refused(gateway, f"{header}.{grant_all}.{signature}")  # payload changed
    _refused(gateway, "not a token")
    _refused(gateway, token(RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})))  # wrong key
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    _refused(gateway, f"{unsigned}.{payload}.")
    # HS256 with the RSA public key as its secret (algorithm confusion).
    public_pem = RSA_KEY.as_pem(private=False)
    confused = hand_made({"alg": "HS256", "kid": "rsa-1"}, claims(), public_pem)
    _refused(gateway, confused)
    _refused(file_gateway, confused)
    # An ES256 header on a token from the RSA key's kid.
    _refused(gateway, hand_made({"alg": "ES256", "kid": "rsa-1"}, claims(), b"x"))
    # A key id that HTTP could not carry back in WWW-Authenticate as it is.
    _refused(gateway, hand_made({"alg": "RS256", "kid": 'é🙂"\r\n'}, claims(), b"x"))
    assert refusals(gateway)["invalid-token"] == before + 7


# -- the JWKS URL -------------------------------------------------------------------------


def test_unknown_key_ids_fetch_the_jwks_at_most_once_per_min_refresh(
    gateway: GatewayServer, jwks: JwksServer
) -> None:
    time.sleep(MIN_REFRESH)
    fetched = jwks.fetches
    for n in range(40):
        made_up = RSAKey.generate_key(2048, parameters={"kid": f"made-up-{n}"}) if n < 2 else None
        value = (
            token(made_up)
            if made_up is not None
            else hand_made({"alg": "RS256", "kid": f"made-up-{n}"}, claims(), b"x")
        )
        _refused(gateway, value)
    assert jwks.fetches == fetched + 1, "a flood of unknown kids must fetch the JWKS once"


def test_a_rotated_key_works_after_one_fetch(gateway: GatewayServer, jwks: JwksServer) -> None:
    rotated = bearer(token(ROTATED_KEY))
    jwks.document = KeySet([ROTATED_KEY, RSA_KEY, EC_KEY]).as_dict(private=False)
    time.sleep(MIN_REFRESH)
    fetched = jwks.fetches
    assert gateway.post(unique("orders/rotated"), {}, headers=rotated).status_code == 201
    assert gateway.post(unique("orders/rotated"), {}, headers=rotated).status_code == 201
    assert jwks.fetches == fetched + 1


# -- settings -----------------------------------------------------------------------------


def test_tokens_without_issuer_and_audience_do_not_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    from gateway_fixtures import child_env
    from processes import free_port

    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(KeySet([RSA_KEY]).as_dict(private=False)))
    command = [
        sys.executable, "-m", "gateway", "--http", f"{HOST}:{free_port()}",
        "--amqp-listen", f"{HOST}:{free_port()}", "--jwt-jwks", str(jwks_file),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--jwt-issuer and --jwt-audience" in lines[0]
