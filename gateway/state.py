"""What one gateway app holds while it runs: its settings, its AMQP client (and the
embedded broker when no --amqp-url is given), its authentication, its metrics and its
Idempotency-Key cache. Routes get it as a dependency, never as a global."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from amqp_core import Message
from amqp_core.aio import Outcome
from amqp_core.broker.server import BrokerConfig
from gateway.amqp import AmqpClient, AmqpClientConfig, EmbeddedBroker
from gateway.auth import Auth
from gateway.idempotency import IdempotencyCache
from gateway.metrics import Metrics
from gateway.settings import Settings

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.broker: EmbeddedBroker | None = None
        self.amqp = AmqpClient(
            AmqpClientConfig(
                url=settings.amqp_url or "amqp://localhost",
                attach_timeout=settings.attach_timeout,
            )
        )
        self.idempotency: IdempotencyCache[Any] = IdempotencyCache(
            settings.idempotency_window, settings.idempotency_keys
        )
        # The client is replaced at start: ask whichever is current.
        self.auth = Auth(
            settings, self.metrics, lambda address: self.amqp.is_reply_address(address)
        )
        self.started = False

    async def start(self) -> None:
        """Read the credentials, start the embedded broker (unless --amqp-url) and the
        AMQP client; AuthConfigError if a key file or token setting is unusable,
        EmbeddedBrokerError if the broker cannot listen or open its store."""
        settings = self.settings
        await self.auth.start()
        if settings.amqp_url is None:
            self.broker = EmbeddedBroker(
                BrokerConfig(
                    address=settings.amqp_listen,
                    data_dir=settings.data_dir,
                    max_memory=settings.max_memory,
                )
            )
            await self.broker.start()
            # amqp_core's broker detaches a link it refuses, never the whole session:
            # no need to try addresses alone first.
            self.amqp = AmqpClient(
                AmqpClientConfig(
                    url=self.broker.url,
                    attach_timeout=settings.attach_timeout,
                    probe_addresses=False,
                )
            )
        await self.amqp.start()
        if self.broker is not None:
            # Our own broker answers at once: be connected before the first request.
            # An external one may be down: serve anyway (/healthz), and /readyz tells.
            await self.amqp.wait_connected(timeout=5)
        self.started = True

    async def send(self, address: str, message: Message) -> Outcome:
        """Send a message and return the broker's outcome: handed straight to the
        embedded broker (as ActiveMQ's in-VM transport does), or over AMQP."""
        if self.broker is not None:
            return await self.broker.publish(address, message)
        return await self.amqp.send(address, message, timeout=self.settings.send_timeout)

    async def stop(self, grace: float) -> None:
        await self.amqp.close(grace=grace)
        if self.broker is not None:
            await self.broker.stop()


def gateway_of(connection: HTTPConnection) -> Gateway:
    """The running app's `Gateway`, for an HTTP request or a WebSocket."""
    state: Gateway = connection.app.state.gateway
    return state


async def gateway(connection: HTTPConnection) -> Gateway:
    """`gateway_of` as a FastAPI dependency (async, so that FastAPI does not hand it to
    a worker thread)."""
    return gateway_of(connection)


#: A route's parameter `state: GatewayDep` receives the running app's `Gateway`.
GatewayDep = Annotated[Gateway, Depends(gateway)]
