"""SASL for AMQP 1.0 (spec part 5.3): mechanism choice and the exchange, sans-IO.

The client supports ANONYMOUS, PLAIN and EXTERNAL; the server offers ANONYMOUS and
PLAIN and asks a pluggable `authenticator` whether a PLAIN user may in. `Transport`
drives these objects with the SASL frames it reads and writes what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import spec
from ..types import Array, symbol

__all__ = ["SASL", "SaslFailure"]

Authenticator = Callable[[str, str], bool]


class SaslFailure(Exception):
    """The exchange cannot go on: no common mechanism, a malformed response, ..."""


class SASL:
    """The SASL layer of one transport (Proton's `transport.sasl()`)."""

    OK = 0
    AUTH = 1
    SYS = 2
    PERM = 3
    TEMP = 4

    CLIENT_MECHANISMS = ("EXTERNAL", "PLAIN", "ANONYMOUS")
    SERVER_MECHANISMS = ("PLAIN", "ANONYMOUS")

    def __init__(self) -> None:
        self._allowed: list[str] | None = None
        self.user: str | None = None
        self.password: str | None = None
        self.hostname: str | None = None
        self.mech: str | None = None
        self.outcome: int | None = None
        self.authenticated_user: str | None = None
        #: Server side: decides PLAIN logins; None lets nobody in with PLAIN.
        self.authenticator: Authenticator | None = None
        #: Server side: whether clients may log in as ANONYMOUS.
        self.allow_anonymous = True

    def allowed_mechs(self, mechanisms: str | Iterable[str]) -> None:
        """Limit the mechanisms to these (a space-separated string, as in Proton)."""
        names = mechanisms.split() if isinstance(mechanisms, str) else list(mechanisms)
        self._allowed = [name.upper() for name in names]

    def _permitted(self, supported: tuple[str, ...]) -> list[str]:
        if self._allowed is None:
            return list(supported)
        return [name for name in supported if name in self._allowed]

    # -- client ---------------------------------------------------------------------------

    def client_init(self, offered: Any) -> Any:
        """Pick a mechanism from the server's offer; return the sasl-init frame."""
        offered_names = {str(name).upper() for name in _as_list(offered)}
        candidates = [
            name for name in self._permitted(self.CLIENT_MECHANISMS) if name in offered_names
        ]
        if self._allowed is None or "EXTERNAL" not in self._allowed:
            # EXTERNAL means "the TLS certificate is my identity": only when asked for.
            candidates = [name for name in candidates if name != "EXTERNAL"]
        if self.user is None or self.password is None:
            candidates = [name for name in candidates if name != "PLAIN"]
        if not candidates:
            raise SaslFailure(
                f"no common SASL mechanism: the server offers {sorted(offered_names)}"
            )
        self.mech = candidates[0]
        response: bytes | None
        if self.mech == "PLAIN":
            assert self.user is not None and self.password is not None
            response = b"\0" + self.user.encode("utf-8") + b"\0" + self.password.encode("utf-8")
        elif self.mech == "ANONYMOUS":
            response = b"anonymous"
        else:
            response = b""
        return spec.SaslInit(
            mechanism=symbol(self.mech), initial_response=response, hostname=self.hostname
        )

    def client_outcome(self, outcome: Any) -> bool:
        self.outcome = int(outcome.code)
        return self.outcome == SASL.OK

    # -- server ---------------------------------------------------------------------------

    def server_mechanisms(self) -> Any:
        names = self._permitted(self.SERVER_MECHANISMS)
        if not self.allow_anonymous:
            names = [name for name in names if name != "ANONYMOUS"]
        return spec.SaslMechanisms(sasl_server_mechanisms=[symbol(name) for name in names])

    def server_outcome(self, init: Any) -> Any:
        """Judge a sasl-init; return the sasl-outcome frame to send."""
        mechanism = str(init.mechanism).upper()
        offered = [str(name) for name in self.server_mechanisms().sasl_server_mechanisms]
        self.mech = mechanism
        code = SASL.AUTH
        if mechanism not in offered:
            code = SASL.AUTH
        elif mechanism == "ANONYMOUS":
            code = SASL.OK
            self.authenticated_user = "anonymous"
        elif mechanism == "PLAIN":
            credentials = _parse_plain(init.initial_response or b"")
            if credentials is not None and self.authenticator is not None:
                user, password = credentials
                if self.authenticator(user, password):
                    code = SASL.OK
                    self.authenticated_user = user
        self.outcome = code
        return spec.SaslOutcome(code=code)


def _parse_plain(response: bytes) -> tuple[str, str] | None:
    """Split a PLAIN response (RFC 4616: authzid NUL authcid NUL password)."""
    parts = response.split(b"\0")
    if len(parts) != 3:
        return None
    try:
        return parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, Array)):
        return list(value)
    return [value]
