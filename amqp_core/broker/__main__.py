"""`amqp-broker` (or `python -m amqp_core.broker`): run the embedded broker until
Ctrl-C or SIGTERM. ``AMQP_TRACE=1`` in the environment traces every frame to stderr."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from amqp_core.broker.server import Broker, BrokerConfig
from amqp_core.broker.store import StoreError
from amqp_core.reactor import Container


def parse_arguments(arguments: Sequence[str] | None = None) -> BrokerConfig:
    defaults = BrokerConfig()
    parser = argparse.ArgumentParser(
        prog="amqp-broker",
        description="An AMQP 1.0 broker: queues created on first use, topics, selectors, "
        "browsing, dynamic reply queues and ANONYMOUS-RELAY. Ctrl-C or SIGTERM stops it. "
        "Set AMQP_TRACE=1 to trace every frame to stderr.",
    )
    parser.add_argument(
        "-a",
        "--address",
        default=defaults.address,
        metavar="HOST:PORT",
        help="address to listen on (default %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        help="folder of the message store: durable messages sent to queues are written "
        "there before they are accepted, and survive a restart (default: none, every "
        "message stays in memory only)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=defaults.topic_prefix,
        metavar="PREFIX",
        help="addresses starting with PREFIX are topics: every receiver attached gets a "
        "copy and nothing is kept; all other addresses are queues (default %(default)s)",
    )
    parser.add_argument(
        "--dead-letter-address",
        default=defaults.dead_letter_address,
        metavar="ADDRESS",
        help="queue that messages rejected by a consumer move to (default %(default)s)",
    )
    parser.add_argument(
        "--max-queue-depth",
        type=int,
        metavar="MESSAGES",
        help="most messages a queue holds (waiting or unsettled); when full, producers "
        "get no more credit until it drains (default: no limit)",
    )
    parser.add_argument(
        "--max-queue-bytes",
        type=int,
        metavar="BYTES",
        help="most bytes of messages a queue holds; when full, producers get no more "
        "credit until it drains (default: no limit)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="most connections open at a time; more are closed with "
        "amqp:resource-limit-exceeded (default: no limit)",
    )
    parser.add_argument(
        "--max-links-per-connection",
        type=int,
        metavar="N",
        help="most links attached on one connection; more are detached with "
        "amqp:resource-limit-exceeded (default: no limit)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=defaults.max_message_size,
        metavar="BYTES",
        help="largest message accepted; a larger one closes its connection with "
        "amqp:link:message-size-exceeded (default %(default)s)",
    )
    parser.add_argument(
        "--producer-credit",
        type=int,
        default=defaults.producer_credit_window,
        metavar="N",
        help="credit granted to each producer at a time: messages it may send ahead; "
        "a durable burst of that many is one disk write (default %(default)s)",
    )
    options = parser.parse_args(arguments)
    for option in (
        "producer_credit",
        "max_queue_depth",
        "max_queue_bytes",
        "max_connections",
        "max_links_per_connection",
        "max_message_size",
    ):
        value = getattr(options, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    return BrokerConfig(
        address=options.address,
        topic_prefix=options.topic_prefix,
        dead_letter_address=options.dead_letter_address,
        max_queue_depth=options.max_queue_depth,
        max_queue_bytes=options.max_queue_bytes,
        data_dir=options.data_dir,
        max_connections=options.max_connections,
        max_links_per_connection=options.max_links_per_connection,
        max_message_size=options.max_message_size,
        producer_credit_window=options.producer_credit,
    )


async def serve(config: BrokerConfig) -> None:
    """Run a broker in this event loop until SIGINT or SIGTERM."""
    broker = Broker(config)
    container = Container(broker)
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, container.stop)
    try:
        container.start()
        await container.wait()
    finally:
        broker.close()


def main(arguments: Sequence[str] | None = None) -> None:
    try:
        asyncio.run(serve(parse_arguments(arguments)))
    except StoreError as error:
        sys.exit(f"amqp-broker: {error}")


if __name__ == "__main__":
    main()
