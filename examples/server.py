"""A request/response service through a broker: take requests from a queue and send
each body back in upper case to the request's reply_to address.

Usage: server.py [-a URL]   (default localhost:5672/examples: the broker and the
queue to serve)

Replies go out on one sender with no target, so each is routed by its `address`: the
broker must offer ANONYMOUS-RELAY (examples/broker.py does). Prints "Listening on URL",
then "Received MESSAGE" for each request.
"""

import argparse
import contextlib

from amqp_core import Message, Url
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container


class Server(MessagingHandler):
    def __init__(self, url, address):
        super().__init__()
        self.url = url
        self.address = address

    def on_start(self, event):
        print("Listening on", self.url)
        connection = event.container.connect(self.url)
        event.container.create_receiver(connection, self.address)
        self.replies = event.container.create_sender(connection, None)

    def on_message(self, event):
        request = event.message
        print("Received", request)
        reply = Message(
            address=request.reply_to,
            body=request.body.upper(),
            correlation_id=request.correlation_id,
        )
        self.replies.send(reply)


def main():
    parser = argparse.ArgumentParser(description="Answer requests with their upper case.")
    parser.add_argument(
        "-a",
        "--address",
        default="localhost:5672/examples",
        help="address from which messages are received (default %(default)s)",
    )
    args = parser.parse_args()
    url = Url(args.address)
    with contextlib.suppress(KeyboardInterrupt):
        Container(Server(url, url.path)).run()


if __name__ == "__main__":
    main()
