"""The request/response service without a broker: clients (client.py) connect to us.

Usage: server_direct.py [-a HOST:PORT]

The tutorial's version always listens on 0.0.0.0:8888; -a (with that default) is our
addition, so that a test can pick a free port. A client's dynamic receiver gets a
made-up address, and each reply goes back over that client's own link. Prints
"Listening on ADDRESS", then "Received MESSAGE" for each request.
"""

import argparse
import contextlib
import uuid

from amqp_core import Message
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container


class Server(MessagingHandler):
    def __init__(self, url):
        super().__init__()
        self.url = url
        self.senders = {}  # reply address -> the link to the client that owns it

    def on_start(self, event):
        print("Listening on", self.url)
        self.acceptor = event.container.listen(self.url)

    def on_link_opening(self, event):
        link = event.link
        if link.is_receiver:
            if link.remote_target:
                link.target.address = link.remote_target.address
        elif link.remote_source and link.remote_source.dynamic:
            link.source.address = str(uuid.uuid4())
            self.senders[link.source.address] = link
        elif link.remote_target and link.remote_target.address:
            link.target.address = link.remote_target.address
            self.senders[link.target.address] = link
        elif link.remote_source:
            link.source.address = link.remote_source.address

    def on_message(self, event):
        request = event.message
        print("Received", request)
        sender = self.senders.get(request.reply_to)
        if sender is None:
            print("No link for reply")
            return
        reply = Message(
            address=request.reply_to,
            body=request.body.upper(),
            correlation_id=request.correlation_id,
        )
        sender.send(reply)


def main():
    parser = argparse.ArgumentParser(description="Answer requests sent to us directly.")
    parser.add_argument(
        "-a", "--address", default="0.0.0.0:8888", help="where to listen (default %(default)s)"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        Container(Server(args.address)).run()


if __name__ == "__main__":
    main()
