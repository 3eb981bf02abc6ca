"""`Message`: an AMQP 1.0 message with Qpid Proton's attribute names, and its encoding.

A message travels as a run of sections (spec part 3.2): header, delivery-annotations,
message-annotations, properties, application-properties, the body (one amqp-value, or
data sections, or amqp-sequence sections), and footer. `Message` flattens them into
attributes named as in Proton (`address` for `to`, `instructions` for
delivery-annotations, `annotations` for message-annotations, `properties` for
application-properties), and converts times as Proton does: `ttl`, `expiry_time` and
`creation_time` are seconds (floats), 0 meaning unset.

Sections whose fields all hold their defaults are left out when encoding.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from .codec import DecodeError, decode_from, encode_into, read_value
from .types import symbol, timestamp, ubyte, uint, ulong

__all__ = ["DataSections", "Message", "MessageReader", "SequenceSections"]

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78

_SECTION_SYMBOLS = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}

_DEFAULT_PRIORITY = 4


class DataSections(list[bytes]):
    """A body made of several data sections, one `bytes` per section."""


class SequenceSections(list[list[Any]]):
    """A body made of several amqp-sequence sections, one list per section."""


def _new(cls: type, value: int) -> Any:
    # The wrappers check their range when made; values here are already checked
    # by the encoding's width, so build them without the check.
    return int.__new__(cls, value)


def _seconds_to_timestamp(seconds: float) -> timestamp | None:
    return _new(timestamp, int(seconds * 1000)) if seconds else None


def _annotation_keys(annotations: dict[Any, Any]) -> dict[Any, Any]:
    """Annotation keys are symbols or ulongs; plain strings become symbols, as in Proton."""
    if all(type(key) is symbol or type(key) is ulong for key in annotations):
        return annotations
    return {
        symbol(key) if isinstance(key, str) and type(key) is not symbol else key: value
        for key, value in annotations.items()
    }


_SMALL_ULONGS = [ulong(n) for n in range(256)]


def _message_id(value: Any) -> Any:
    """Message and correlation ids: ulong, uuid, binary or string. A plain int is a ulong."""
    if type(value) is int:
        return _SMALL_ULONGS[value] if 0 <= value < 256 else ulong(value)
    return value


class Message:
    """An AMQP message. Construct with keywords: ``Message(body={'sequence': 1}, id=1)``.

    Every attribute not given keeps its default (None, or the header's defaults:
    ``durable=False``, ``priority=4``, numbers 0). An unknown keyword raises TypeError.
    """

    # Defaults live on the class, so constructing a message sets only what it is given.
    DEFAULT_PRIORITY: ClassVar[int] = _DEFAULT_PRIORITY
    id: Any = None
    user_id: bytes | None = None
    address: str | None = None
    subject: str | None = None
    reply_to: str | None = None
    correlation_id: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    expiry_time: float = 0
    creation_time: float = 0
    group_id: str | None = None
    group_sequence: int = 0
    reply_to_group_id: str | None = None
    durable: bool = False
    priority: int = _DEFAULT_PRIORITY
    ttl: float = 0
    first_acquirer: bool = False
    delivery_count: int = 0
    inferred: bool = False
    instructions: dict[Any, Any] | None = None
    annotations: dict[Any, Any] | None = None
    properties: dict[str, Any] | None = None
    body: Any = None
    footer: dict[Any, Any] | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "id", "user_id", "address", "subject", "reply_to", "correlation_id",
        "content_type", "content_encoding", "expiry_time", "creation_time", "group_id",
        "group_sequence", "reply_to_group_id", "durable", "priority", "ttl",
        "first_acquirer", "delivery_count", "inferred", "instructions", "annotations",
        "properties", "body", "footer",
    )  # fmt: skip
    _FIELD_SET: ClassVar[frozenset[str]] = frozenset(FIELDS)

    def __init__(self, body: Any = None, **fields: Any) -> None:
        if body is not None:
            self.body = body
        if fields:
            unknown = fields.keys() - self._FIELD_SET
            if unknown:
                raise TypeError(f"Message has no attribute {', '.join(sorted(unknown))}")
            for name, value in fields.items():
                setattr(self, name, value)

    def clear(self) -> None:
        """Reset every attribute to its default."""
        self.__dict__.clear()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Proton's format: the truthy fields, in Proton's order, then the fields Proton
        # leaves out of its repr.
        shown = [f"{name}={value!r}" for name in _REPR_ORDER if (value := getattr(self, name))]
        return f"Message({', '.join(shown)})"

    # -- encoding ------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The message's sections, encoded."""
        parts = self.encode_parts()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def encode_parts(self) -> list[bytes]:
        """`encode()` in consecutive pieces, for a sender that sends pieces as they are:
        a large binary body (a `bytes` of 64 KiB or more) is a piece of its own, the
        body's very object, so that sending it never copies it whole."""
        out = bytearray()
        parts: list[bytes] = []
        fields = self.__dict__
        if (
            self.durable
            or self.priority != _DEFAULT_PRIORITY
            or self.ttl
            or self.first_acquirer
            or self.delivery_count
        ):
            self._encode_header(out)
        if self.instructions is not None:
            _section(out, DELIVERY_ANNOTATIONS, _annotation_keys(self.instructions))
        if self.annotations is not None:
            _section(out, MESSAGE_ANNOTATIONS, _annotation_keys(self.annotations))
        if fields.keys() & _PROPERTY_FIELDS:
            self._encode_properties(out)
        if self.properties is not None:
            _section(out, APPLICATION_PROPERTIES, self.properties)
        body = self.body
        if body is not None:
            self._encode_body(out, body, parts)
        if self.footer is not None:
            _section(out, FOOTER, _annotation_keys(self.footer))
        if out or not parts:
            parts.append(bytes(out))
        return parts

    def _encode_header(self, out: bytearray) -> None:
        _section(
            out,
            HEADER,
            _trim(
                [
                    True if self.durable else None,
                    None if self.priority == _DEFAULT_PRIORITY else _new(ubyte, self.priority),
                    _new(uint, int(self.ttl * 1000)) if self.ttl else None,
                    True if self.first_acquirer else None,
                    _new(uint, self.delivery_count) if self.delivery_count else None,
                ]
            ),
        )

    def _encode_properties(self, out: bytearray) -> None:
        user_id = self.user_id
        if isinstance(user_id, str):
            user_id = user_id.encode("utf-8")
        content_type = self.content_type
        content_encoding = self.content_encoding
        _section(
            out,
            PROPERTIES,
            _trim(
                [
                    _message_id(self.id),
                    user_id or None,
                    self.address,
                    self.subject,
                    self.reply_to,
                    _message_id(self.correlation_id),
                    None if content_type is None else symbol(content_type),
                    None if content_encoding is None else symbol(content_encoding),
                    _seconds_to_timestamp(self.expiry_time),
                    _seconds_to_timestamp(self.creation_time),
                    self.group_id,
                    _new(uint, self.group_sequence) if self.group_sequence else None,
                    self.reply_to_group_id,
                ]
            ),
        )

    def _encode_body(self, out: bytearray, body: Any, parts: list[bytes]) -> None:
        if type(body) is DataSections:
            for part in body:
                _binary_section(out, DATA, part, parts)
        elif type(body) is SequenceSections:
            for sequence in body:
                _section(out, AMQP_SEQUENCE, list(sequence))
        elif self.inferred and isinstance(body, (bytes, bytearray, memoryview)):
            _binary_section(out, DATA, body, parts)
        elif self.inferred and isinstance(body, list):
            _section(out, AMQP_SEQUENCE, body)
        elif type(body) is bytes:
            _binary_section(out, AMQP_VALUE, body, parts)
        else:
            _section(out, AMQP_VALUE, body)

    # -- decoding ------------------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview, body: bool = True) -> None:
        """Replace this message's contents with the message encoded in `data`.

        Raises `DecodeError` for bytes that are not a well-formed message: sections
        must come in the spec's order, each at most once (data and amqp-sequence
        sections may repeat), with one kind of body. With `body` false, decoding stops
        where the body starts: the body and footer stay unset and unchecked (a broker
        selecting messages reads only the sections before them).
        """
        if not isinstance(data, bytes):
            data = bytes(data)
        fields = self.__dict__
        fields.clear()
        body_parts: list[Any] = []
        body_kind = 0
        previous = 0
        pos = 0
        end = len(data)
        while pos < end:
            start = pos
            if pos + 3 < end and data[pos] == 0x00 and data[pos + 1] == 0x53:
                code = data[pos + 2]  # the compact descriptor every encoder uses
                pos += 3
            else:
                code, pos = _read_section_descriptor(data, pos)
            if not body and code in _BODIES:
                break
            expected = _ALLOWED_AFTER[previous].get(code, _Misplaced)
            if expected is _Misplaced:
                raise _misplaced(code, previous, start)
            previous = code
            value, pos = read_value(data, pos)
            if (
                expected is not None
                and type(value) is not expected
                and not _is_instance(value, expected)
            ):
                raise DecodeError(
                    f"{_SECTION_NAMES[code]} section holds {type(value).__name__}, "
                    f"not {expected.__name__}",
                    start,
                )
            if code == PROPERTIES:
                _copy_fields(fields, value, _PROPERTIES_FIELDS, "properties", start)
            elif code == APPLICATION_PROPERTIES:
                fields["properties"] = value
            elif code == AMQP_VALUE:
                fields["body"] = value
            elif code == HEADER:
                _copy_fields(fields, value, _HEADER_FIELDS, "header", start)
            elif code in _REPEATABLE:
                body_parts.append(value)
                body_kind = code
            else:
                fields[_MAP_SECTION_FIELDS[code]] = value
        if body_parts:
            fields["inferred"] = True
            if len(body_parts) == 1:
                fields["body"] = body_parts[0]
            elif body_kind == DATA:
                fields["body"] = DataSections(body_parts)
            else:
                fields["body"] = SequenceSections(body_parts)


