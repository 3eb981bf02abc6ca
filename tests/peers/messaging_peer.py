"""One side of an interop test, written once against Qpid Proton's Python API.

Run with `--library proton` it is the reference peer; with `--library amqp_core` it is
our side, the same program with only its imports changed (which is the promise
amqp_core makes). tests/test_interop.py starts it with a JSON config and reads what
happened from its standard output, one JSON object a line:

- listener (`"role": "listen"`): accepts connections; every link the client sends on
  is a sink (each message accepted, the bodies reported once `count` arrived); every
  link the client receives from is a source of `count` messages (the numbers 0, 1, ...
  or, given `size`, random blobs of that many bytes), or, for a dynamic source, of one
  message carrying the address it was given.
- client (`"role": "connect"`): runs one scenario (see `Client`).

Events: ready (with the port listened on), opened, link, sent, received, accepted,
transport_error, connection_error, link_error, disconnected, done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import uuid
from typing import Any

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--library", choices=["proton", "amqp_core"], required=True)
parser.add_argument("config", help="the scenario, as a JSON object")
arguments = parser.parse_args()

if arguments.library == "proton":
    from proton import Message, SSLDomain
    from proton.handlers import MessagingHandler
    from proton.reactor import Container
else:
    from amqp_core import Message, SSLDomain
    from amqp_core.handlers import MessagingHandler
    from amqp_core.reactor import Container

#: A peer never outlives a test, even when the test run is killed.
LIFETIME_SECONDS = 120


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def describe(body: Any) -> Any:
    """A message body as JSON: blobs by their size and digest."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return body


def condition_fields(condition: Any) -> dict[str, Any]:
    if condition is None:
        return {"condition": None, "description": None}
    return {"condition": str(condition.name), "description": condition.description}


class Peer(MessagingHandler):
    """What both roles share: sources, sinks and error reports."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.count: int = config.get("count", 1)
        self.size: int | None = config.get("size")
        self.received: dict[str, list[Any]] = {}
        self.to_send: dict[str, list[Any]] = {}
        self.accepted: dict[str, int] = {}

    def bodies(self) -> list[Any]:
        """What a source sends, reporting blobs as it makes them."""
        if self.size is None:
            return list(range(self.count))
        blobs = [os.urandom(self.size) for _ in range(self.count)]
        emit("sent", bodies=[describe(blob) for blob in blobs])
        return blobs

    def send_pending(self, sender: Any) -> None:
        pending = self.to_send.get(sender.name, [])
        while pending and sender.credit > 0:
            sender.send(Message(body=pending.pop(0)))

    def on_sendable(self, event: Any) -> None:
        self.send_pending(event.sender)

    def on_accepted(self, event: Any) -> None:
        name = event.link.name
        self.accepted[name] = self.accepted.get(name, 0) + 1
        if self.accepted[name] == self.expected_accepts(event.link):
            emit("accepted", link=name, count=self.accepted[name])
            self.link_done(event.link)

    def expected_accepts(self, link: Any) -> int:
        return self.count

    def on_message(self, event: Any) -> None:
        name = event.link.name
        bodies = self.received.setdefault(name, [])
        bodies.append(describe(event.message.body))
        if len(bodies) == self.expected_messages(event.link):
            emit("received", link=name, bodies=bodies)
            self.link_done(event.link)

    def expected_messages(self, link: Any) -> int:
        return self.count

    def link_done(self, link: Any) -> None:
        """A link has seen all it was meant to."""

    def on_transport_error(self, event: Any) -> None:
        emit("transport_error", **condition_fields(event.transport.condition))
        super().on_transport_error(event)

    def on_connection_error(self, event: Any) -> None:
        emit("connection_error", **condition_fields(event.connection.remote_condition))
        super().on_connection_error(event)

    def on_link_error(self, event: Any) -> None:
        emit("link_error", **condition_fields(event.link.remote_condition))
        super().on_link_error(event)

    def on_disconnected(self, event: Any) -> None:
        emit("disconnected")


class Listener(Peer):
    """Accepts clients: sinks for what they send, sources for what they receive."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.dynamic_links: set[str] = set()

    def on_start(self, event: Any) -> None:
        config = self.config
        options: dict[str, Any] = {}
        if "tls" in config:
            domain = SSLDomain(SSLDomain.MODE_SERVER)
            domain.set_credentials(config["tls"]["cert"], config["tls"]["key"], None)
            options["ssl_domain"] = domain
        if "users" in config:
            # Proton's own SASL (built without Cyrus) has no server side for PLAIN.
            users = config["users"]
            options["authenticator"] = lambda user, password: users.get(user) == password
            options["allow_anonymous"] = False
        url = f"{config['host']}:{config['port']}"
        acceptor = event.container.listen(url, **options)
        port = acceptor.port if hasattr(acceptor, "port") else config["port"]
        emit("ready", port=port)

    def on_connection_bound(self, event: Any) -> None:
        idle_timeout = self.config.get("idle_timeout")
        if idle_timeout:
            event.transport.idle_timeout = idle_timeout

    def on_connection_opening(self, event: Any) -> None:
        emit("opened", user=event.transport.user)

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            if link.remote_source.dynamic:
                address = f"dynamic-{uuid.uuid4()}"
                link.source.address = address
                self.to_send[link.name] = [address]
                self.dynamic_links.add(link.name)
                emit("link", link=link.name, address=address)
            else:
                link.source.address = link.remote_source.address
                self.to_send[link.name] = self.bodies()
        else:
            link.target.address = link.remote_target.address

    def expected_accepts(self, link: Any) -> int:
        return 1 if link.name in self.dynamic_links else self.count


