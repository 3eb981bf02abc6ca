"""The tutorial's broker: runs amqp_core's embedded broker (`amqp-broker`).

Usage: broker.py [-a HOST:PORT]   (default localhost:5672)

Queues are created on first use, addresses starting with `topic/` are topics, dynamic
receivers get reply queues, and ANONYMOUS-RELAY, selectors and browsing are offered;
see `amqp-broker --help` for the rest.
"""

import argparse

from amqp_core.broker.__main__ import main as run_broker


def main():
    parser = argparse.ArgumentParser(description="The embedded broker, for the tutorial.")
    parser.add_argument(
        "-a",
        "--address",
        default="localhost:5672",
        help="address to listen on (default %(default)s)",
    )
    args = parser.parse_args()
    run_broker(["--address", args.address])


if __name__ == "__main__":
    main()
