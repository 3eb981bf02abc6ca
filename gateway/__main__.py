"""`amqp-gateway` (or `python -m gateway`): run the gateway under uvicorn, with the
embedded broker unless --amqp-url names another one. Every flag is also an environment
variable: --amqp-url is GATEWAY_AMQP_URL."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import uvicorn

from gateway.app import SHUTDOWN_GRACE, create_app
from gateway.logs import configure_logging
from gateway.settings import Settings, split_host_port


def main(arguments: Sequence[str] | None = None) -> None:
    settings = Settings(_cli_parse_args=list(arguments) if arguments is not None else True)
    configure_logging(settings.log_level, settings.log_format)
    host, port = split_host_port(settings.http, 8080)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
        # The sans-I/O protocol keeps its pings on timers, not tasks: the least memory
        # per idle WebSocket of uvicorn's implementations.
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        ws_per_message_deflate=settings.ws_compression,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
