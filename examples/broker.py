"""A small AMQP broker for the tutorial's examples, written with the tutorial's API.

Usage: broker.py [-a HOST:PORT]   (default localhost:5672)

A queue is created the first time an address is used. A dynamic receiver (the
tutorial's client.py) gets a reply queue of its own, whose generated address is echoed
in the attach. The broker offers ANONYMOUS-RELAY: a sender with no target (server.py)
routes each message by its `address`. A receiver may pass a selector
(selected_recv.py) or browse with distribution mode copy (queue_browser.py), which
leaves the messages on the queue. Released and modified messages, and those still
unsettled when their receiver goes away, go back on their queue in their old place.
"""

import argparse
import bisect
import contextlib
import re
import uuid

from amqp_core import Condition, symbol, ulong
from amqp_core.handlers import MessagingHandler, Reject
from amqp_core.reactor import Container

#: The selector filter's descriptor, by name (Proton's) and by code (rhea's).
SELECTOR_DESCRIPTORS = (symbol("apache.org:selector-filter:string"), ulong(0x0000468C00000004))


HELP_ADDRESS = "address to listen on (default %(default)s)"


class Consumer:
    """One outgoing link on a queue: what it selects, and what it has not settled."""

    def __init__(self, link, selector=None, browsing=False):
        self.link = link
        self.selector = selector
        self.browsing = browsing
        self.last_browsed = 0  # a browser's place: the sequence number of its last copy
        self.unsettled = {}  # delivery -> (sequence number, message)

    def wants(self, sequence, message):
        if self.browsing and sequence <= self.last_browsed:
            return False
        return self.selector is None or self.selector.matches(message)


class Queue:
    """Messages in arrival order, each with a sequence number, and their consumers."""

    def __init__(self, dynamic=False):
        self.dynamic = dynamic
        self.entries = []  # (sequence number, message), sorted
        self.consumers = []
        self.last_sequence = 0

    def publish(self, message):
        self.last_sequence += 1
        self.entries.append((self.last_sequence, message))
        self.dispatch()

    def put_back(self, sequence, message):
        """Return a message that was sent but not consumed to its old place."""
        bisect.insort(self.entries, (sequence, message), key=lambda entry: entry[0])
        self.dispatch()

    def dispatch(self):
        """Give each consumer with credit one message in turn until none can take more."""
        progress = True
        while progress:
            progress = False
            for consumer in list(self.consumers):
                if consumer.link.credit and self._send_one(consumer):
                    progress = True

    def _send_one(self, consumer):
        start = 0
        if consumer.browsing:
            start = bisect.bisect_right(self.entries, consumer.last_browsed, key=lambda e: e[0])
        for index in range(start, len(self.entries)):
            sequence, message = self.entries[index]
            if consumer.wants(sequence, message):
                delivery = consumer.link.send(message)
                if consumer.browsing:
                    consumer.last_browsed = sequence
                else:
                    del self.entries[index]
                    consumer.unsettled[delivery] = (sequence, message)
                return True
        return False