#: A header or properties field: its attribute, the types it may hold, its conversion.
FieldSpec = tuple[str, tuple[type, ...], Callable[[Any], Any] | None]


def _copy_fields(
    fields: dict[str, Any],
    values: list[Any],
    specs: tuple[FieldSpec, ...],
    section: str,
    pos: int,
) -> None:
    """Copy the non-null `values` of a header or properties list into `fields`, checking
    each has its field's type and converting it to Proton's form. Fields beyond the ones
    we know are ignored."""
    for value, (name, allowed, convert) in zip(values, specs):  # noqa: B905 - may differ
        if value is not None:
            if type(value) not in allowed and not isinstance(value, allowed):
                raise DecodeError(
                    f"{section} field {name} has type {type(value).__name__}, "
                    f"expected {' or '.join(kind.__name__ for kind in allowed)}",
                    pos,
                )
            fields[name] = value if convert is None else convert(value)


def _milliseconds_to_seconds(value: int) -> float:
    return value / 1000


def _plain_id(value: Any) -> Any:
    # A ulong id reads back as a plain int, as in Proton (and encodes as a ulong again).
    return int(value) if type(value) is ulong else value


_REPR_ORDER = (
    "inferred", "address", "reply_to", "durable", "ttl", "priority", "first_acquirer",
    "delivery_count", "id", "correlation_id", "user_id", "group_id", "group_sequence",
    "reply_to_group_id", "instructions", "annotations", "properties", "body",
    "subject", "content_type", "content_encoding", "expiry_time", "creation_time", "footer",
)  # fmt: skip
_MESSAGE_ID = (ulong, uuid.UUID, bytes, str)
_HEADER_FIELDS: tuple[FieldSpec, ...] = (
    ("durable", (bool,), None),
    ("priority", (ubyte,), int),
    ("ttl", (uint,), _milliseconds_to_seconds),
    ("first_acquirer", (bool,), None),
    ("delivery_count", (uint,), int),
)
_PROPERTIES_FIELDS: tuple[FieldSpec, ...] = (
    ("id", _MESSAGE_ID, _plain_id),
    ("user_id", (bytes,), None),
    ("address", (str,), None),
    ("subject", (str,), None),
    ("reply_to", (str,), None),
    ("correlation_id", _MESSAGE_ID, _plain_id),
    ("content_type", (symbol,), None),
    ("content_encoding", (symbol,), None),
    ("expiry_time", (timestamp,), _milliseconds_to_seconds),
    ("creation_time", (timestamp,), _milliseconds_to_seconds),
    ("group_id", (str,), None),
    ("group_sequence", (uint,), int),
    ("reply_to_group_id", (str,), None),
)
_PROPERTY_FIELDS = frozenset(spec[0] for spec in _PROPERTIES_FIELDS)
_SECTION_TYPES: dict[int, type | None] = {  # None: any value
    HEADER: list, DELIVERY_ANNOTATIONS: dict, MESSAGE_ANNOTATIONS: dict, PROPERTIES: list,
    APPLICATION_PROPERTIES: dict, DATA: bytes, AMQP_SEQUENCE: list, AMQP_VALUE: None,
    FOOTER: dict,
}  # fmt: skip
_SECTION_NAMES = {code: name.split(":")[1] for name, code in _SECTION_SYMBOLS.items()}
_MAP_SECTION_FIELDS = {
    DELIVERY_ANNOTATIONS: "instructions", MESSAGE_ANNOTATIONS: "annotations", FOOTER: "footer",
}  # fmt: skip
_BODIES = frozenset((DATA, AMQP_SEQUENCE, AMQP_VALUE))
_REPEATABLE = frozenset((DATA, AMQP_SEQUENCE))
#: The sections that may follow each section (0: the start), in the spec's order:
#: each at most once, except data and amqp-sequence, and one kind of body.
#: Each maps the section's code to the type its value must have (None: any).
_ALLOWED_AFTER: dict[int, dict[int, type | None]] = {
    previous: {
        code: _SECTION_TYPES[code]
        for code in range(HEADER, FOOTER + 1)
        if (code > previous and not (previous in _BODIES and code in _BODIES))
        or (code == previous and code in _REPEATABLE)
    }
    for previous in (0, *range(HEADER, FOOTER + 1))
}


class _Misplaced:
    """What `_ALLOWED_AFTER` gives for a section that may not come next."""


def _misplaced(code: int, previous: int, pos: int) -> DecodeError:
    if code not in _SECTION_TYPES:
        return DecodeError(f"descriptor {code:#x} is not a message section", pos)
    if previous in _BODIES and code in _BODIES:
        return DecodeError("a message body mixes section kinds", pos)
    return DecodeError(f"{_SECTION_NAMES[code]} section out of order", pos)


def _is_instance(value: Any, expected: type) -> bool:
    # A function of its own so that type checkers keep `value` as Any at the call.
    return isinstance(value, expected)


def _read_section_descriptor(data: bytes, pos: int) -> tuple[int, int]:
    """Read `0x00 descriptor` at `pos`; return the section code and the position after."""
    if data[pos] != 0x00:
        raise DecodeError("expected a message section (a described value)", pos)
    descriptor, after = decode_from(data, pos + 1)
    if type(descriptor) is symbol:
        code = _SECTION_SYMBOLS.get(descriptor, 0)
    else:
        code = descriptor if type(descriptor) is ulong else 0
    if not HEADER <= code <= FOOTER:
        raise DecodeError(f"descriptor {descriptor!r} is not a message section", pos)
    return code, after


def _trim(values: list[Any]) -> list[Any]:
    while values and values[-1] is None:
        values.pop()
    return values


