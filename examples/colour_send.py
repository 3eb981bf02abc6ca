"""Send messages with a "colour" application property, for selected_recv.py.

Usage: colour_send.py [-a URL] [-m COUNT]   (defaults localhost:5672/examples, 100)

Message n has id n, colour green when n is odd and red when it is even, and the body
"COLOUR n" ("green 1", "red 2", ...). Prints "all messages confirmed" at the end.
"""

import argparse
import contextlib

from amqp_core import Message
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container


class Send(MessagingHandler):
    def __init__(self, url, messages):
        super().__init__()
        self.url = url
        self.total = messages
        self.sent = 0
        self.confirmed = 0

    def on_start(self, event):
        event.container.create_sender(self.url)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.total:
            number = self.sent + 1
            colour = "green" if number % 2 else "red"
            message = Message(id=number, properties={"colour": colour}, body=f"{colour} {number}")
            event.sender.send(message)
            self.sent = number

    def on_accepted(self, event):
        self.confirmed += 1
        if self.confirmed == self.total:
            print("all messages confirmed")
            event.connection.close()

    def on_disconnected(self, event):
        self.sent = self.confirmed


def main():
    parser = argparse.ArgumentParser(description="Send messages to the supplied address.")
    parser.add_argument(
        "-a",
        "--address",
        default="localhost:5672/examples",
        help="address to which messages are sent (default %(default)s)",
    )
    parser.add_argument(
        "-m",
        "--messages",
        type=int,
        default=100,
        help="number of messages to send (default %(default)s)",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        Container(Send(args.address, args.messages)).run()


if __name__ == "__main__":
    main()
