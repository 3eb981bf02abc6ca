"""The gateway's settings: one object, filled from command-line flags (``--amqp-url``),
environment variables (``GATEWAY_AMQP_URL``) or a test's keyword arguments, in that
order of precedence."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from amqp_core.broker.queues import MESSAGE_OVERHEAD

#: The smallest body limit allowed: the issue asks for at least 1 MB by default, and a
#: smaller one would turn ordinary JSON payloads away.
MEBIBYTE = 1024 * 1024


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """("host", port) from "host:port", "[v6]:port", "host" or ":port"."""
    host, _, port = value.rpartition(":")
    if not host and not port.isdigit():
        host, port = port, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if port and not port.isdigit():
        raise ValueError(f"not HOST:PORT: {value!r}")
    if port and int(port) > 65535:
        raise ValueError(f"port {port} is out of range: 0 to 65535")
    return host or "127.0.0.1", int(port) if port else default_port


class Settings(BaseSettings):
    """Every setting of `amqp-gateway`; each is also an environment variable
    GATEWAY_<NAME> (for example GATEWAY_AMQP_URL)."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        cli_prog_name="amqp-gateway",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_exit_on_error=False,
        extra="ignore",
    )

    http: str = Field("127.0.0.1:8080", description="HOST:PORT the HTTP server listens on")
    amqp_url: str | None = Field(
        None,
        description="broker to use, amqp[s]://[user:pass@]host:port; none: run the "
        "embedded broker in this process",
    )
    amqp_listen: str = Field(
        "localhost:5672",
        description="HOST:PORT the embedded broker listens on for AMQP clients "
        "(only without --amqp-url)",
    )
    data_dir: Path | None = Field(
        None,
        description="folder of the embedded broker's durable message store "
        "(default: messages stay in memory)",
    )
    max_memory: int | None = Field(
        None,
        ge=1,
        description="bound in bytes on the memory the embedded broker's queued messages "
        f"take (each counted as its size plus {MESSAGE_OVERHEAD} bytes); beyond it, "
        "further messages of a queue stay in the --data-dir store only and are read back "
        "as consumers catch up (needs --data-dir; default: no bound)",
    )
    send_timeout: float = Field(
        10.0, gt=0, description="seconds to wait for the broker's outcome of a POST (504 after)"
    )
    attach_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a stream or long-poll waits for the broker to attach its "
        "receiver (503 after)",
    )
    request_timeout: float = Field(
        30.0, gt=0, description="default seconds to wait for a reply to POST /requests"
    )
    max_request_timeout: float = Field(
        300.0, gt=0, description="longest Request-Timeout or ?timeout a client may ask for"
    )
    max_body: int = Field(
        MEBIBYTE, ge=MEBIBYTE, description="largest request body in bytes (413 beyond it)"
    )
    stream_credit: int = Field(
        10, ge=1, description="default window of unacknowledged messages per stream"
    )
    max_stream_credit: int = Field(
        1000, ge=1, description="largest window a stream client may ask for with ?credit"
    )
    max_poll_count: int = Field(100, ge=1, description="most messages one long-poll GET takes")
    max_poll_timeout: float = Field(60.0, gt=0, description="longest wait of a long-poll GET")
    idempotency_window: float = Field(
        600.0, ge=0, description="seconds an Idempotency-Key's first result is remembered"
    )
    idempotency_keys: int = Field(
        10_000, ge=0, description="most Idempotency-Keys remembered at a time"
    )
    sse_keepalive: float = Field(15.0, gt=0, description="seconds between SSE keep-alive comments")
    max_header_size: int = Field(
        16 * 1024,
        ge=1024,
        description="largest request head (request line and headers) in bytes; a larger "
        "one is answered 431 and the connection closed",
    )
    max_headers: int = Field(
        100, ge=1, description="most header fields in one request (431 beyond them)"
    )
    header_timeout: float = Field(
        20.0,
        gt=0,
        description="seconds a connection has to send a request's head, from its opening "
        "or the previous answer (408 and closed after)",
    )
    body_timeout: float = Field(
        20.0,
        gt=0,
        description="longest pause, in seconds, while a request's body comes in (the "
        "connection is closed after)",
    )
    keep_alive_timeout: int = Field(
        5, ge=1, description="seconds an idle keep-alive connection stays open"
    )
    max_ws_message: int = Field(
        1024 * 1024,
        ge=1024,
        description="largest WebSocket message a client may send (acknowledgements are a "
        "few dozen bytes); a larger one closes the socket with 1009",
    )
    ws_ping_interval: float = Field(
        20.0,
        gt=0,
        description="seconds between WebSocket pings; a client that does not answer one "
        "within as long again is dropped and its stream closed",
    )
    ws_compression: bool = Field(
        False,
        description="accept permessage-deflate from WebSocket clients (browsers offer it): "
        "about 34 KiB more per stream for the compressor's state",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS (none by default; * for any)"
    )
    insecure: bool = Field(
        False,
        description="serve without authentication on an address other than loopback "
        "(refused otherwise: give --api-keys or --jwt-* instead)",
    )
    api_keys: Path | None = Field(
        None,
        description="JSON file of API keys, as hashes, and their grants (re-read on "
        "SIGHUP); clients send a key in X-API-Key",
    )
    jwt_secret_file: Path | None = Field(
        None, description="file holding the secret that HS256 bearer tokens are signed with"
    )
    jwt_jwks: str | None = Field(
        None,
        description="JWKS file or http(s) URL of the keys that RS256 and ES256 bearer "
        "tokens are signed with (a URL is cached, and fetched again for an unknown key id)",
    )
    jwt_issuer: str | None = Field(None, description="the iss a bearer token must carry")
    jwt_audience: str | None = Field(None, description="the aud a bearer token must carry")
    jwt_grants_claim: str = Field(
        "scope",
        description="the claim (a dotted path) holding a token's grants: an object "
        '{"send": [...], ...}, or scopes such as "send:orders/*"',
    )
    jwt_leeway: float = Field(
        10.0, ge=0, le=300, description="seconds of clock skew allowed on exp and nbf"
    )
    jwks_min_refresh: float = Field(
        30.0,
        gt=0,
        description="fewest seconds between two fetches of the JWKS URL prompted by "
        "unknown key ids",
    )
    protect_metrics: bool = Field(
        False, description="/metrics asks for credentials too (with authentication on)"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values served, e.g. '[\"gw.example\"]' (default: the "
        "loopback names on a loopback --http, else any)",
    )
    log_level: str = Field("info", description="critical, error, warning, info or debug")
    log_format: str = Field("json", description="json (one object per line) or text")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("critical", "error", "warning", "info", "debug"):
            raise ValueError("one of critical, error, warning, info, debug")
        return value

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in ("json", "text"):
            raise ValueError("json or text")
        return value

    @field_validator("http", "amqp_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_host_port(value, 0)
        return value

    @field_validator("max_memory")
    @classmethod
    def _with_data_dir(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("data_dir") is None:
            raise ValueError("needs --data-dir: messages beyond it are kept there")
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("amqp://", "amqps://")):
            raise ValueError("an amqp:// or amqps:// URL")
        return value

    @property
    def authentication(self) -> bool:
        """Whether clients must present credentials."""
        return bool(self.api_keys or self.jwt_secret_file or self.jwt_jwks)

    @property
    def loopback(self) -> bool:
        """Whether --http names a loopback address (only this machine can connect)."""
        return is_loopback(split_host_port(self.http, 0)[0])


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything
