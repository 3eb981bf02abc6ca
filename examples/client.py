"""The request/response client: send each request (the arguments, or four lines of
Jabberwocky) with a reply_to address and print "REQUEST => REPLY" as replies arrive.

Usage: client.py [-a URL] [REQUEST ...]   (default localhost:5672/examples)

The replies come back on a dynamic receiver: the peer (a broker, or server_direct.py)
makes up its address, and the first request goes out once that is known.
"""

import argparse

from amqp_core import Message
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container

REQUESTS = [
    "Twas brillig, and the slithy toves",
    "Did gire and gymble in the wabe.",
    "All mimsy were the borogroves,",
    "And the mome raths outgrabe.",
]


class Client(MessagingHandler):
    def __init__(self, url, requests):
        super().__init__()
        self.url = url
        self.requests = list(requests)

    def on_start(self, event):
        self.sender = event.container.create_sender(self.url)
        self.receiver = event.container.create_receiver(self.sender.connection, None, dynamic=True)

    def send_next(self):
        reply_to = self.receiver.remote_source.address
        if reply_to:
            self.sender.send(Message(reply_to=reply_to, body=self.requests[0]))

    def on_link_opened(self, event):
        if event.receiver == self.receiver:
            self.send_next()  # the reply address is known now

    def on_message(self, event):
        print(f"{self.requests.pop(0)} => {event.message.body}")
        if self.requests:
            self.send_next()
        else:
            event.connection.close()


def main():
    parser = argparse.ArgumentParser(
        description="Send requests to the supplied address and print responses."
    )
    parser.add_argument(
        "-a",
        "--address",
        default="localhost:5672/examples",
        help="address to which messages are sent (default %(default)s)",
    )
    parser.add_argument("requests", nargs="*", help="requests to send (default: a poem)")
    args = parser.parse_args()
    Container(Client(args.address, args.requests or REQUESTS)).run()


if __name__ == "__main__":
    main()