class Selector:
    """A JMS-style message selector over application properties: comparisons,
    arithmetic, AND/OR/NOT, IS [NOT] NULL, [NOT] LIKE/IN/BETWEEN, with SQL's
    three-valued logic (None is unknown, and only True selects)."""

    TOKEN = re.compile(
        r"\s*(?:(?P<string>'(?:[^']|'')*')"
        r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
        r"|(?P<operator><>|<=|>=|[=<>(),+\-*/])"
        r"|(?P<name>[A-Za-z_$][\w$.]*))"
    )
    KEYWORDS = {"AND", "OR", "NOT", "IS", "LIKE", "ESCAPE", "IN", "BETWEEN"}
    CONSTANTS = {"TRUE": True, "FALSE": False, "NULL": None}
    COMPARE = {
        "=": lambda a, b: a == b,
        "<>": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }
    ARITHMETIC = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": lambda a, b: a / b,
    }

    def __init__(self, text):
        self.tokens = self._tokenize(text)
        self.position = 0
        self.evaluate = self._or()
        if self.position != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.position][1]!r} in selector")

    def matches(self, message):
        try:
            return self.evaluate(message.properties or {}) is True
        except (TypeError, ZeroDivisionError):
            return False

    def _tokenize(self, text):
        tokens, position = [], 0
        while text[position:].strip():
            match = self.TOKEN.match(text, position)
            if not match:
                raise ValueError(f"cannot read selector at {text[position:]!r}")
            kind = match.lastgroup
            value = match.group(kind)
            if kind == "name" and value.upper() in self.KEYWORDS | self.CONSTANTS.keys():
                kind, value = "keyword", value.upper()
            tokens.append((kind, value))
            position = match.end()
        return tokens

    def _peek(self, *values):
        if self.position < len(self.tokens) and self.tokens[self.position][1] in values:
            return self.tokens[self.position][1]
        return None

    def _take(self, *values):
        value = self._peek(*values)
        if value is not None:
            self.position += 1
        return value

    def _expect(self, value):
        if not self._take(value):
            raise ValueError(f"selector: {value} expected")

    def _or(self):
        left = self._and()
        while self._take("OR"):
            left = _either(left, self._and())
        return left

    def _and(self):
        left = self._not()
        while self._take("AND"):
            left = _both(left, self._not())
        return left

    def _not(self):
        if self._take("NOT"):
            operand = self._not()
            return _unknown_if_null(lambda a: not a, operand)
        return self._predicate()

    def _predicate(self):
        left = self._sum()
        operator = self._take(*self.COMPARE)
        if operator:
            return _unknown_if_null(self.COMPARE[operator], left, self._sum())
        if self._take("IS"):
            negate = bool(self._take("NOT"))
            self._expect("NULL")
            return lambda p: (left(p) is None) != negate
        negate = bool(self._take("NOT"))
        if self._take("LIKE"):
            pattern = self._literal_string()
            escape = self._literal_string() if self._take("ESCAPE") else None
            regex = _like_regex(pattern, escape)
            test = _unknown_if_null(lambda a: regex.fullmatch(a) is not None, left)
        elif self._take("IN"):
            self._expect("(")
            choices = [self._literal_string()]
            while self._take(","):
                choices.append(self._literal_string())
            self._expect(")")
            test = _unknown_if_null(lambda a: a in choices, left)
        elif self._take("BETWEEN"):
            low = self._sum()
            self._expect("AND")
            high = self._sum()
            test = _both(
                _unknown_if_null(self.COMPARE[">="], left, low),
                _unknown_if_null(self.COMPARE["<="], left, high),
            )
        elif negate:
            raise ValueError("selector: LIKE, IN or BETWEEN expected after NOT")
        else:
            return left
        return _unknown_if_null(lambda a: not a, test) if negate else test

    def _sum(self):
        left = self._product()
        while operator := self._take("+", "-"):
            left = _unknown_if_null(self.ARITHMETIC[operator], left, self._product())
        return left

    def _product(self):
        left = self._unary()
        while operator := self._take("*", "/"):
            left = _unknown_if_null(self.ARITHMETIC[operator], left, self._unary())
        return left

    def _unary(self):
        if self._take("-"):
            operand = self._unary()
            return _unknown_if_null(lambda a: -a, operand)
        self._take("+")
        return self._primary()

    def _primary(self):
        if self._take("("):
            inner = self._or()
            self._expect(")")
            return inner
        if self.position >= len(self.tokens):
            raise ValueError("selector ends too soon")
        kind, value = self.tokens[self.position]
        self.position += 1
        if kind == "string":
            text = value[1:-1].replace("''", "'")
            return lambda p: text
        if kind == "number":
            number = float(value) if any(c in value for c in ".eE") else int(value)
            return lambda p: number
        if kind == "keyword" and value in self.CONSTANTS:
            constant = self.CONSTANTS[value]
            return lambda p: constant
        if kind == "name":
            return lambda p: p.get(value)
        raise ValueError(f"unexpected {value!r} in selector")

    def _literal_string(self):
        if self.position < len(self.tokens) and self.tokens[self.position][0] == "string":
            self.position += 1
            return self.tokens[self.position - 1][1][1:-1].replace("''", "'")
        raise ValueError("selector: a quoted string expected")


def _unknown_if_null(operation, *operands):
    """`operation` of the operands' values, or None (unknown) if any of them is null."""

    def apply(properties):
        values = [operand(properties) for operand in operands]
        return None if None in values else operation(*values)

    return apply


def _both(left, right):
    def apply(properties):
        a, b = left(properties), right(properties)
        if a is False or b is False:
            return False
        return None if a is None or b is None else True

    return apply


