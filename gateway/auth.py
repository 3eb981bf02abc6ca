"""Who the gateway's clients are and what they may do: credentials become grants
(`amqp_core.grants`) before anything touches AMQP.

- API keys (`--api-keys FILE`), in the ``X-API-Key`` header. The file maps each key's
  SHA-256 hash to its grants, and is re-read on SIGHUP (`Auth.reload`): a stream whose
  key is gone is closed (WebSocket close code 4401, an SSE ``error`` event), one whose
  grant no longer reaches its address too (4403), and a ticket issued to a key that is
  gone no longer opens anything.
- Bearer tokens (``Authorization: Bearer``), JWTs checked by `gateway.tokens`.
- Tickets, for browsers: ``new WebSocket()`` and ``EventSource`` cannot send headers, so
  a page asks ``POST /auth/tickets`` (with its key or token in a header) for a ticket,
  and opens its stream with ``?ticket=``. A ticket opens one stream, within 30 s: the
  URL that carries it (and lands in access logs) is worth nothing afterwards, unlike a
  key in a URL.

Every route calls `Auth.authorize` with its action and address before it attaches a
link or sends: no credential, or an unknown one, is a 401 with ``WWW-Authenticate``; an
address outside the grant is a 403 naming the action and the address. The gateway's
own reply addresses are refused whatever the grant (403): only the gateway consumes its
replies, and only services answer on them. Refusals are counted in
``gateway_auth_refusals_total`` by reason.

Without --api-keys or --jwt-*, authentication is off: every client gets `ANONYMOUS`,
which may do anything but reach the reply addresses (`gateway.__main__` allows that only
on a loopback --http, or with --insecure).

Why SHA-256 and not a slow hash: API keys are 256 random bits (`python -m gateway.keys`
makes them), so no amount of hashing speed lets anyone find a key from its hash;
slow hashes (bcrypt, Argon2) protect passwords, which are guessable, and would cost
every request tens of milliseconds. A presented key is hashed and looked up by its
hash, then compared with `hmac.compare_digest`: the time taken says nothing about the
stored hashes that an attacker could use to build a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection

from amqp_core.grants import Credential, Grants, GrantsError
from gateway.metrics import Metrics
from gateway.problems import ProblemError
from gateway.settings import Settings
from gateway.tokens import InvalidToken, TokenConfigError, TokenVerifier

log = logging.getLogger(__name__)

#: Seconds a ticket stays valid: enough for a page to open its stream, too short for a
#: ticket read from a log to be of use (and it opens one stream only).
TICKET_LIFETIME = 30.0
#: Most tickets outstanding; beyond it the oldest are forgotten.
MAX_TICKETS = 100_000
#: Open streams reviewed between two turns of the event loop after a reload.
REVIEW_SLICE = 500

#: The client of a gateway without authentication: anything but the reply addresses.
ANONYMOUS = Credential(name="anonymous", kind="anonymous", grants=Grants.everything())

#: WebSocket close codes of a refused or revoked stream (RFC 6455 7.4.2: 4000-4999 are
#: the application's): 4401 no valid credential, 4403 not granted, as HTTP's 401, 403.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403

#: The OpenAPI document's security schemes, and the `security` of a route that asks
#: for credentials (when authentication is on): either scheme will do.
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}
SECURED: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]

HASH_PREFIX = "sha256:"
REALM = "amqp-gateway"


class AuthConfigError(Exception):
    """A key file or token setting the gateway cannot use; the text says which."""


class AuthRefused(ProblemError):
    """A 401 or 403, and the close code that says the same to a WebSocket."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str]) -> None:
        super().__init__(status, title, detail, headers=headers or None)
        self.close_code = CLOSE_UNAUTHENTICATED if status == 401 else CLOSE_FORBIDDEN