def _section(out: bytearray, code: int, value: Any) -> None:
    out += _SECTION_PREFIXES[code]
    encode_into(out, value)


#: A binary body this large is sent and received as its own piece, never copied whole
#: (`Message.encode_parts`, `MessageReader`); a smaller one costs less copied than cut.
LARGE_BINARY = 64 * 1024


def _binary_section(
    out: bytearray, code: int, value: bytes | bytearray | memoryview, parts: list[bytes]
) -> None:
    """A data section (or an amqp-value binary): `value` itself becomes a piece of
    `parts` when it is large bytes, after what `out` holds so far."""
    if type(value) is not bytes or len(value) < LARGE_BINARY:
        _section(out, code, bytes(value))
        return
    out += _SECTION_PREFIXES[code]
    out += _BINARY32_HEADER.pack(0xB0, len(value))
    parts.append(bytes(out))
    parts.append(value)
    out.clear()


# 0x00 (described) 0x53 (smallulong) code: the compact descriptor of each section.
_SECTION_PREFIXES = {code: bytes((0x00, 0x53, code)) for code in range(HEADER, FOOTER + 1)}
_BINARY32_HEADER = struct.Struct(">BI")


class MessageReader:
    """Puts a message together from the pieces it arrives in (the transfer frames of
    one delivery), so that a large binary body is collected into a bytes object of its
    own as it comes, and never copied whole: decoding the message at its end only
    decodes the sections around the body.

        reader = MessageReader()
        reader.feed(piece)      # each piece as it arrives, in order
        message = reader.message()

    `feed` never raises; what is wrong with the bytes, `message()` says (`DecodeError`,
    as `Message.decode` would). Only the section boundaries are read on the way, by the
    size every AMQP encoding announces (spec 1.2); anything unexpected just leaves the
    rest to `Message.decode`.
    """

    def __init__(self) -> None:
        # The message, less the large binaries: each of those is replaced by an empty
        # binary, its bytes kept in `_large` by its body section's place among them.
        self._head = bytearray()
        self._scanned: int | None = 0  # where the next section starts; None: stop looking
        self._body_sections = 0
        self._large: list[tuple[int, bytes]] = []
        self._collecting: io.BytesIO | None = None
        self._left = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            collecting = self._collecting
            if collecting is None:
                self._head += view
                self._scan()
                return
            taken = view[: self._left]
            collecting.write(taken)
            self._left -= len(taken)
            view = view[len(taken) :]
            if not self._left:
                self._large.append((self._body_sections - 1, collecting.getvalue()))
                self._collecting = None

    def message(self) -> Message:
        """The message, once every piece was fed; DecodeError if it is not one."""
        if self._collecting is not None:
            raise DecodeError(f"the message ends {self._left} bytes short of its body", 0)
        message = Message()
        message.decode(bytes(self._head))
        for index, value in self._large:
            if type(message.body) is DataSections:
                message.body[index] = value
            else:
                message.body = value
        return message

    def _scan(self) -> None:
        """Step over the whole sections in the head; at a large binary body that has
        not all arrived, start collecting its bytes apart."""
        head = self._head
        pos = self._scanned
        while pos is not None and pos < len(head):
            try:
                descriptor_end = _descriptor_end(head, pos)
                if descriptor_end is None:
                    break
                code, _ = _read_section_descriptor(bytes(head[pos:descriptor_end]), 0)
                if code in _BODIES and self._collect(descriptor_end):
                    self._body_sections += 1
                    pos = descriptor_end + 2  # after the empty binary put in its place
                    break
                end = _value_end(head, descriptor_end)
            except DecodeError:
                pos = None  # not for us to judge: Message.decode will say what is wrong
                break
            if end is None:
                break
            if code in _BODIES:
                self._body_sections += 1
            pos = end
        self._scanned = pos

    def _collect(self, start: int) -> bool:
        """If a large binary that has not all arrived starts at `start`, move what came
        of it out of the head, and collect the rest apart."""
        head = self._head
        if len(head) < start + 5 or head[start] != 0xB0:
            return False
        size = int.from_bytes(head[start + 1 : start + 5], "big")
        arrived = len(head) - start - 5
        if size < LARGE_BINARY or arrived >= size:
            return False
        collecting = self._collecting = _presized(size)
        collecting.write(memoryview(head)[start + 5 :])
        self._left = size - arrived
        head[start:] = b"\xa0\x00"  # an empty binary holds its place
        return True


