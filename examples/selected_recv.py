"""Receive only the messages whose "colour" property is green (a selector filter,
which the broker applies) and print their bodies.

Usage: selected_recv.py [-a URL] [-m COUNT]   (defaults localhost:5672/examples, 0;
-m 0 receives until interrupted)

The broker must support selectors: examples/broker.py does, Proton's broker.py does not.
"""

import argparse
import contextlib

from amqp_core import Url
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container, Selector


class Recv(MessagingHandler):
    def __init__(self, url, count):
        super().__init__()
        self.url = Url(url)
        self.expected = count
        self.received = 0

    def on_start(self, event):
        connection = event.container.connect(self.url)
        green = Selector("colour = 'green'")
        event.container.create_receiver(connection, self.url.path, options=green)

    def on_message(self, event):
        print(event.message.body)
        self.received += 1
        if self.received == self.expected:
            event.receiver.close()
            event.connection.close()


def main():
    parser = argparse.ArgumentParser(description="Receive the green messages.")
    parser.add_argument(
        "-a",
        "--address",
        default="localhost:5672/examples",
        help="address from which messages are received (default %(default)s)",
    )
    parser.add_argument(
        "-m",
        "--messages",
        type=int,
        default=0,
        help="number of messages to receive; 0 receives indefinitely (default %(default)s)",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        Container(Recv(args.address, args.messages)).run()


if __name__ == "__main__":
    main()
