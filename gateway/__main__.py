"""`amqp-gateway` (or `python -m gateway`): run the gateway under uvicorn, with the
embedded broker unless --amqp-url names another one. Every flag is also an environment
variable: --amqp-url is GATEWAY_AMQP_URL.

A failure to start is one line on stderr that names the problem and the flag to change,
and an exit code per kind (`EXIT_CODES`), so that a supervisor or a script can tell them
apart."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import socket
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError
from pydantic_settings import CliSettingsSource, SettingsError

from amqp_core.broker.store import StoreError
from amqp_core.cli import (
    EXIT_BAD_OPTION,
    EXIT_CANNOT_LISTEN,
    EXIT_DATA_DIR,
    OneLineParser,
    StartupFailure,
    run,
)
from gateway.amqp import EmbeddedBrokerError
from gateway.app import create_app
from gateway.auth import AuthConfigError
from gateway.logs import configure_logging
from gateway.serving import uvicorn_config
from gateway.settings import Settings, split_host_port
from gateway.state import Gateway

PROGRAM = "amqp-gateway"

log = logging.getLogger("gateway")

#: The gateway's own exit code; the others are amqp_core.cli's.
EXIT_BROKER_FAILED = 5

EXIT_CODES = f"""\
exit codes:
  0  stopped (SIGTERM or Ctrl-C)
  {EXIT_BAD_OPTION}  a flag or GATEWAY_* variable is unknown or has a bad value, a key file
     or token setting is unusable, or --http is not loopback and there is no authentication
  {EXIT_CANNOT_LISTEN}  cannot listen on --http or --amqp-listen (in use, not allowed, not local)
  {EXIT_DATA_DIR}  --data-dir is used by another broker or gateway, or cannot be used
  {EXIT_BROKER_FAILED}  the embedded broker failed to start for another reason
"""


def read_settings(arguments: Sequence[str] | None) -> Settings:
    """The settings from these flags (None: the command line) and the environment;
    StartupFailure naming the flag and its variable if one is wrong."""
    parser = OneLineParser(
        prog=PROGRAM, description=inspect.cleandoc(Settings.__doc__ or ""), epilog=EXIT_CODES
    )
    flags: CliSettingsSource[Settings] = CliSettingsSource(Settings, root_parser=parser)
    try:
        return Settings(
            _cli_settings_source=flags(args=True if arguments is None else list(arguments))
        )
    except SettingsError as error:
        reason = str(error).removeprefix("error parsing CLI: ")
        raise StartupFailure(EXIT_BAD_OPTION, reason) from None
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False):
            name = str(problem["loc"][0]) if problem["loc"] else "settings"
            message = problem["msg"].removeprefix("Value error, ")
            given = repr(problem["input"])[:60]
            problems.append(
                f"--{name.replace('_', '-')} {given} (or GATEWAY_{name.upper()}): {message}"
            )
        raise StartupFailure(EXIT_BAD_OPTION, "; ".join(problems)) from None


def listen(address: str) -> socket.socket:
    """A socket bound to the HTTP address (uvicorn listens on it), or StartupFailure."""
    host, port = split_host_port(address, 8080)
    try:
        family, kind, protocol, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        server = socket.socket(family, kind, protocol)
    except OSError as error:
        raise _cannot_listen(address, error) from None
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(where)
    except OSError as error:
        server.close()
        raise _cannot_listen(address, error) from None
    return server


def _cannot_listen(address: str, error: OSError) -> StartupFailure:
    return StartupFailure(
        EXIT_CANNOT_LISTEN,
        f"cannot listen for HTTP on {address}: {error.strerror or error}; stop what listens "
        "there or choose another address with --http HOST:PORT",
    )


def require_authentication(settings: Settings) -> None:
    """StartupFailure unless clients must authenticate, --http is loopback (only this
    machine can connect), or --insecure says to serve anyone."""
    if settings.authentication or settings.loopback:
        return
    if not settings.insecure:
        raise StartupFailure(
            EXIT_BAD_OPTION,
            f"--http {settings.http} is not a loopback address and no authentication is "
            "configured: give --api-keys FILE or --jwt-jwks/--jwt-secret-file, or pass "
            "--insecure to serve anyone who can connect",
        )
    log.warning(
        "--insecure: serving %s without authentication: anyone who can connect may send, "
        "receive and call anything",
        settings.http,
    )


def reload_on_sighup(gateway: Gateway) -> None:
    """Re-read the API keys (and a JWKS file) on SIGHUP, without dropping connections."""
    settings = gateway.settings
    if settings.api_keys is None and settings.jwt_jwks is None:
        return
    loop = asyncio.get_running_loop()
    reloading: set[asyncio.Task[None]] = set()

    def reload() -> None:
        log.info("SIGHUP: reading the keys again")
        task = loop.create_task(gateway.auth.reload())
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)


async def serve(gateway: Gateway, config: uvicorn.Config, http_socket: socket.socket) -> None:
    """Start the gateway (its broker first), then serve HTTP until SIGTERM or Ctrl-C."""
    try:
        await gateway.start()
    except AuthConfigError as error:
        raise StartupFailure(EXIT_BAD_OPTION, str(error)) from None
    except EmbeddedBrokerError as error:
        cause = error.__cause__
        if isinstance(cause, StoreError):
            raise StartupFailure(
                EXIT_DATA_DIR,
                f"{error}; stop the broker or gateway using it, or choose another folder "
                "with --data-dir DIR",
            ) from None
        code = EXIT_CANNOT_LISTEN if isinstance(cause, OSError) else EXIT_BROKER_FAILED
        raise StartupFailure(code, str(error)) from None
    reload_on_sighup(gateway)
    await uvicorn.Server(config).serve(sockets=[http_socket])


def main(arguments: Sequence[str] | None = None) -> None:
    run(PROGRAM, lambda: _serve_from(arguments))


def _serve_from(arguments: Sequence[str] | None) -> None:
    settings = read_settings(arguments)
    configure_logging(settings.log_level, settings.log_format)
    require_authentication(settings)
    app = create_app(settings)
    config = uvicorn_config(app, settings)
    http_socket = listen(settings.http)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve(app.state.gateway, config, http_socket))


if __name__ == "__main__":
    main(sys.argv[1:])