#: The most `_presized` sets aside at once (what the peer says is coming may not come).
_MAX_PRESIZE = 64 * 1024 * 1024


def _presized(size: int) -> io.BytesIO:
    """A buffer to write `size` bytes into from its start, whose `getvalue()` is then
    those bytes without a copy. Made room for at once, it is never moved as it fills
    (a growing buffer is, a copy of all it holds each time the heap cannot extend it):
    `bytes(n)` is calloc'd memory, zero pages the writes touch a slice at a time, and
    BytesIO takes that bytes object as its buffer and writes into it in place, being
    its only holder."""
    return io.BytesIO(bytes(min(size, _MAX_PRESIZE)))


def _descriptor_end(data: bytearray, pos: int) -> int | None:
    """Where the descriptor of the section at `pos` ends (None: not all here yet).
    A section's descriptor is a ulong or a symbol, never itself described."""
    if data[pos] != 0x00 or (pos + 1 < len(data) and data[pos + 1] == 0x00):
        raise DecodeError("expected a message section", pos)
    return _value_end(data, pos + 1)


#: Values a described value may nest while `_value_end` steps over it: more than any
#: message holds, and few enough that hostile nesting costs nothing.
_MAX_STEPS = 64


def _value_end(data: bytearray, pos: int) -> int | None:
    """Where the encoded value at `pos` ends, or None if `data` ends first. The width
    comes from the constructor's subcategory (spec 1.2, the high nibble), so that any
    type, known or not, is stepped over; DecodeError for a byte that is none."""
    values = 1  # still to step over: a described value is a descriptor and a value
    for _ in range(_MAX_STEPS):
        if pos >= len(data):
            return None
        code = data[pos]
        category = code >> 4
        if code == 0x00:
            values += 1
            pos += 1
            continue
        if 0x4 <= category <= 0x9:
            pos += 1 + _FIXED_WIDTHS[category]
        elif 0xA <= category <= 0xF:
            size_width = 1 if category in (0xA, 0xC, 0xE) else 4
            if pos + 1 + size_width > len(data):
                return None
            pos += 1 + size_width + int.from_bytes(data[pos + 1 : pos + 1 + size_width], "big")
        else:
            raise DecodeError(f"constructor 0x{code:02x} has no width", pos)
        values -= 1
        if not values:
            return pos if pos <= len(data) else None
    raise DecodeError("values nested too deep to step over", pos)


#: Bytes after the constructor for each fixed-width subcategory (0x4 to 0x9).
_FIXED_WIDTHS = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}
