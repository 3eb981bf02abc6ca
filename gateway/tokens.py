"""Bearer tokens: OAuth 2 / OpenID Connect access tokens (JWTs, as Keycloak issues
them) checked with PyJWT, and turned into a credential whose grants come from a claim.

- HS256 tokens are checked with the secret in --jwt-secret-file; RS256 and ES256 ones
  with the key their header's ``kid`` names in the JWKS of --jwt-jwks (a file, or an
  http(s) URL). A token's algorithm must match its key's: a public key is never used
  as an HMAC secret.
- A JWKS URL is fetched at start and kept. A token whose ``kid`` is not among the keys
  fetches it again (an identity provider rotates its keys), but at most once in
  --jwks-min-refresh seconds, so that a flood of made-up key ids cannot hammer the
  identity provider; concurrent requests share one fetch. The set is also fetched again
  once it is older than `JWKS_MAX_AGE`, so that a key withdrawn there stops working here.
- ``exp``, ``iss`` and ``aud`` are required and checked (--jwt-issuer, --jwt-audience),
  ``nbf`` when present, each with --jwt-leeway seconds for clock skew.
- The grants are in the claim --jwt-grants-claim (a dotted path: ``realm_access.roles``
  reads Keycloak's realm roles): an object ``{"send": [...], ...}``, or scope strings
  such as ``send:orders/*``, space separated (the ``scope`` claim) or a list. Other
  scopes (``openid``, ``profile``) are not grants and are left out.
- A verified token is kept, by its hash, until it expires, so that a client sending the
  same token with each request is checked once (PyJWT takes 150-200 µs a token). It is
  checked again if its key has left the key set, or the set is due to be fetched again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jwt

from amqp_core.grants import Credential, Grants, GrantsError
from gateway.settings import Settings

log = logging.getLogger(__name__)

#: The algorithms accepted from a JWKS, and with a shared secret.
KEY_ALGORITHMS = ("RS256", "ES256")
SECRET_ALGORITHM = "HS256"
#: Seconds after which a JWKS fetched from a URL is fetched again before use.
JWKS_MAX_AGE = 3600.0
#: Seconds to wait for the JWKS URL to answer, and the most bytes read from it.
JWKS_FETCH_TIMEOUT = 10.0
JWKS_MAX_BYTES = 1024 * 1024
#: Shortest HS256 secret accepted, in bytes (RFC 7518 3.2: at least the hash's size).
MIN_SECRET_BYTES = 32
#: Verified tokens kept; the least recently used goes first.
MAX_VERIFIED_TOKENS = 10_000


class TokenConfigError(Exception):
    """Token settings the gateway cannot use; the text names the flag."""


class InvalidToken(Exception):
    """A token that is not accepted: `reason` labels the refusal in the metrics
    ("invalid-token", "expired-token"), `description` goes in WWW-Authenticate."""

    def __init__(self, description: str, reason: str = "invalid-token") -> None:
        super().__init__(description)
        # It goes in a header: printable ASCII only, and no quote to end the value early.
        printable = description.encode("ascii", "backslashreplace").decode("ascii")
        self.description = "".join(c if " " <= c <= "~" else "?" for c in printable)
        self.description = self.description.replace('"', "'")
        self.reason = reason


class KeySet:
    """The keys of a JWKS file or URL, by key id."""

    def __init__(self, location: str, min_refresh: float) -> None:
        self.location = location
        self.is_url = location.startswith(("http://", "https://"))
        self._min_refresh = min_refresh
        self._keys: list[jwt.PyJWK] = []
        self._fetched_at = float("-inf")
        self._fetching: asyncio.Task[None] | None = None
        self.fetches = 0

    async def load(self) -> None:
        """Read the file (TokenConfigError if unusable) or fetch the URL (a failure is
        logged: tokens are refused until a fetch works)."""
        if not self.is_url:
            try:
                self._keys = await asyncio.to_thread(_read_jwks_file, Path(self.location))
            except ValueError as error:
                raise TokenConfigError(f"--jwt-jwks {self.location}: {error}") from None
            return
        await self._refresh()

    async def reload(self) -> None:
        """Read a JWKS file again (SIGHUP); an unusable one keeps the keys it had."""
        if self.is_url:
            return
        try:
            self._keys = await asyncio.to_thread(_read_jwks_file, Path(self.location))
        except ValueError as error:
            log.error("--jwt-jwks %s: %s; the keys read before are kept", self.location, error)

    async def key(self, key_id: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The key for a token's `key_id` and `algorithm`, fetching the URL again if it
        is unknown (within the rate limit) or the keys are old; None if there is none."""
        if self.is_url:
            age = time.monotonic() - self._fetched_at
            found = self._find(key_id, algorithm)
            if age > JWKS_MAX_AGE or (found is None and age >= self._min_refresh):
                await self._refresh()
            else:
                return found
        return self._find(key_id, algorithm)

    def holds(self, key: jwt.PyJWK) -> bool:
        """Whether `key` is still one of the set's, and the set is not due for a fetch."""
        if self.is_url and time.monotonic() - self._fetched_at > JWKS_MAX_AGE:
            return False
        return any(known is key for known in self._keys)

    def _find(self, key_id: str | None, algorithm: str) -> jwt.PyJWK | None:
        candidates = [key for key in self._keys if key.algorithm_name == algorithm]
        if key_id is None:
            # No kid: only a set with one key of the algorithm leaves no doubt.
            return candidates[0] if len(candidates) == 1 else None
        return next((key for key in candidates if key.key_id == key_id), None)

    async def _refresh(self) -> None:
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
        await asyncio.shield(self._fetching)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()  # a failure counts too: it is rate-limited
        self.fetches += 1
        try:
            self._keys = await asyncio.to_thread(_fetch_jwks, self.location)
        except (OSError, ValueError) as error:
            log.warning("cannot fetch the JWKS at %s: %s", self.location, error)
        else:
            log.info("fetched %d keys from the JWKS at %s", len(self._keys), self.location)


