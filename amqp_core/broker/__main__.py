"""`amqp-broker` (or `python -m amqp_core.broker`): run the embedded broker until
Ctrl-C or SIGTERM. ``AMQP_TRACE=1`` in the environment traces every frame to stderr.

A failure to start is one line on stderr that names the problem and the option to
change, with an exit code per kind (`EXIT_CODES`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

from amqp_core.broker.queues import MESSAGE_OVERHEAD
from amqp_core.broker.server import Broker, BrokerConfig
from amqp_core.broker.store import StoreError
from amqp_core.cli import (
    EXIT_BAD_OPTION,
    EXIT_CANNOT_LISTEN,
    EXIT_DATA_DIR,
    OneLineParser,
    StartupFailure,
    run,
)
from amqp_core.reactor import Container
from amqp_core.url import Url

EXIT_CODES = f"""\
exit codes:
  0  stopped (SIGTERM or Ctrl-C)
  {EXIT_BAD_OPTION}  an option is unknown or has a bad value
  {EXIT_CANNOT_LISTEN}  cannot listen on --address (in use, not allowed, not local)
  {EXIT_DATA_DIR}  --data-dir is used by another broker, or cannot be used
"""


def _listen_address(text: str) -> str:
    """`text` if it is a HOST:PORT to listen on."""
    try:
        _ = Url(text).port  # read to check it
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def parse_arguments(arguments: Sequence[str] | None = None) -> BrokerConfig:
    defaults = BrokerConfig()
    parser = OneLineParser(
        prog="amqp-broker",
        epilog=EXIT_CODES,
        description="An AMQP 1.0 broker: queues created on first use, topics, selectors, "
        "browsing, dynamic reply queues and ANONYMOUS-RELAY. Ctrl-C or SIGTERM stops it. "
        "Set AMQP_TRACE=1 to trace every frame to stderr.",
    )
    parser.add_argument(
        "-a",
        "--address",
        default=defaults.address,
        type=_listen_address,
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
        "--max-memory",
        type=int,
        metavar="BYTES",
        help="bound on the memory that queued messages take (each counted as its size "
        f"plus {MESSAGE_OVERHEAD} bytes); beyond it, further messages of a queue stay in "
        "the --data-dir store only, non-durable ones too, and are read back as consumers "
        "catch up (needs --data-dir; default: no bound)",
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
        "max_memory",
    ):
        value = getattr(options, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if options.max_memory is not None and options.data_dir is None:
        parser.error("--max-memory needs --data-dir: messages beyond it are kept there")
    return BrokerConfig(
        address=options.address,
        topic_prefix=options.topic_prefix,
        dead_letter_address=options.dead_letter_address,
        max_queue_depth=options.max_queue_depth,
        max_queue_bytes=options.max_queue_bytes,
        data_dir=options.data_dir,
        max_memory=options.max_memory,
        max_connections=options.max_connections,
        max_links_per_connection=options.max_links_per_connection,
        max_message_size=options.max_message_size,
        producer_credit_window=options.producer_credit,
    )


async def serve(config: BrokerConfig) -> None:
    """Run a broker in this event loop until SIGINT or SIGTERM; StartupFailure if it
    cannot listen or open its store."""
    broker = Broker(config)
    container = Container(broker)
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, container.stop)
    try:
        container.start()  # the broker opens its store and listens in its on_start
        if broker.acceptor is None:  # which failed: wait() raises why
            try:
                await container.wait()
            except StoreError as error:
                raise StartupFailure(
                    EXIT_DATA_DIR,
                    f"{error}; stop the broker using it, or choose another folder with "
                    "--data-dir DIR",
                ) from None
            except OSError as error:
                raise StartupFailure(
                    EXIT_CANNOT_LISTEN,
                    f"cannot listen on {config.address}: {error.strerror or error}; stop "
                    "what listens there or choose another address with -a HOST:PORT",
                ) from None
        await container.wait()
    finally:
        broker.close()


def main(arguments: Sequence[str] | None = None) -> None:
    run("amqp-broker", lambda: asyncio.run(serve(parse_arguments(arguments))))


if __name__ == "__main__":
    main()