def hash_key(key: str) -> str:
    """How the key file stores `key`: "sha256:" and the hex SHA-256 of its UTF-8 bytes."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


# -- API keys -----------------------------------------------------------------------------


class ApiKeys:
    """The API key file: ``{"sha256:<hex>": {"name": ..., "send": [...], ...}}``, each
    entry a key's hash, an optional name (for logs and metrics; by default "key:" and
    the first 8 hex digits of the hash) and its grants."""

    def __init__(self, credentials: dict[bytes, Credential]) -> None:
        self._by_digest = credentials

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def read(cls, path: Path) -> ApiKeys:
        """The keys in `path`; AuthConfigError saying what is wrong with it."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise AuthConfigError(f"cannot read the API key file {path}: {error}") from None
        try:
            entries = json.loads(text)
        except ValueError as error:
            raise AuthConfigError(f"the API key file {path} is not JSON: {error}") from None
        try:
            return cls.from_json(entries)
        except (GrantsError, ValueError) as error:
            raise AuthConfigError(f"the API key file {path}: {error}") from None

    @classmethod
    def from_json(cls, entries: Any) -> ApiKeys:
        if not isinstance(entries, dict):
            raise ValueError('an object {"sha256:<hex>": {grants}, ...} is expected')
        credentials: dict[bytes, Credential] = {}
        for number, (hashed, entry) in enumerate(entries.items(), start=1):
            digest = _digest_of(hashed)
            if digest is None:
                raise ValueError(
                    f"entry {number} is not named by a key's hash, sha256:<64 hex digits> "
                    "(`python -m gateway.keys` makes a key and its hash)"
                )
            short = f"key:{digest.hex()[:8]}"
            if not isinstance(entry, dict):
                raise ValueError(f"{short}: its grants are an object, not {entry!r}")
            grants = dict(entry)
            name = grants.pop("name", short)
            if not isinstance(name, str) or not name:
                raise ValueError(f"{short}: its name is a string, not {name!r}")
            credentials[digest] = Credential(
                name=name,
                kind="api-key",
                grants=Grants.from_json(grants, owner=name),
                source=hashed.lower(),
            )
        return cls(credentials)

    def find(self, key: str) -> Credential | None:
        """The credential of a presented key, or None."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        credential = self._by_digest.get(digest)
        if credential is None:
            return None
        # The look-up compared hashes already; this compares them in constant time.
        stored = bytes.fromhex(credential.source.removeprefix(HASH_PREFIX))
        return credential if hmac.compare_digest(stored, digest) else None

    def by_source(self, source: str) -> Credential | None:
        """The current credential of the key stored as `source` ("sha256:<hex>")."""
        digest = _digest_of(source)
        return self._by_digest.get(digest) if digest is not None else None


def _digest_of(hashed: str) -> bytes | None:
    hex_digits = hashed.removeprefix(HASH_PREFIX)
    if hex_digits == hashed or len(hex_digits) != 64:
        return None
    try:
        return bytes.fromhex(hex_digits)
    except ValueError:
        return None


# -- tickets ------------------------------------------------------------------------------


class Tickets:
    """Single-use tickets that stand for a credential for `lifetime` seconds. They are
    kept by their hash, oldest first (all live as long), so that expired ones are
    dropped from the front as new ones are issued."""

    def __init__(self, lifetime: float = TICKET_LIFETIME, limit: int = MAX_TICKETS) -> None:
        self.lifetime = lifetime
        self._limit = limit
        self._issued: OrderedDict[bytes, tuple[float, Credential]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._issued)

    def issue(self, credential: Credential, now: float) -> tuple[str, float]:
        """A new ticket for `credential` and the seconds it is valid for."""
        issued = self._issued
        while issued and next(iter(issued.values()))[0] <= now:
            issued.popitem(last=False)
        while len(issued) >= self._limit:
            issued.popitem(last=False)
        ticket = secrets.token_urlsafe(32)
        expires = now + self.lifetime
        if credential.expires is not None:
            expires = min(expires, credential.expires)
        issued[_ticket_digest(ticket)] = (expires, credential)
        return ticket, max(0.0, expires - now)

    def redeem(self, ticket: str, now: float) -> Credential | None:
        """The credential of a valid ticket, which is used up; None if there is none."""
        found = self._issued.pop(_ticket_digest(ticket), None)
        if found is None or found[0] <= now:
            return None
        return found[1]


def _ticket_digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf-8", "surrogateescape")).digest()


# -- open streams -------------------------------------------------------------------------


class OpenStreams:
    """The streams open now, with the credential each was opened with, so that a reload
    of the keys can close those no longer allowed, and a stream opened with a token is
    closed when the token expires."""

    def __init__(self, on_expiry: Callable[[], None]) -> None:
        self._open: dict[int, tuple[Credential, str, Callable[[AuthRefused], None]]] = {}
        self._expiries: dict[int, asyncio.TimerHandle] = {}
        self._ids = iter(range(1, 1 << 62))
        self._on_expiry = on_expiry

    def __len__(self) -> int:
        return len(self._open)

    def watch(
        self, credential: Credential, address: str, revoke: Callable[[AuthRefused], None]
    ) -> int:
        """Watch a stream receiving from `address`; `revoke` closes it with a problem.
        Returns the handle to `forget` it by when it closes."""
        handle = next(self._ids)
        self._open[handle] = (credential, address, revoke)
        if credential.expires is not None:
            delay = max(0.0, credential.expires - time.time())
            loop = asyncio.get_running_loop()
            self._expiries[handle] = loop.call_later(delay, self._expire, handle)
        return handle

    def forget(self, handle: int) -> None:
        self._open.pop(handle, None)
        expiry = self._expiries.pop(handle, None)
        if expiry is not None:
            expiry.cancel()

    def _expire(self, handle: int) -> None:
        del self._expiries[handle]
        credential, _, revoke = self._open.pop(handle)
        self._on_expiry()
        revoke(_unauthenticated(f"the token of {credential.name} expired"))

    async def review(self, keys: ApiKeys) -> int:
        """Close the streams opened with a key that is gone, or whose grant no longer
        reaches their address; a slice at a time. Returns how many were closed."""
        closed = 0
        for number, (handle, (credential, address, revoke)) in enumerate(
            list(self._open.items()), start=1
        ):
            if number % REVIEW_SLICE == 0:
                await asyncio.sleep(0)
            if credential.kind != "api-key" or handle not in self._open:
                continue
            current = keys.by_source(credential.source)
            if current is None:
                refusal = _unauthenticated(f"the API key {credential.name} was revoked")
            elif not current.grants.allows("receive", address):
                refusal = _forbidden(current, "receive", address, "no longer granted")
            else:
                continue
            self.forget(handle)
            closed += 1
            revoke(refusal)
        return closed


# -- the gateway's authentication ---------------------------------------------------------


class Auth:
    """Authentication and authorization of one gateway app (see the module's docstring)."""

    def __init__(
        self, settings: Settings, metrics: Metrics, is_reply_address: Callable[[str], bool]
    ) -> None:
        self.settings = settings
        self.enabled = settings.authentication
        self._metrics = metrics
        self._is_reply_address = is_reply_address
        self.keys: ApiKeys | None = None
        self.tokens: TokenVerifier | None = None
        self.tickets = Tickets()
        self.streams = OpenStreams(lambda: self.count_refusal("expired-token"))
        self._refusals: dict[str, Any] = {}
        challenges = []
        if settings.jwt_secret_file or settings.jwt_jwks:
            challenges.append(f'Bearer realm="{REALM}"')
        if settings.api_keys:
            challenges.append(f'ApiKey realm="{REALM}", header="X-API-Key"')
        self.challenge = ", ".join(challenges)

    async def start(self) -> None:
        """Read the key file and the token settings; AuthConfigError if one is unusable."""
        settings = self.settings
        if settings.api_keys is not None:
            self.keys = await asyncio.to_thread(ApiKeys.read, settings.api_keys)
            log.info("%d API keys read from %s", len(self.keys), settings.api_keys)
        if settings.jwt_secret_file or settings.jwt_jwks:
            try:
                self.tokens = await TokenVerifier.start(settings)
            except TokenConfigError as error:
                raise AuthConfigError(str(error)) from None

    async def reload(self) -> None:
        """Re-read the key file (and a JWKS file), on SIGHUP. A file that cannot be read
        leaves the keys as they were, and the log says why. Then close the streams that
        the new keys no longer allow."""
        settings = self.settings
        if self.tokens is not None:
            await self.tokens.reload()
        if settings.api_keys is None:
            return
        try:
            keys = await asyncio.to_thread(ApiKeys.read, settings.api_keys)
        except AuthConfigError as error:
            log.error("%s; the API keys read before are kept", error)
            return
        self.keys = keys
        closed = await self.streams.review(keys)
        if closed:
            self.count_refusal("revoked", closed)
        log.info(
            "%d API keys read again from %s; %d streams closed",
            len(keys),
            settings.api_keys,
            closed,
        )

    # -- answering ----------------------------------------------------------------------

    async def authenticate(
        self, connection: HTTPConnection, *, tickets: bool = False
    ) -> Credential:
        """The credential `connection` presents (`tickets`: a ``?ticket=`` counts);
        AuthRefused (401) if it presents none or one that is not valid."""
        if not self.enabled:
            return ANONYMOUS
        headers = connection.headers
        key = headers.get("x-api-key")
        if key is not None:
            credential = self.keys.find(key) if self.keys is not None else None
            if credential is None:
                raise self._refused("unknown-key", _unauthenticated("the API key is not known"))
            return credential
        authorization = headers.get("authorization")
        if authorization is not None:
            return await self._bearer(authorization)
        ticket = connection.query_params.get("ticket") if tickets else None
        if ticket is not None:
            return self._redeem(ticket)
        ways = "an X-API-Key header" if self.keys is not None else "no API key"
        if self.tokens is not None:
            ways += ", an Authorization: Bearer token"
        if tickets:
            ways += ", or a ?ticket= from POST /auth/tickets"
        raise self._refused("missing", _unauthenticated(f"credentials are required: {ways}"))

    def check(self, credential: Credential, action: str, address: str) -> None:
        """AuthRefused (403) unless `credential` may do `action` on `address`."""
        if self._is_reply_address(address):
            raise self._refused(
                "reply-address",
                AuthRefused(
                    403,
                    "Forbidden",
                    f"{address!r} is where this gateway receives replies: no client may "
                    f"{action} there",
                    {},
                ),
            )
        if not credential.grants.allows(action, address):
            raise self._refused("not-granted", _forbidden(credential, action, address))

    async def authorize(
        self, connection: HTTPConnection, action: str, address: str, *, tickets: bool = False
    ) -> Credential:
        """`authenticate`, then `check`: the credential that may do `action` on `address`."""
        credential = await self.authenticate(connection, tickets=tickets)
        self.check(credential, action, address)
        return credential

    def count_refusal(self, reason: str, count: int = 1) -> None:
        counter = self._refusals.get(reason)
        if counter is None:
            counter = self._refusals[reason] = self._metrics.auth_refusals.labels(reason)
        counter.inc(count)

    def _refused(self, reason: str, refusal: AuthRefused) -> AuthRefused:
        self.count_refusal(reason)
        if refusal.problem.status == 401 and refusal.headers is None and self.challenge:
            refusal.headers = {"WWW-Authenticate": self.challenge}
        return refusal

    async def _bearer(self, authorization: str) -> Credential:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or self.tokens is None:
            accepted = "Bearer tokens" if self.tokens is not None else "X-API-Key only"
            raise self._refused(
                "unsupported-scheme",
                _unauthenticated(
                    f"the Authorization scheme {scheme[:20]!r} is not accepted: {accepted}"
                ),
            )
        try:
            return await self.tokens.credential(token.strip())
        except InvalidToken as error:
            challenge = (
                f'Bearer realm="{REALM}", error="invalid_token", '
                f'error_description="{error.description}"'
            )
            raise self._refused(
                error.reason,
                _unauthenticated(f"the bearer token {error}", challenge),
            ) from None

    def _redeem(self, ticket: str) -> Credential:
        now = time.time()
        credential = self.tickets.redeem(ticket, now)
        if credential is not None and credential.kind == "api-key":
            # Issued before the keys were read again: the key's grants as they are now.
            credential = self.keys.by_source(credential.source) if self.keys else None
        if credential is None:
            raise self._refused(
                "bad-ticket",
                _unauthenticated(
                    "the ticket is not valid: it was used, it expired, or its key was "
                    "revoked; ask POST /auth/tickets for another",
                ),
            )
        return credential


def _unauthenticated(detail: str, challenge: str = "") -> AuthRefused:
    """A 401; `Auth._refused` gives it the gateway's challenges unless it has one."""
    return AuthRefused(
        401, "Unauthorized", detail, {"WWW-Authenticate": challenge} if challenge else {}
    )


def _forbidden(
    credential: Credential, action: str, address: str, how: str = "not granted"
) -> AuthRefused:
    return AuthRefused(
        403, "Forbidden", f"{credential.name} may not {action} {address!r}: {how}", {}
    )