def _fetch_jwks(url: str) -> list[jwt.PyJWK]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=JWKS_FETCH_TIMEOUT) as answer:
        data = answer.read(JWKS_MAX_BYTES + 1)
    if len(data) > JWKS_MAX_BYTES:
        raise ValueError(f"over {JWKS_MAX_BYTES} bytes")
    return _keys_of(data)


def _read_jwks_file(path: Path) -> list[jwt.PyJWK]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read it: {error.strerror or error}") from None
    return _keys_of(data)


def _keys_of(data: bytes) -> list[jwt.PyJWK]:
    """The RS256 and ES256 keys of a JWKS document; ValueError if it has none."""
    try:
        document = json.loads(data)
        keys = jwt.PyJWKSet.from_dict(document).keys
    except (ValueError, jwt.PyJWTError, AttributeError, TypeError) as error:
        raise ValueError(f"not a JWKS ({error})") from None
    usable = [key for key in keys if key.algorithm_name in KEY_ALGORITHMS]
    if not usable:
        raise ValueError(f"no {' or '.join(KEY_ALGORITHMS)} key in it")
    return usable


class TokenVerifier:
    """Checks bearer tokens and makes credentials of them (see the module's docstring)."""

    def __init__(self, settings: Settings, secret: bytes | None, keys: KeySet | None) -> None:
        assert settings.jwt_issuer is not None and settings.jwt_audience is not None
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway
        self._claim_path = settings.jwt_grants_claim.split(".")
        self._secret = secret
        self.keys = keys
        self._verified: OrderedDict[bytes, tuple[Credential, Any]] = OrderedDict()

    @classmethod
    async def start(cls, settings: Settings) -> TokenVerifier:
        """A verifier for these settings, its keys loaded; TokenConfigError if unusable."""
        missing = [
            flag
            for flag, value in (
                ("--jwt-issuer", settings.jwt_issuer),
                ("--jwt-audience", settings.jwt_audience),
            )
            if not value
        ]
        if missing:
            raise TokenConfigError(
                f"bearer tokens need {' and '.join(missing)}: without them a token issued "
                "for another service, or by another issuer, would be accepted"
            )
        secret = None
        if settings.jwt_secret_file is not None:
            try:
                secret = settings.jwt_secret_file.read_bytes().strip()
            except OSError as error:
                raise TokenConfigError(
                    f"--jwt-secret-file {settings.jwt_secret_file}: cannot read it: "
                    f"{error.strerror or error}"
                ) from None
            if len(secret) < MIN_SECRET_BYTES:
                raise TokenConfigError(
                    f"--jwt-secret-file {settings.jwt_secret_file}: the secret is "
                    f"{len(secret)} bytes, HS256 needs at least {MIN_SECRET_BYTES}"
                )
        keys = None
        if settings.jwt_jwks is not None:
            keys = KeySet(settings.jwt_jwks, settings.jwks_min_refresh)
            await keys.load()
        return cls(settings, secret, keys)

    async def reload(self) -> None:
        if self.keys is not None:
            await self.keys.reload()

    async def credential(self, token: str) -> Credential:
        """The credential `token` stands for; InvalidToken saying why it is refused."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        verified = self._verified.get(digest)
        if verified is not None:
            credential, key = verified
            if self._still_valid(credential, key):
                self._verified.move_to_end(digest)
                return credential
            del self._verified[digest]
        credential, key = await self._verify(token)
        self._verified[digest] = (credential, key)
        if len(self._verified) > MAX_VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return credential

    def _still_valid(self, credential: Credential, key: Any) -> bool:
        if credential.expires is None or credential.expires <= time.time():
            return False
        return key is self._secret or (self.keys is not None and self.keys.holds(key))

    async def _verify(self, token: str) -> tuple[Credential, Any]:
        """The credential `token` stands for and the key that signed it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("is not a JWT") from None
        algorithm = header.get("alg")
        key: Any
        if algorithm == SECRET_ALGORITHM and self._secret is not None:
            key = self._secret
        elif algorithm in KEY_ALGORITHMS and self.keys is not None:
            key_id = header.get("kid")
            key = await self.keys.key(key_id if isinstance(key_id, str) else None, algorithm)
            if key is None:
                raise InvalidToken(f"is signed with an unknown key (kid {str(key_id)[:40]!r})")
        else:
            raise InvalidToken(f"is signed with {str(algorithm)[:10]!r}, which is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("has expired", "expired-token") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"is not for this audience ({self._audience})") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(f"is not from the issuer {self._issuer}") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"has no {error.claim} claim") from None
        except jwt.PyJWTError as error:
            raise InvalidToken(f"is not valid ({error})") from None
        subject = claims.get("sub") or claims.get("azp") or claims.get("client_id") or "unnamed"
        credential = Credential(
            name=f"jwt:{str(subject)[:100]}",
            kind="jwt",
            grants=self._grants(claims),
            source=f"{self._issuer}#{subject}",
            # PyJWT took `exp` if int() reads it (a string of digits, too).
            expires=float(claims["exp"]) + self._leeway,
        )
        return credential, key

    def _grants(self, claims: dict[str, Any]) -> Grants:
        value: Any = claims
        for part in self._claim_path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return Grants({})
        if isinstance(value, str):
            return Grants.from_scopes(value.split())
        try:
            if isinstance(value, list):
                return Grants.from_scopes(scope for scope in value if isinstance(scope, str))
            return Grants.from_json(value, owner=f"the token's {'.'.join(self._claim_path)} claim")
        except GrantsError as error:
            raise InvalidToken(f"carries grants that cannot be read: {error}") from None
