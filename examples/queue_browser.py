"""Browse the queue "examples": print its messages without taking them off the queue
(distribution mode copy), and exit once no more have arrived.

Usage: queue_browser.py [-a HOST:PORT]

The tutorial's version always uses localhost:5672; -a (default localhost:5672) is our
addition, so that a test can run it against a broker on a free port. The broker must
support browsing: examples/broker.py does, Proton's broker.py does not. It exits when
it has printed every message that had arrived (so at least the first one).
"""

import argparse
import contextlib

from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container, Copy


class Recv(MessagingHandler):
    def __init__(self, server):
        super().__init__()
        self.server = server

    def on_start(self, event):
        connection = event.container.connect(self.server)
        event.container.create_receiver(connection, "examples", options=Copy())

    def on_message(self, event):
        print(event.message)
        if event.receiver.queued == 0:
            event.connection.close()  # all that arrived is printed


def main():
    parser = argparse.ArgumentParser(description="Print the messages on a queue.")
    parser.add_argument(
        "-a", "--address", default="localhost:5672", help="broker (default %(default)s)"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        Container(Recv(args.address)).run()


if __name__ == "__main__":
    main()