def _either(left, right):
    def apply(properties):
        a, b = left(properties), right(properties)
        if a is True or b is True:
            return True
        return None if a is None or b is None else False

    return apply


def _like_regex(pattern, escape):
    parts, escaped = [], False
    for char in pattern:
        if escaped or char not in "%_" + (escape or ""):
            parts.append(re.escape(char))
            escaped = False
        elif char == escape:
            escaped = True
        else:
            parts.append(".*" if char == "%" else ".")
    return re.compile("".join(parts), re.DOTALL)


def requested_selector(source):
    """The (filter name, filter, Selector) of a source's selector filter, or None."""
    source.filter.rewind()
    filters = source.filter.get_dict() if source.filter.next() is not None else None
    for name, value in (filters or {}).items():
        if getattr(value, "descriptor", None) in SELECTOR_DESCRIPTORS:
            return name, value, Selector(value.value)
    return None


def refuse(link, reason):
    """Answer a peer's attach, then detach at once with an error."""
    link.condition = Condition("amqp:invalid-field", reason)
    link.open()
    link.close()


class Broker(MessagingHandler):
    def __init__(self, url):
        super().__init__()
        self.url = url
        self.queues = {}
        self.consumers = {}  # outgoing link -> (queue address, Consumer)

    def on_start(self, event):
        self.acceptor = event.container.listen(self.url)

    def queue(self, address):
        if address not in self.queues:
            self.queues[address] = Queue()
        return self.queues[address]

    def on_connection_opening(self, event):
        event.connection.offered_capabilities = [symbol("ANONYMOUS-RELAY")]

    def on_link_opening(self, event):
        link = event.link
        if link.is_receiver:
            # No target address: ANONYMOUS-RELAY, each message names its own address.
            link.target.address = link.remote_target.address
            return
        source = link.remote_source
        if source.dynamic:
            address = str(uuid.uuid4())
            self.queues[address] = Queue(dynamic=True)
        elif source.address:
            address = source.address
        else:
            refuse(link, "a source address is required")
            return
        link.source.address = address
        try:
            selector = requested_selector(source)
        except ValueError as error:
            refuse(link, str(error))
            return
        if selector is not None:
            name, value, selector = selector
            link.source.filter.put_dict({name: value})
        browsing = source.distribution_mode == source.DIST_MODE_COPY
        link.source.distribution_mode = source.distribution_mode
        consumer = Consumer(link, selector, browsing)
        self.consumers[link] = (address, consumer)
        self.queue(address).consumers.append(consumer)

    def on_sendable(self, event):
        if event.link in self.consumers:
            self.queue(self.consumers[event.link][0]).dispatch()

    def on_message(self, event):
        address = event.link.target.address or event.message.address
        if address is None:
            raise Reject()
        self.queue(address).publish(event.message)

    def on_accepted(self, event):
        self._settled(event, put_back=False)

    def on_rejected(self, event):
        self._settled(event, put_back=False)

    def on_released(self, event):
        self._settled(event, put_back=True)

    def on_settled(self, event):
        self._settled(event, put_back=False)

    def _settled(self, event, put_back):
        address, consumer = self.consumers.get(event.link, (None, None))
        if consumer is None or event.delivery not in consumer.unsettled:
            return
        sequence, message = consumer.unsettled.pop(event.delivery)
        if put_back:
            if event.delivery.remote.failed:
                message.delivery_count += 1
            self.queue(address).put_back(sequence, message)

    def unsubscribe(self, link):
        address, consumer = self.consumers.pop(link, (None, None))
        if consumer is None:
            return
        queue = self.queues[address]
        queue.consumers.remove(consumer)
        for sequence, message in consumer.unsettled.values():
            queue.put_back(sequence, message)
        if not queue.consumers and (queue.dynamic or not queue.entries):
            del self.queues[address]

    def on_link_closing(self, event):
        self.unsubscribe(event.link)

    def on_connection_closing(self, event):
        self.drop_connection(event.connection)

    def on_disconnected(self, event):
        self.drop_connection(event.connection)

    def drop_connection(self, connection):
        link = connection.link_head(0)
        while link:
            self.unsubscribe(link)
            link = link.next(0)


def main():
    parser = argparse.ArgumentParser(description="A small broker for the tutorial.")
    parser.add_argument("-a", "--address", default="localhost:5672", help=HELP_ADDRESS)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        Container(Broker(args.address)).run()


if __name__ == "__main__":
    main()