class Client(Peer):
    """Connects and runs `scenario`:

    - messages: send `count` messages to "sink" and receive `count` from "source"
      (a sender and a receiver on one connection), then close;
    - dynamic: open a dynamic receiver, report the address the listener gave it and
      the message that arrives on it, then close;
    - open: report the connection opened (or why it failed), then close;
    - heartbeat: stay idle for `delay` seconds, then send one message to "sink";
    - idle: stay connected and do nothing.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.scenario: str = config["scenario"]
        self.connection: Any = None
        self.done_links: set[str] = set()

    def on_start(self, event: Any) -> None:
        config = self.config
        scheme = "amqps" if "tls" in config else "amqp"
        options: dict[str, Any] = {"reconnect": False}
        if "tls" in config:
            domain = SSLDomain(SSLDomain.MODE_CLIENT)
            domain.set_trusted_ca_db(config["tls"]["ca"])
            domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
            options["ssl_domain"] = domain
        for key in ("user", "password", "allowed_mechs", "sni"):
            if key in config:
                options[key] = config[key]
        if config.get("idle_timeout"):
            options["heartbeat"] = config["idle_timeout"]
        container = event.container
        self.connection = container.connect(
            f"{scheme}://{config['host']}:{config['port']}", **options
        )
        if self.scenario == "messages":
            container.create_sender(self.connection, "sink", name="to-sink")
            container.create_receiver(self.connection, "source", name="from-source")
            self.to_send["to-sink"] = self.bodies()
        elif self.scenario == "dynamic":
            container.create_receiver(self.connection, dynamic=True, name="dynamic")

    def on_connection_opened(self, event: Any) -> None:
        emit("opened")
        if self.scenario == "open":
            self.finish()
        elif self.scenario == "heartbeat":
            event.container.schedule(self.config["delay"], self)

    def on_timer_task(self, event: Any) -> None:
        sender = event.container.create_sender(self.connection, "sink", name="after-idle")
        self.to_send[sender.name] = ["after idling"]

    def on_link_opened(self, event: Any) -> None:
        if self.scenario == "dynamic" and event.link.is_receiver:
            emit("link", link=event.link.name, address=event.link.remote_source.address)

    def expected_accepts(self, link: Any) -> int:
        return self.count if link.name == "to-sink" else 1

    def expected_messages(self, link: Any) -> int:
        return self.count if link.name == "from-source" else 1

    def link_done(self, link: Any) -> None:
        self.done_links.add(link.name)
        wanted = {"messages": {"to-sink", "from-source"}, "dynamic": {"dynamic"}}.get(
            self.scenario, {"after-idle"}
        )
        if wanted <= self.done_links:
            self.finish()

    def finish(self) -> None:
        emit("done")
        self.connection.close()


def main() -> None:
    signal.alarm(LIFETIME_SECONDS)
    config = json.loads(arguments.config)
    handler = Listener(config) if config["role"] == "listen" else Client(config)
    Container(handler).run()


if __name__ == "__main__":
    main()
