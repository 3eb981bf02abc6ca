"""Hello World through a broker: send one message to the queue "examples", receive it
back on the same connection, print its body and exit.

Usage: helloworld.py [-a HOST:PORT]

The tutorial's version always uses localhost:5672; -a (default localhost:5672) is our
addition, so that a test can run it against a broker on a free port.
Prints: Hello World!
"""

import argparse

from amqp_core import Message
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container


class HelloWorld(MessagingHandler):
    def __init__(self, server, address):
        super().__init__()
        self.server = server
        self.address = address

    def on_start(self, event):
        connection = event.container.connect(self.server)
        event.container.create_receiver(connection, self.address)
        event.container.create_sender(connection, self.address)

    def on_sendable(self, event):
        event.sender.send(Message(body="Hello World!"))
        event.sender.close()  # one message is all we send

    def on_message(self, event):
        print(event.message.body)
        event.connection.close()


def main():
    parser = argparse.ArgumentParser(description="Send a message to a broker and get it back.")
    parser.add_argument(
        "-a", "--address", default="localhost:5672", help="broker (default %(default)s)"
    )
    args = parser.parse_args()
    Container(HelloWorld(args.address, "examples")).run()


if __name__ == "__main__":
    main()
