"""`InProcessBroker`: amqp_core's broker in a thread of the test's process, with an event
loop of its own, for tests that read `Broker.stats()` or fill a queue directly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from amqp_core.broker.server import Broker, BrokerConfig
from amqp_core.reactor import Container

#: Seconds for the broker to start, stop, or run one call.
PROMPTLY = 5


class InProcessBroker:
    """A Broker running in a thread of its own, with its own event loop."""

    def __init__(self, config: BrokerConfig) -> None:
        self.broker = Broker(config)
        self.container = Container(self.broker)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        self._ready.wait(PROMPTLY)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.container.start()
        self._ready.set()
        await self.container.wait()

    def call(self, function: Callable[[], Any]) -> Any:
        """`function()`, run in the broker's event loop."""
        assert self.loop is not None

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(PROMPTLY)

    def stats(self) -> dict[str, Any]:
        return self.call(self.broker.stats)  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.container.stop)
        self._thread.join(PROMPTLY)
