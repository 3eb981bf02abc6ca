"""Clients that load a broker, written with Qpid Proton (a client nobody here wrote), each
in a process of its own so that the test or benchmark that starts it measures the broker,
not itself. One line of output per event.

- ``probe URL ADDRESS``: one round trip after another through ADDRESS (send a message,
  receive it, accept it); prints ``ready`` once attached, then each round trip's time
  in milliseconds.
- ``send URL ADDRESS COUNT``: sends COUNT messages to ADDRESS, each once the previous
  one was accepted; prints ``ready`` once attached, then each message's time from
  sending to accepted, in milliseconds.
- ``drain URL ADDRESS COUNT WINDOW``: receives and accepts COUNT messages, granting
  WINDOW credit whenever the last window is used up (as a batch consumer does); prints
  ``ready``, then the first message's body, then ``done`` with the seconds from the
  first message to the last.
- ``fill URL ADDRESS COUNT``: sends COUNT durable messages with 100-byte bodies to
  ADDRESS as fast as credit allows, their message ids 0, 1, 2, ...; prints ``ready``
  once attached and ``done`` once all were accepted.
- ``ordered URL ADDRESS COUNT WINDOW``: as ``drain``, checking that the message ids run
  0, 1, 2, ...; prints ``ready``, then ``done`` or where the order broke.
- ``select URL ADDRESS SELECTOR RECEIVERS``: RECEIVERS receivers on ADDRESS with that
  JMS selector, 10 credit each; prints ``ready`` once all are attached and each message
  that arrives (there should be none when the selector matches nothing).
- ``hold URL PREFIX LINKS PER_CONNECTION``: LINKS idle sender links to PREFIX-0,
  PREFIX-1, ..., PER_CONNECTION to a connection, attached `HOLD_BATCH` at a time (a
  crowd gathers, it does not storm the listen backlog); prints ``ready`` once all are
  attached and got credit.

Every client stops after LIFETIME_SECONDS, whatever happens.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container, Selector

LIFETIME_SECONDS = 600
HOLD_BATCH = 100


def say(*words: Any) -> None:
    print(*words, flush=True)


class Probe(MessagingHandler):  # type: ignore[misc]
    def __init__(self, url: str, address: str) -> None:
        super().__init__(prefetch=0)  # one credit at a time, granted here
        self.url, self.address = url, address
        self.sender: Any = None
        self.attached = 0
        self.sent_at = 0.0

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        self.sender = event.container.create_sender(connection, self.address, name="probe-out")
        event.container.create_receiver(connection, self.address, name="probe-in").flow(1)

    def on_link_opened(self, event: Any) -> None:
        self.attached += 1
        if self.attached == 2:
            say("ready")
            self.send()

    def send(self) -> None:
        self.sent_at = time.monotonic()
        self.sender.send(Message(body="probe"))

    def on_message(self, event: Any) -> None:
        say(f"{(time.monotonic() - self.sent_at) * 1000:.3f}")
        event.receiver.flow(1)
        self.send()


class Send(MessagingHandler):  # type: ignore[misc]
    def __init__(self, url: str, address: str, count: int) -> None:
        super().__init__()
        self.url, self.address, self.count = url, address, count
        self.sender: Any = None
        self.sent = 0
        self.sent_at = 0.0

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        self.sender = event.container.create_sender(connection, self.address, name="send")

    def on_link_opened(self, event: Any) -> None:
        say("ready")
        self.send()

    def send(self) -> None:
        self.sent += 1
        self.sent_at = time.monotonic()
        self.sender.send(Message(body=f"sent {self.sent}"))

    def on_accepted(self, event: Any) -> None:
        say(f"{(time.monotonic() - self.sent_at) * 1000:.3f}")
        if self.sent < self.count:
            self.send()
        else:
            event.connection.close()


class Drain(MessagingHandler):  # type: ignore[misc]
    def __init__(self, url: str, address: str, count: int, window: int) -> None:
        super().__init__(prefetch=0)
        self.url, self.address, self.count, self.window = url, address, count, window
        self.received = 0
        self.first_at = 0.0

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        receiver = event.container.create_receiver(connection, self.address, name="drain")
        receiver.flow(self.window)

    def on_link_opened(self, event: Any) -> None:
        say("ready")

    def on_message(self, event: Any) -> None:
        self.received += 1
        if self.received == 1:
            self.first_at = time.monotonic()
            say(repr(event.message.body))
        receiver = event.receiver
        if self.received == self.count:
            say(f"done {time.monotonic() - self.first_at:.3f}")
            event.connection.close()
        elif receiver.credit == 0:
            receiver.flow(min(self.window, self.count - self.received))


class Fill(MessagingHandler):  # type: ignore[misc]
    def __init__(self, url: str, address: str, count: int) -> None:
        super().__init__()
        self.url, self.address, self.count = url, address, count
        self.sent = 0
        self.accepted = 0

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        event.container.create_sender(connection, self.address, name="fill")

    def on_link_opened(self, event: Any) -> None:
        say("ready")

    def on_sendable(self, event: Any) -> None:
        sender = event.sender
        while sender.credit and self.sent < self.count:
            sender.send(Message(id=self.sent, body=b"x" * 100, durable=True))
            self.sent += 1

    def on_accepted(self, event: Any) -> None:
        self.accepted += 1
        if self.accepted == self.count:
            say("done")
            event.connection.close()

    def on_rejected(self, event: Any) -> None:
        say(f"rejected after {self.accepted}")
        event.connection.close()

    on_released = on_rejected


class Ordered(Drain):
    def on_message(self, event: Any) -> None:
        if event.message.id != self.received:
            say(f"message id {event.message.id!r} where {self.received} was due")
            event.connection.close()
            return
        self.received += 1
        receiver = event.receiver
        if self.received == self.count:
            say("done")
            event.connection.close()
        elif receiver.credit == 0:
            receiver.flow(min(self.window, self.count - self.received))


class Select(MessagingHandler):  # type: ignore[misc]
    def __init__(self, url: str, address: str, selector: str, receivers: int) -> None:
        super().__init__(prefetch=10)
        self.url, self.address, self.selector, self.receivers = url, address, selector, receivers
        self.attached = 0

    def on_start(self, event: Any) -> None:
        connection = event.container.connect(self.url, reconnect=False)
        for number in range(self.receivers):
            event.container.create_receiver(
                connection, self.address, name=f"select-{number}", options=Selector(self.selector)
            )

    def on_link_opened(self, event: Any) -> None:
        self.attached += 1
        if self.attached == self.receivers:
            say("ready")

    def on_message(self, event: Any) -> None:
        say(f"received {event.message.body!r}")


class Hold(MessagingHandler):  # type: ignore[misc]
    def __init__(self, url: str, prefix: str, links: int, per_connection: int) -> None:
        super().__init__()
        self.url, self.prefix, self.links, self.per_connection = url, prefix, links, per_connection
        self.container: Any = None
        self.connection: Any = None
        self.requested = 0
        self.sendable: set[str] = set()

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.attach_more()

    def attach_more(self) -> None:
        end = min(self.requested + HOLD_BATCH, self.links)
        for number in range(self.requested, end):
            if number % self.per_connection == 0:
                self.connection = self.container.connect(self.url, reconnect=False)
            address = f"{self.prefix}-{number}"
            self.container.create_sender(self.connection, address, name=address)
        self.requested = end

    def on_sendable(self, event: Any) -> None:
        name = event.sender.name
        if name in self.sendable:
            return
        self.sendable.add(name)
        if len(self.sendable) == self.requested:
            if self.requested < self.links:
                self.attach_more()
            else:
                say("ready")


def main() -> None:
    signal.alarm(LIFETIME_SECONDS)
    role, url, *arguments = sys.argv[1:]
    handler: MessagingHandler
    if role == "probe":
        handler = Probe(url, arguments[0])
    elif role == "send":
        handler = Send(url, arguments[0], int(arguments[1]))
    elif role == "drain":
        handler = Drain(url, arguments[0], int(arguments[1]), int(arguments[2]))
    elif role == "fill":
        handler = Fill(url, arguments[0], int(arguments[1]))
    elif role == "ordered":
        handler = Ordered(url, arguments[0], int(arguments[1]), int(arguments[2]))
    elif role == "select":
        handler = Select(url, arguments[0], arguments[1], int(arguments[2]))
    else:
        handler = Hold(url, arguments[0], int(arguments[1]), int(arguments[2]))
    Container(handler).run()


if __name__ == "__main__":
    main()
