"""Hello World without a broker: listen for AMQP connections, connect to ourselves,
send one message over that connection and print it as it arrives.

Usage: helloworld_direct.py [-a HOST:PORT/ADDRESS]

The tutorial's version always uses localhost:8888/examples; -a (with that default) is
our addition, so that a test can pick a free port.
Prints: Hello World!
"""

import argparse

from amqp_core import Message
from amqp_core.handlers import MessagingHandler
from amqp_core.reactor import Container


class HelloWorld(MessagingHandler):
    def __init__(self, url):
        super().__init__()
        self.url = url

    def on_start(self, event):
        self.acceptor = event.container.listen(self.url)
        event.container.create_sender(self.url)

    def on_sendable(self, event):
        event.sender.send(Message(body="Hello World!"))
        event.sender.close()

    def on_message(self, event):
        print(event.message.body)

    def on_accepted(self, event):
        # The receiving side (ourselves) accepted the message: we are done.
        event.connection.close()

    def on_connection_closed(self, event):
        self.acceptor.close()  # nothing left to do: run() returns


def main():
    parser = argparse.ArgumentParser(description="Send a message to ourselves.")
    parser.add_argument(
        "-a",
        "--address",
        default="localhost:8888/examples",
        help="where to listen and send (default %(default)s)",
    )
    args = parser.parse_args()
    Container(HelloWorld(args.address)).run()


if __name__ == "__main__":
    main()
