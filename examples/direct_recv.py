"""simple_recv.py without a broker: listen, print the bodies of the messages that a
sender (simple_send.py) connects to deliver, then stop listening and exit.

Usage: direct_recv.py [-a URL] [-m COUNT]   (defaults localhost:5672/examples, 100;
-m 0 receives until interrupted)
"""

import argparse
import contextlib

from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container


class Recv(MessagingHandler):
    def __init__(self, url, count):
        super().__init__()
        self.url = url
        self.expected = count
        self.received = 0

    def on_start(self, event):
        self.acceptor = event.container.listen(self.url)

    def on_message(self, event):
        if event.message.id and event.message.id < self.received:
            return  # a duplicate
        if self.expected and self.received >= self.expected:
            return
        print(event.message.body)
        self.received += 1
        if self.received == self.expected:
            event.receiver.close()
            event.connection.close()
            self.acceptor.close()


def main():
    parser = argparse.ArgumentParser(description="Receive messages sent to us directly.")
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
        default=100,
        help="number of messages to receive; 0 receives indefinitely (default %(default)s)",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        Container(Recv(args.address, args.messages)).run()


if __name__ == "__main__":
    main()
