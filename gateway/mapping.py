"""How HTTP requests become AMQP messages and AMQP messages become HTTP answers and JSON.

Pure functions, no I/O: the routes for POST, WebSocket, SSE, long-poll and request/reply
all map messages through here, and every rule below is unit-testable on its own.

HTTP -> AMQP

- `message_from_body(body, content_type, headers)`: one POSTed body and its headers.
  ``application/json`` and other ``+json`` types become the decoded JSON as an
  amqp-value (so a tutorial receiver prints ``{'sequence': 1}``); ``text/*`` an
  amqp-value string decoded with the charset parameter (default UTF-8), whose media type
  is kept in ``content_type``; anything else, or no type, a data section (bytes) with
  ``content_type`` set (``application/octet-stream`` when missing). The envelope type
  `ENVELOPE_TYPE` is read by `message_from_envelope`.
- `amqp-<field>` headers set header and properties fields, by Proton's attribute names
  with ``-`` for ``_`` (table: `HEADER_FIELDS`); `amqp-app-<name>` sets the application
  property ``<name>`` to the header's value as a string, so ``amqp-app-colour: green`` is
  matched by the selector ``colour = 'green'``. Headers carry strings only: a typed
  property (a number a selector compares with ``>``) goes in an envelope, where "5" and
  5 cannot be confused. Header names are case-insensitive and arrive lowercased, so an
  application property name with capitals is written percent-encoded
  (``amqp-app-%4Eame``) or in an envelope. An unknown ``amqp-*`` header, or a value a
  field cannot take, is a 400 naming the header: a typo is never silently ignored.
- Header values are percent-decoded, then read as UTF-8 (``%25`` is a literal ``%``; a
  ``%`` that starts no ``%XX`` escape is a 400). Raw UTF-8 bytes are accepted too.
- Message ids (``amqp-id``, ``amqp-correlation-id``): a decimal number without leading
  zeros becomes a ulong, since the tutorial's receivers compare ids with numbers; any
  other value stays a string. A uuid, binary or digit-string id needs an envelope. No
  message id is set unless one is given.
- Times: ``amqp-ttl`` is seconds (a decimal, as Proton's ``Message.ttl``);
  ``amqp-creation-time`` and ``amqp-expiry-time`` are seconds since the Unix epoch or an
  ISO 8601 date-time with its UTC offset (``2024-05-01T12:00:00.250Z``).
- `message_from_envelope(value)`: an ``application/vnd.amqp.message+json`` object whose
  fields are Proton's ``Message`` attribute names (see `ENVELOPE_FIELDS`), holding typed
  JSON (below). Unknown fields are a 422. `envelopes_from_json` reads a batch (a JSON
  array), answering a `Message` or a `MappingError` per item, in order.
  `message_from_body` reads one envelope too, refusing ``amqp-*`` headers beside it.
- Bad input raises `MappingError`: its HTTP status (400 unreadable, 415 unsupported
  charset, 422 unmappable), a title, and a detail naming the header or JSON Pointer.
  `parse_json` and `is_envelope` are the steps routes need to tell a batch apart.

AMQP -> HTTP

- `message_to_json(message)`: the message as an envelope (only the fields that differ
  from their defaults), which `message_from_envelope` reads back into an equal message.
  `stream_frame(delivery, message)` is that plus the delivery handle, for WebSocket, SSE
  and long-poll frames; `binary_stream_frame` leaves a body of bytes out of it, for a
  WebSocket that takes bodies as binary frames.
- `http_reply(message)`: a request/reply answer: the body by its section and content
  type, fields as `amqp-*` headers and application properties as `amqp-app-*` headers,
  percent-encoded where HTTP could not carry them (see `http_reply`).

Typed JSON (`value_from_json`, `value_to_json`)

JSON null, booleans, strings, arrays and objects are AMQP null, boolean, string, list
and map (string keys); a JSON integer is a long and a number with a fraction or exponent
a double. Every AMQP type also has a tagged form ``{"$type": NAME, "value": V}``:

=========== ============================================ ===============================
NAME        V                                            example
=========== ============================================ ===============================
null        null                                         ``null``
boolean     true or false                                ``true``
ubyte       integer 0 .. 255                             ``{"$type":"ubyte","value":7}``
ushort      integer 0 .. 65535
uint        integer 0 .. 2**32-1
ulong       integer 0 .. 2**64-1                         ``{"$type":"ulong","value":5}``
byte        integer -128 .. 127
short       integer -32768 .. 32767
int         integer -2**31 .. 2**31-1
long        integer -2**63 .. 2**63-1                    ``5``
float       number (rounded to 32 bits)                  ``{"$type":"float","value":1.5}``
double      number                                       ``1.5``
decimal32   integer: the IEEE 754 bit pattern
decimal64   integer: the IEEE 754 bit pattern
decimal128  base64 of the 16-byte IEEE 754 bit pattern
char        a string of one code point                   ``{"$type":"char","value":"x"}``
timestamp   integer milliseconds since the Unix epoch    ``{"$type":"timestamp",
            (or an ISO 8601 date-time with offset)       "value":1714564800000}``
uuid        string ``8-4-4-4-12`` hex                    ``{"$type":"uuid","value":"..."}``
binary      base64 (RFC 4648, padded)                    ``{"$type":"binary",
                                                         "value":"aGk="}``
string      string                                       ``"hi"``
symbol      ASCII string                                 ``{"$type":"symbol","value":"x"}``
list        array of typed JSON                          ``[1, "a"]``
map         array of [key, value] pairs of typed JSON,   ``{"$type":"map",
            or an object (string keys)                   "value":[[1,"one"]]}``
described   plus ``"descriptor"``: see below             ``{"$type":"described",
                                                         "descriptor":"x:y","value":1}``
array       plus ``"type"`` (an element NAME other than  ``{"$type":"array","type":"int",
            described) and optionally ``"descriptor"``;  "value":[1,2,3]}``
            V is the elements, each written as its
            type's V (an array of arrays: tagged arrays)
=========== ============================================ ===============================

Map keys of different AMQP types are different keys, as in AMQP (``true``, ``1`` and
``1.0``; ``"a"`` and the symbol ``a``), though Python's dict would take them for one: such
a map's keys are made instances of subclasses that compare by type too.

Integers may also be written as decimal strings (``"18446744073709551615"``), for
JavaScript, whose numbers stop being exact at 2**53. Non-finite floats and doubles are
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (``{"$type":"double","value":"NaN"}``).
An object with a ``"$type"`` key is always a tagged value: a map with a ``"$type"`` key
is written ``{"$type":"map","value":{...}}``.

Descriptors and annotation keys are symbols or ulongs, so there a JSON string is a
symbol and a JSON integer a ulong; any other value is written tagged.

Typed JSON applies to envelopes and to `message_to_json`, never to ``application/json``
bodies, which are taken literally (an object with a "$type" key is just a map).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, cast
from urllib.parse import unquote_to_bytes

from amqp_core import (
    UNDESCRIBED,
    AMQPType,
    Array,
    DataSections,
    Described,
    Message,
    SequenceSections,
    byte,
    char,
    decimal32,
    decimal64,
    decimal128,
    float32,
    int32,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)
from amqp_core.codec import MAX_NESTING

__all__ = [
    "ENVELOPE_FIELDS",
    "ENVELOPE_TYPE",
    "HEADER_FIELDS",
    "HttpReply",
    "MappingError",
    "binary_stream_frame",
    "envelopes_from_json",
    "http_reply",
    "is_envelope",
    "message_from_body",
    "message_from_envelope",
    "message_to_json",
    "parse_json",
    "stream_frame",
    "value_from_json",
    "value_to_json",
]

#: The media type of a JSON envelope (one object) or a batch of them (an array).
ENVELOPE_TYPE = "application/vnd.amqp.message+json"
#: What a data section's content type is when the request gave none (RFC 9110 8.3).
DEFAULT_CONTENT_TYPE = "application/octet-stream"

HEADER_PREFIX = "amqp-"
APPLICATION_PROPERTY_PREFIX = "amqp-app-"

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_ULONG_MAX = 2**64 - 1
_ULONG_DIGITS = len(str(_ULONG_MAX))
_UINT_MAX = 2**32 - 1
#: The largest ttl in seconds: the header's ttl is a uint of milliseconds.
_TTL_MAX_SECONDS = _UINT_MAX / 1000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MILLISECOND = datetime.timedelta(milliseconds=1)
#: How much of a bad value an error detail quotes: enough to recognise it.
_SHOWN_LENGTH = 60


class MappingError(Exception):
    """Input that cannot become an AMQP message: `status` is the HTTP status to answer
    (400 unreadable, 415 unsupported media type, 422 readable but not mappable; 502 for
    a service's reply that cannot become an HTTP answer), `title`
    a short summary and `detail` what exactly is wrong, naming the header or the JSON
    Pointer (RFC 6901) of the culprit."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail

    def problem(self) -> dict[str, Any]:
        """The error as an RFC 9457 problem details object (application/problem+json)."""
        return {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }

    def __repr__(self) -> str:
        return f"MappingError({self.status}, {self.title!r}, {self.detail!r})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_LENGTH else text[: _SHOWN_LENGTH - 3] + "..."


def _bad_header(header: str, message: str) -> MappingError:
    return MappingError(400, "Invalid AMQP header", f"{header}: {message}")


def _invalid(pointer: str, message: str) -> MappingError:
    return MappingError(422, "Invalid AMQP value", f"{pointer}: {message}" if pointer else message)


def _child(pointer: str, key: str | int) -> str:
    """The JSON Pointer of `key` inside the value at `pointer`."""
    if type(key) is str:
        key = key.replace("~", "~0").replace("/", "~1")
    return f"{pointer}/{key}"


# ---------------------------------------------------------------------------------------
# JSON documents


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; RFC 8259 JSON does not, and accepting them
    # here would let a client send what no other JSON parser reads back.
    raise ValueError(f'{name} is not JSON; write {{"$type": "double", "value": "{name}"}}')


def parse_json(body: bytes | str) -> Any:
    """Decode a JSON document (UTF-8, -16 or -32). Invalid JSON is a 400."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise MappingError(400, "Invalid JSON", "JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise MappingError(400, "Invalid JSON", f"the body is not JSON: {error}") from None


def _checked_text(text: str, pointer: str) -> str:
    # JSON may escape a lone surrogate ("\ud800"), which no UTF-8 string can hold.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid(pointer, "a string with a lone surrogate is not Unicode text") from None
    return text


def _enter(pointer: str, depth: int) -> None:
    if depth >= MAX_NESTING:
        raise _invalid(
            pointer, f"values nest more than {MAX_NESTING} deep, more than AMQP peers decode"
        )


def _long(value: int, pointer: str) -> int:
    if _LONG_MIN <= value <= _LONG_MAX:
        return value
    hint = ' (a ulong is written {"$type": "ulong", "value": ...})' if value > 0 else ""
    raise _invalid(pointer, f"{value} does not fit an AMQP long{hint}")


_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _needs_checking(body: bytes) -> bool:
    """Whether a JSON body could hold what AMQP cannot: an integer beyond a long (19
    digits or more), a lone surrogate (an escape), or more nesting than peers decode.

    Walking every decoded value costs more than the rest of the mapping; these scans run
    at C speed and rule it out for nearly every body. A UTF-16 or -32 body (a NUL in its
    first bytes, RFC 8259 8.1) is always walked, since the scans read bytes."""
    return (
        b"\0" in body[:4]
        or body.count(b"[") + body.count(b"{") > MAX_NESTING
        or _LONG_DIGITS.search(body) is not None
        or _SURROGATE_ESCAPE.search(body) is not None
    )


def _check_plain_json(value: Any, pointer: str, depth: int) -> None:
    """Check that plain decoded JSON (no tagged values) is an AMQP value as it stands."""
    kind = type(value)
    if kind is str:
        _checked_text(value, pointer)
    elif kind is int:
        _long(value, pointer)
    elif kind is list:
        _enter(pointer, depth)
        for index, item in enumerate(value):
            _check_plain_json(item, _child(pointer, index), depth + 1)
    elif kind is dict:
        _enter(pointer, depth)
        for key, item in value.items():
            _checked_text(key, pointer)
            _check_plain_json(item, _child(pointer, key), depth + 1)


# ---------------------------------------------------------------------------------------
# Typed JSON -> AMQP values


def value_from_json(value: Any) -> Any:
    """The AMQP value that typed JSON (decoded, as from `json.loads`) stands for.
    Raises `MappingError` (422) naming the JSON Pointer of what is wrong."""
    return _from_json(value, "", 0)


def _from_json(value: Any, pointer: str, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        return _checked_text(value, pointer)
    if value is None or kind is bool or kind is float:
        return value
    if kind is int:
        return _long(value, pointer)
    if kind is list:
        _enter(pointer, depth)
        return [
            _from_json(item, _child(pointer, index), depth + 1) for index, item in enumerate(value)
        ]
    if kind is dict:
        if "$type" in value:
            return _tagged_from_json(value, pointer, depth)
        return _string_map(value, pointer, depth)
    raise _invalid(pointer, f"{kind.__name__} is not a JSON value")


def _string_map(value: dict[str, Any], pointer: str, depth: int) -> dict[str, Any]:
    _enter(pointer, depth)
    return {
        _key_text(key, pointer): _from_json(item, _child(pointer, key), depth + 1)
        for key, item in value.items()
    }


def _key_text(key: Any, pointer: str) -> str:
    if type(key) is not str:
        raise _invalid(pointer, f"an object's keys are strings, not {_shown(key)}")
    return _checked_text(key, pointer)


def _tagged_from_json(tagged: dict[str, Any], pointer: str, depth: int) -> Any:
    name = tagged["$type"]
    if type(name) is not str or name not in _TAGGED_FIELDS:
        raise _invalid(
            _child(pointer, "$type"),
            f"{_shown(name)} is not an AMQP type name; expected one of {', '.join(_TAGGED_FIELDS)}",
        )
    allowed = _TAGGED_FIELDS[name]
    unexpected = tagged.keys() - allowed
    if unexpected:
        raise _invalid(pointer, f"{name} has no field {', '.join(sorted(unexpected))}")
    if "value" not in tagged:
        raise _invalid(pointer, f'{name} needs a "value"')
    if name == "described":
        if "descriptor" not in tagged:
            raise _invalid(pointer, 'a described value needs a "descriptor"')
        _enter(pointer, depth)
        return Described(
            _symbolic_from_json(tagged["descriptor"], _child(pointer, "descriptor"), depth + 1),
            _from_json(tagged["value"], _child(pointer, "value"), depth + 1),
        )
    if name == "array":
        return _array_from_json(tagged, pointer, depth)
    return _VALUE_READERS[name](tagged["value"], _child(pointer, "value"), depth)


def _symbolic_from_json(value: Any, pointer: str, depth: int) -> Any:
    """A descriptor or an annotation key: a JSON string is a symbol, an integer a ulong."""
    if type(value) is str:
        return _symbol(value, pointer, depth)
    if type(value) is int:
        return _read_ulong(value, pointer, depth)
    return _from_json(value, pointer, depth)


_INTEGER_TEXT = re.compile(r"-?[0-9]{1,40}")  # a decimal string, for JavaScript's sake


def _integer(name: str, kind: Callable[[int], Any]) -> Callable[[Any, str, int], Any]:
    def read(value: Any, pointer: str, depth: int) -> Any:
        if type(value) is str and _INTEGER_TEXT.fullmatch(value):
            value = int(value)
        if type(value) is not int:
            raise _invalid(pointer, f"expected an integer for {name}, not {_shown(value)}")
        try:
            return kind(value)
        except ValueError as error:
            raise _invalid(pointer, str(error)) from None

    return read


_read_integer = _integer("long", int)


def _long_reader(value: Any, pointer: str, depth: int) -> int:
    return _long(_read_integer(value, pointer, depth), pointer)


_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _floating(name: str, kind: Callable[[float], Any]) -> Callable[[Any, str, int], Any]:
    def read(value: Any, pointer: str, depth: int) -> Any:
        if type(value) is str and value in _SPECIAL_FLOATS:
            value = _SPECIAL_FLOATS[value]
        elif type(value) is int:
            value = _int_to_float(value, pointer)
        if type(value) is not float:
            raise _invalid(
                pointer,
                f'expected a number, "NaN", "Infinity" or "-Infinity" for {name}, '
                f"not {_shown(value)}",
            )
        try:
            return kind(value)
        except ValueError as error:
            raise _invalid(pointer, str(error)) from None

    return read


def _int_to_float(value: int, pointer: str) -> float:
    try:
        return float(value)
    except OverflowError:
        raise _invalid(pointer, f"{_shown(value)} is beyond a double") from None


def _null(value: Any, pointer: str, depth: int) -> None:
    if value is not None:
        raise _invalid(pointer, f"a null is null, not {_shown(value)}")


def _boolean(value: Any, pointer: str, depth: int) -> bool:
    if type(value) is not bool:
        raise _invalid(pointer, f"a boolean is true or false, not {_shown(value)}")
    return value


def _string(value: Any, pointer: str, depth: int) -> str:
    if type(value) is not str:
        raise _invalid(pointer, f"expected a string, not {_shown(value)}")
    return _checked_text(value, pointer)


def _symbol(value: Any, pointer: str, depth: int) -> symbol:
    if type(value) is not str or not value.isascii():
        raise _invalid(pointer, f"a symbol is an ASCII string, not {_shown(value)}")
    return symbol(value)


def _char(value: Any, pointer: str, depth: int) -> char:
    if type(value) is not str or len(value) != 1 or 0xD800 <= ord(value) <= 0xDFFF:
        raise _invalid(pointer, f"a char is a string of one code point, not {_shown(value)}")
    return char(value)


def _base64(name: str, kind: Callable[[bytes], Any]) -> Callable[[Any, str, int], Any]:
    def read(value: Any, pointer: str, depth: int) -> Any:
        if type(value) is not str:
            raise _invalid(pointer, f"expected a base64 string for {name}, not {_shown(value)}")
        try:
            return kind(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError) as error:
            raise _invalid(pointer, f"not base64 for {name}: {error}") from None

    return read


_read_binary = _base64("binary", bytes)
_read_ulong = _integer("ulong", ulong)


def _uuid(value: Any, pointer: str, depth: int) -> uuid.UUID:
    if type(value) is str:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise _invalid(pointer, f"a uuid is a string of 32 hex digits, not {_shown(value)}")


def _milliseconds_from_iso(text: str) -> int | None:
    """Milliseconds since the epoch of an ISO 8601 date-time with an offset, or None."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // _MILLISECOND


def _timestamp(value: Any, pointer: str, depth: int) -> timestamp:
    if type(value) is str and not _INTEGER_TEXT.fullmatch(value):
        milliseconds = _milliseconds_from_iso(value)
        if milliseconds is None:
            raise _invalid(
                pointer,
                "a timestamp is integer milliseconds or an ISO 8601 "
                f"date-time with its UTC offset, not {_shown(value)}",
            )
        value = milliseconds
    result: timestamp = _read_timestamp(value, pointer, depth)
    return result


_read_timestamp = _integer("timestamp", timestamp)


def _list(value: Any, pointer: str, depth: int) -> list[Any]:
    if type(value) is not list:
        raise _invalid(pointer, f"a list is a JSON array, not {_shown(value)}")
    result: list[Any] = _from_json(value, pointer, depth)
    return result


def _map(value: Any, pointer: str, depth: int) -> dict[Any, Any]:
    """A map: an object (string keys) or an array of [key, value] pairs."""
    if type(value) is dict:
        return _string_map(value, pointer, depth)
    return _pairs(value, pointer, depth, _from_json)


def _pairs(
    value: Any, pointer: str, depth: int, read_key: Callable[[Any, str, int], Any]
) -> dict[Any, Any]:
    if type(value) is not list:
        raise _invalid(
            pointer, f"expected an object or an array of [key, value] pairs, not {_shown(value)}"
        )
    _enter(pointer, depth)
    result: dict[Any, Any] = {}
    typed_keys = False
    for index, pair in enumerate(value):
        at = _child(pointer, index)
        if type(pair) is not list or len(pair) != 2:
            raise _invalid(at, f"expected a [key, value] pair, not {_shown(pair)}")
        key = read_key(pair[0], _child(at, 0), depth + 1)
        item = _from_json(pair[1], _child(at, 1), depth + 1)
        if typed_keys:
            key = _typed_key(key)
        try:
            clash = key in result
        except TypeError:  # a list or map key: Python cannot hash it
            raise _invalid(_child(at, 0), "a map key cannot be a list, map or array") from None
        if clash and not typed_keys and _of_another_type(key, result):
            # Equal in Python, distinct in AMQP (true and 1, 1 and 1.0, "a" and the
            # symbol a): from here on every key compares by its type too.
            typed_keys = True
            result = {_typed_key(known): known_item for known, known_item in result.items()}
            key = _typed_key(key)
            clash = key in result
        if clash:
            raise _invalid(_child(at, 0), f"key {_shown(pair[0])} is given twice")
        result[key] = item
    return result


def _of_another_type(key: Any, keys: dict[Any, Any]) -> bool:
    """Whether the key of `keys` that equals `key` is of another type."""
    return next(type(known) is not type(key) for known in keys if known == key)


#: For each Python type whose values may equal values of another type (True == 1 == 1.0,
#: "a" == symbol("a")), a subclass whose values equal only values of the same type: an
#: AMQP map may hold keys that Python's dict would take for one.
_TYPED_KEY_TYPES: dict[type, type] = {}


def _typed_key(key: Any) -> Any:
    kind = type(key)
    # bool cannot be subclassed; the other keys, once typed, never equal a bool.
    if kind is bool or not isinstance(key, (int, float, str, bytes)):
        return key
    typed = _TYPED_KEY_TYPES.get(kind)
    if typed is None:
        if kind in _TYPED_KEY_TYPES.values():
            return key
        typed = _TYPED_KEY_TYPES[kind] = _typed_key_type(kind)
    return typed(key)


def _typed_key_type(base: type[Any]) -> type:
    # The unbound methods of `base` (mypy reads `base.__eq__` as bound).
    base_equals = cast(Callable[[Any, Any], Any], base.__eq__)
    base_hash = cast(Callable[[Any], int], base.__hash__)

    def equals(self: Any, other: object) -> bool:
        return type(other) is type(self) and base_equals(self, other) is True

    def differs(self: Any, other: object) -> bool:
        return not equals(self, other)

    def hashed(self: Any) -> int:
        return hash((base, base_hash(self)))

    namespace = {"__slots__": (), "__eq__": equals, "__ne__": differs, "__hash__": hashed}
    return type(base.__name__, (base,), namespace)


def _array_from_json(tagged: Any, pointer: str, depth: int) -> Array:
    if type(tagged) is not dict or tagged.get("$type") != "array":
        raise _invalid(
            pointer, f'expected a tagged array ({{"$type": "array", ...}}), not {_shown(tagged)}'
        )
    unexpected = tagged.keys() - _TAGGED_FIELDS["array"]
    if unexpected:
        raise _invalid(pointer, f"array has no field {', '.join(sorted(unexpected))}")
    element_name = tagged.get("type")
    element_type = _ELEMENT_TYPES.get(element_name) if type(element_name) is str else None
    if element_type is None:
        raise _invalid(
            _child(pointer, "type"),
            f"{_shown(element_name)} is not an array element type; "
            f"expected one of {', '.join(_ELEMENT_TYPES)}",
        )
    _enter(pointer, depth)
    descriptor: Any = UNDESCRIBED
    if "descriptor" in tagged:
        descriptor = _symbolic_from_json(
            tagged["descriptor"], _child(pointer, "descriptor"), depth + 1
        )
    elements = tagged.get("value")
    at = _child(pointer, "value")
    if type(elements) is not list:
        raise _invalid(at, f"an array's value is a JSON array, not {_shown(elements)}")
    read = _ELEMENT_READERS[element_type]
    return Array(
        descriptor,
        element_type,
        *(read(element, _child(at, index), depth + 1) for index, element in enumerate(elements)),
    )


# ---------------------------------------------------------------------------------------
# AMQP values -> typed JSON


def value_to_json(value: Any) -> Any:
    """`value` as typed JSON: plain JSON where that keeps the AMQP type, else tagged.
    `value_from_json` reads the result back to an equal value of the same AMQP type."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$type": "double", "value": _float_text(value)}
    if kind is list or kind is tuple:
        return [value_to_json(item) for item in value]
    if kind is dict:
        return _map_to_json(value)
    name = _TAG_OF_TYPE.get(kind)
    if name is not None:
        return {"$type": name, "value": _VALUE_WRITERS[name](value)}
    if isinstance(value, Described):
        return {
            "$type": "described",
            "descriptor": _symbolic_to_json(value.descriptor),
            "value": value_to_json(value.value),
        }
    if isinstance(value, Array):
        return _array_to_json(value)
    for typed_base, typed in _TYPED_KEY_TYPES.items():
        if kind is typed:
            return value_to_json(typed_base(value))
    for base, plain in _PLAIN_BASES:  # subclasses of the built-ins (an IntEnum, ...)
        if isinstance(value, base):
            return value_to_json(plain(value))
    raise TypeError(f"{value!r} ({kind.__qualname__}) is not an AMQP value")


def _float_text(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _map_to_json(value: dict[Any, Any]) -> Any:
    if all(type(key) is str for key in value):
        as_object = {key: value_to_json(item) for key, item in value.items()}
        return {"$type": "map", "value": as_object} if "$type" in value else as_object
    return {"$type": "map", "value": _pairs_to_json(value, value_to_json)}


def _pairs_to_json(value: dict[Any, Any], write_key: Callable[[Any], Any]) -> list[Any]:
    return [[write_key(key), value_to_json(item)] for key, item in value.items()]


def _symbolic_to_json(value: Any) -> Any:
    """A descriptor or annotation key: a symbol as a string, a ulong as an integer."""
    kind = type(value)
    if kind is symbol:
        return str(value)
    if kind is ulong:
        return int(value)
    if kind is str:
        return {"$type": "string", "value": value}
    if kind is int:
        return {"$type": "long", "value": value}
    return value_to_json(value)


def _base64_text(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


def _array_to_json(value: Array) -> dict[str, Any]:
    result: dict[str, Any] = {"$type": "array", "type": _ELEMENT_NAMES[value.type]}
    if value.descriptor is not UNDESCRIBED:
        result["descriptor"] = _symbolic_to_json(value.descriptor)
    write = _ELEMENT_WRITERS[value.type]
    result["value"] = [write(element) for element in value.elements]
    return result


def _element_map_to_json(value: dict[Any, Any]) -> Any:
    if all(type(key) is str for key in value):
        return {key: value_to_json(item) for key, item in value.items()}
    return _pairs_to_json(value, value_to_json)


# Each AMQP type's name in typed JSON, what it is in Python, and how its "value" is read
# and written. Arrays and described values have fields beyond "value" and are handled
# on their own.
_TYPES: tuple[tuple[str, Any, Callable[[Any, str, int], Any], Callable[[Any], Any]], ...] = (
    ("null", type(None), _null, lambda value: None),
    ("boolean", bool, _boolean, bool),
    ("ubyte", ubyte, _integer("ubyte", ubyte), int),
    ("ushort", ushort, _integer("ushort", ushort), int),
    ("uint", uint, _integer("uint", uint), int),
    ("ulong", ulong, _integer("ulong", ulong), int),
    ("byte", byte, _integer("byte", byte), int),
    ("short", short, _integer("short", short), int),
    ("int", int32, _integer("int", int32), int),
    ("long", int, _long_reader, int),
    ("float", float32, _floating("float", float32), lambda value: _float_text(float(value))),
    ("double", float, _floating("double", float), lambda value: _float_text(float(value))),
    ("decimal32", decimal32, _integer("decimal32", decimal32), int),
    ("decimal64", decimal64, _integer("decimal64", decimal64), int),
    ("decimal128", decimal128, _base64("decimal128", decimal128), _base64_text),
    ("char", char, _char, str),
    ("timestamp", timestamp, _timestamp, int),
    ("uuid", uuid.UUID, _uuid, str),
    ("binary", bytes, _read_binary, _base64_text),
    ("string", str, _string, str),
    ("symbol", symbol, _symbol, str),
    ("list", list, _list, value_to_json),
    ("map", dict, _map, _element_map_to_json),
)
_VALUE_READERS = {name: read for name, _, read, _ in _TYPES}
_VALUE_WRITERS = {name: write for name, _, _, write in _TYPES}
#: The types whose values are always written tagged.
_TAG_OF_TYPE: dict[type, str] = {
    kind: name
    for name, kind, _, _ in _TYPES
    if kind not in (type(None), bool, int, float, str, list, dict)
}
_TAG_OF_TYPE[bytearray] = _TAG_OF_TYPE[memoryview] = "binary"
#: Other subclasses of these are written as the base type, as amqp_core encodes them.
_PLAIN_BASES: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (int, int),
    (float, float),
    (str, str),
    (bytes, bytes),
    (list, list),
    (dict, dict),
)
_TAGGED_FIELDS: dict[str, frozenset[str]] = {
    **{name: frozenset(("$type", "value")) for name, *_ in _TYPES},
    "described": frozenset(("$type", "descriptor", "value")),
    "array": frozenset(("$type", "type", "descriptor", "value")),
}
_ELEMENT_NAMES: dict[AMQPType, str] = {
    AMQPType.NULL: "null",
    AMQPType.BOOL: "boolean",
    AMQPType.UBYTE: "ubyte",
    AMQPType.BYTE: "byte",
    AMQPType.USHORT: "ushort",
    AMQPType.SHORT: "short",
    AMQPType.UINT: "uint",
    AMQPType.INT: "int",
    AMQPType.CHAR: "char",
    AMQPType.ULONG: "ulong",
    AMQPType.LONG: "long",
    AMQPType.TIMESTAMP: "timestamp",
    AMQPType.FLOAT: "float",
    AMQPType.DOUBLE: "double",
    AMQPType.DECIMAL32: "decimal32",
    AMQPType.DECIMAL64: "decimal64",
    AMQPType.DECIMAL128: "decimal128",
    AMQPType.UUID: "uuid",
    AMQPType.BINARY: "binary",
    AMQPType.STRING: "string",
    AMQPType.SYMBOL: "symbol",
    AMQPType.LIST: "list",
    AMQPType.MAP: "map",
    AMQPType.ARRAY: "array",
}
#: Array element types by name (amqp_core encodes no array of described elements: an
#: array's descriptor describes every element instead).
_ELEMENT_TYPES = {name: kind for kind, name in _ELEMENT_NAMES.items()}
_ELEMENT_READERS: dict[AMQPType, Callable[[Any, str, int], Any]] = {
    kind: _array_from_json if kind is AMQPType.ARRAY else _VALUE_READERS[name]
    for kind, name in _ELEMENT_NAMES.items()
}
_ELEMENT_WRITERS: dict[AMQPType, Callable[[Any], Any]] = {
    kind: _array_to_json if kind is AMQPType.ARRAY else _VALUE_WRITERS[name]
    for kind, name in _ELEMENT_NAMES.items()
}


# ---------------------------------------------------------------------------------------
# Message fields in envelopes


def _message_id(value: Any, pointer: str) -> Any:
    """A message or correlation id: an unsigned integer (a ulong, as Proton sends a
    Python int), a string, or a tagged ulong, uuid, binary or string."""
    if type(value) is int:
        if 0 <= value <= _ULONG_MAX:
            return value
    elif type(value) is str:
        return _checked_text(value, pointer)
    elif type(value) is dict:
        result = _from_json(value, pointer, 0)
        if type(result) in (ulong, uuid.UUID, bytes, str):
            return result
    raise _invalid(
        pointer,
        "a message id is an unsigned integer, a string, or a tagged "
        f"ulong, uuid or binary, not {_shown(value)}",
    )


def _message_id_to_json(value: Any) -> Any:
    if type(value) is ulong:
        return int(value)
    return value_to_json(value)


def _user_id(value: Any, pointer: str) -> bytes:
    """Binary: a string stands for its UTF-8 bytes (user ids are usually names)."""
    if type(value) is str:
        return _checked_text(value, pointer).encode("utf-8")
    result = _from_json(value, pointer, 0)
    if type(result) is not bytes:
        raise _invalid(pointer, f"a user id is a string or a tagged binary, not {_shown(value)}")
    return result


def _user_id_to_json(value: bytes | str) -> Any:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return value_to_json(bytes(value))


def _text_field(value: Any, pointer: str) -> str:
    return _string(value, pointer, 0)


def _symbol_field(value: Any, pointer: str) -> symbol:
    return _symbol(value, pointer, 0)


def _flag(value: Any, pointer: str) -> bool:
    return _boolean(value, pointer, 0)


def _bounded_integer(high: int) -> Callable[[Any, str], int]:
    def read(value: Any, pointer: str) -> int:
        if type(value) is not int or not 0 <= value <= high:
            raise _invalid(pointer, f"expected an integer in [0, {high}], not {_shown(value)}")
        return value

    return read


def _seconds(value: Any, pointer: str) -> float:
    if type(value) is int:
        value = _int_to_float(value, pointer)
    if type(value) is not float or not math.isfinite(value):
        raise _invalid(pointer, f"expected a number of seconds, not {_shown(value)}")
    return value


def _ttl(value: Any, pointer: str) -> float:
    seconds = _seconds(value, pointer)
    if not 0 <= seconds <= _TTL_MAX_SECONDS:
        raise _invalid(pointer, f"a ttl is in [0, {_TTL_MAX_SECONDS}] seconds, not {value}")
    return seconds


def _time(value: Any, pointer: str) -> float:
    """Seconds since the epoch (Proton's unit), or an ISO 8601 date-time with offset."""
    if type(value) is str:
        milliseconds = _milliseconds_from_iso(value)
        if milliseconds is None:
            raise _invalid(
                pointer,
                "expected seconds since the epoch or an ISO 8601 "
                f"date-time with its UTC offset, not {_shown(value)}",
            )
        seconds = milliseconds / 1000
    else:
        seconds = _seconds(value, pointer)
    if not _LONG_MIN <= seconds * 1000 <= _LONG_MAX:
        raise _invalid(pointer, f"{value} is beyond an AMQP timestamp")
    return seconds


def _scalar_value(value: Any, pointer: str, depth: int) -> Any:
    result = _from_json(value, pointer, depth)
    if type(result) in (list, dict, Array):
        raise _invalid(
            pointer,
            "application property values are simple types, not lists, maps or arrays (AMQP 3.2.5)",
        )
    return result


def _application_properties(value: Any, pointer: str) -> dict[Any, Any]:
    """An object of property names to typed values; or [name, value] pairs for keys
    that are not strings (which only nonconforming peers send)."""
    if type(value) is dict:
        _enter(pointer, 0)
        return {
            _checked_text(key, pointer): _scalar_value(item, _child(pointer, key), 1)
            for key, item in value.items()
        }
    properties = _pairs(value, pointer, 0, _from_json)
    for index, item in enumerate(properties.values()):
        if type(item) in (list, dict, Array):
            raise _invalid(
                _child(_child(pointer, index), 1),
                "application property values are simple types, not lists, maps or arrays",
            )
    return properties


def _properties_to_json(value: dict[Any, Any]) -> Any:
    if all(type(key) is str for key in value):
        return {key: value_to_json(item) for key, item in value.items()}
    return _pairs_to_json(value, value_to_json)


def _annotations(value: Any, pointer: str) -> dict[Any, Any]:
    """Annotation keys are symbols (or ulongs): an object's keys become symbols; pairs
    read keys as descriptors are read (a string is a symbol, an integer a ulong)."""
    if type(value) is dict:
        _enter(pointer, 0)
        return {
            _symbol(key, _child(pointer, key), 1): _from_json(item, _child(pointer, key), 1)
            for key, item in value.items()
        }
    return _pairs(value, pointer, 0, _symbolic_from_json)


def _annotations_to_json(value: dict[Any, Any]) -> Any:
    # Plain string keys go as symbols too: Message sends them as symbols, as Proton does.
    if all(type(key) is symbol or type(key) is str for key in value):
        return {str(key): value_to_json(item) for key, item in value.items()}
    return _pairs_to_json(value, _symbolic_to_json)


#: The envelope's fields (Proton's Message attribute names, and `body_encoding`): how
#: each is read, and how it is written by `message_to_json`. The body is read on its own.
_FIELD_READERS: dict[str, Callable[[Any, str], Any]] = {
    "id": _message_id,
    "correlation_id": _message_id,
    "address": _text_field,
    "subject": _text_field,
    "reply_to": _text_field,
    "content_type": _symbol_field,
    "content_encoding": _symbol_field,
    "user_id": _user_id,
    "group_id": _text_field,
    "group_sequence": _bounded_integer(_UINT_MAX),
    "reply_to_group_id": _text_field,
    "creation_time": _time,
    "expiry_time": _time,
    "durable": _flag,
    "priority": _bounded_integer(255),
    "ttl": _ttl,
    "first_acquirer": _flag,
    "delivery_count": _bounded_integer(_UINT_MAX),
    "inferred": _flag,
    "properties": _application_properties,
    "annotations": _annotations,
    "instructions": _annotations,
    "footer": _annotations,
}
_FIELD_WRITERS: dict[str, Callable[[Any], Any]] = {
    "id": _message_id_to_json,
    "correlation_id": _message_id_to_json,
    "address": str,
    "subject": str,
    "reply_to": str,
    "content_type": str,
    "content_encoding": str,
    "user_id": _user_id_to_json,
    "group_id": str,
    "group_sequence": int,
    "reply_to_group_id": str,
    "creation_time": float,
    "expiry_time": float,
    "durable": bool,
    "priority": int,
    "ttl": float,
    "first_acquirer": bool,
    "delivery_count": int,
    "properties": _properties_to_json,
    "annotations": _annotations_to_json,
    "instructions": _annotations_to_json,
    "footer": _annotations_to_json,
}
#: Every field an envelope may have.
ENVELOPE_FIELDS = frozenset((*_FIELD_READERS, "body", "body_encoding"))


# ---------------------------------------------------------------------------------------
# Envelopes -> messages


def message_from_envelope(value: Any) -> Message:
    """The message a decoded ``application/vnd.amqp.message+json`` object describes.

    Its fields are Proton's ``Message`` attribute names (`ENVELOPE_FIELDS`); null means
    the field's default. ``body`` is typed JSON sent as an amqp-value, or, with
    ``"body_encoding": "base64"``, base64 bytes sent as a data section (a list of base64
    strings: several data sections; with ``"inferred": false``: an amqp-value binary).
    ``"inferred": true`` with a list body sends an amqp-sequence, as in Proton. Times are
    Proton's seconds (creation and expiry time may also be ISO 8601). Anything else is a
    `MappingError` (422) naming the field.
    """
    if type(value) is not dict:
        raise MappingError(
            422, "Invalid envelope", f"an envelope is a JSON object, not {_shown(value)}"
        )
    unknown = value.keys() - ENVELOPE_FIELDS
    if unknown:
        raise MappingError(
            422,
            "Invalid envelope",
            f"unknown field {', '.join(sorted(unknown))}; "
            f"an envelope has {', '.join(sorted(ENVELOPE_FIELDS))}",
        )
    message = Message()
    for name, field in value.items():
        if field is not None and name in _FIELD_READERS:
            setattr(message, name, _FIELD_READERS[name](field, "/" + name))
    encoding = value.get("body_encoding")
    if encoding is not None:
        if value.get("inferred") is None:
            message.inferred = True  # bytes travel as a data section unless told otherwise
        message.body = _base64_body(value.get("body"), encoding, message.inferred)
    elif value.get("body") is not None:
        message.body = _from_json(value["body"], "/body", 0)
    return message


def _base64_body(body: Any, encoding: Any, inferred: bool) -> bytes | DataSections:
    if encoding != "base64":
        raise _invalid(
            "/body_encoding", f'the only body_encoding is "base64", not {_shown(encoding)}'
        )
    if type(body) is str:
        result: bytes = _read_binary(body, "/body", 0)
        return result
    if type(body) is list and inferred:
        return DataSections(
            _read_binary(part, _child("/body", index), 0) for index, part in enumerate(body)
        )
    raise _invalid(
        "/body",
        "a base64 body is a string (or, for several data sections, "
        f"a list of strings), not {_shown(body)}",
    )


def envelopes_from_json(value: Any) -> list[Message | MappingError]:
    """A batch: one `Message` or `MappingError` per envelope of a decoded JSON array, in
    order, so that each result can be answered on its own (207). Raises `MappingError`
    (422) if `value` is not an array."""
    if type(value) is not list:
        raise MappingError(
            422, "Invalid envelope", f"a batch is a JSON array of envelopes, not {_shown(value)}"
        )
    results: list[Message | MappingError] = []
    for item in value:
        try:
            results.append(message_from_envelope(item))
        except MappingError as error:
            results.append(error)
    return results


# ---------------------------------------------------------------------------------------
# HTTP requests -> messages


def is_envelope(content_type: str | None) -> bool:
    """Whether a Content-Type is the JSON envelope (one message, or an array: a batch)."""
    return content_type is not None and _media_type(content_type) == ENVELOPE_TYPE


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _parse_content_type(content_type: str) -> tuple[str, dict[str, str]]:
    """The lowercased media type and the parameters (names lowercased) of a Content-Type."""
    media_type, _, rest = content_type.partition(";")
    media_type = media_type.strip().lower()
    top, slash, sub = media_type.partition("/")
    if not (slash and _TOKEN.fullmatch(top) and _TOKEN.fullmatch(sub)):
        raise MappingError(
            400,
            "Invalid Content-Type",
            f"Content-Type: {_shown(content_type)} is not a media type (type/subtype)",
        )
    parameters = {}
    for parameter in rest.split(";"):
        name, equals, value = parameter.partition("=")
        if equals:
            parameters[name.strip().lower()] = value.strip().strip('"')
    return media_type, parameters


def _without_charset(content_type: str) -> str:
    """A text Content-Type less its charset: the body is a Unicode string now."""
    media_type, *parameters = content_type.split(";")
    kept = [p.strip() for p in parameters if p.partition("=")[0].strip().lower() != "charset"]
    return "; ".join([media_type.strip().lower(), *kept])


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")  # RFC 9110 5.6.2, lowercased


def message_from_body(body: bytes, content_type: str | None, headers: Mapping[str, str]) -> Message:
    """The message for a POSTed body, its Content-Type and its request headers.

    `headers` may be any mapping; Starlette's `Headers` is read with every repeated
    header (`items()`), so a field given twice is a 400 rather than a silent pick.
    Raises `MappingError` (400, 415 or 422) for input that cannot be mapped.
    """
    fields, properties = _fields_from_headers(headers.items())
    if not content_type or not content_type.strip():
        message = Message(body=body, inferred=True, content_type=DEFAULT_CONTENT_TYPE)
    else:
        media_type, parameters = _parse_content_type(content_type)
        if media_type == ENVELOPE_TYPE:
            if fields or properties:
                raise _bad_header(
                    next(iter(fields), "amqp-app-*"),
                    "an envelope carries its fields itself, so amqp-* headers cannot join it",
                )
            value = parse_json(body)
            if type(value) is not dict:
                raise MappingError(
                    422,
                    "Invalid envelope",
                    f"expected one envelope (a JSON object), not {_shown(value)}",
                )
            return message_from_envelope(value)
        if media_type == "application/json" or media_type.endswith("+json"):
            value = parse_json(body)
            if _needs_checking(body):
                _check_plain_json(value, "", 0)
            message = Message(body=value)
        elif media_type.startswith("text/"):
            message = Message(
                body=_decoded_text(body, parameters.get("charset", "utf-8")),
                content_type=_ascii_content_type(_without_charset(content_type)),
            )
        else:
            message = Message(
                body=body, inferred=True, content_type=_ascii_content_type(content_type)
            )
    for attribute, value in fields.values():
        setattr(message, attribute, value)
    if properties:
        message.properties = properties
    return message


def _decoded_text(body: bytes, charset: str) -> str:
    try:
        text = body.decode(charset)
    except UnicodeError as error:
        # Not only UnicodeDecodeError: idna and punycode raise plain UnicodeError.
        raise MappingError(
            400, "Undecodable text", f"the body is not {charset} text: {error}"
        ) from None
    except (LookupError, ValueError):  # unknown, not a text encoding, or a NUL in the name
        raise MappingError(
            415,
            "Unsupported charset",
            f"Content-Type: charset {_shown(charset)} is not a text encoding this gateway knows",
        ) from None
    try:
        return _checked_text(text, "")
    except MappingError:
        raise MappingError(
            400, "Undecodable text", f"the body's {charset} text holds a lone surrogate"
        ) from None


def _ascii_content_type(content_type: str) -> str:
    content_type = content_type.strip()
    if not content_type.isascii():
        raise MappingError(
            400, "Invalid Content-Type", f"Content-Type: {_shown(content_type)} is not ASCII"
        )
    return content_type


# Header values


def _header_bytes(value: str) -> bytes:
    # ASGI servers hand header values over as latin-1 decoded bytes; anything beyond
    # latin-1 was given as real text (by a test, or another caller).
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _percent_decoded(value: str, header: str) -> bytes:
    raw = _header_bytes(value)
    if b"%" not in raw:
        return raw
    if _BAD_PERCENT.search(raw):
        raise _bad_header(header, f"{_shown(value)}: a % starts a %XX escape (write %25 for %)")
    return unquote_to_bytes(raw)


def _header_text(value: str, header: str) -> str:
    if value.isascii() and "%" not in value:
        return value
    try:
        return _percent_decoded(value, header).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_header(
            header, f"{_shown(value)} is not UTF-8 (percent-encode its UTF-8 bytes)"
        ) from None


def _id_header(value: str, header: str) -> int | str:
    if _DECIMAL.fullmatch(value):
        # Measured before int(): Python refuses to convert more than 4,300 digits.
        if len(value) > _ULONG_DIGITS or int(value) > _ULONG_MAX:
            raise _bad_header(
                header,
                f"{_shown(value)} is beyond a ulong id; send a string id of digits in an envelope",
            )
        return int(value)
    return _header_text(value, header)


_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # no leading zeros: "007" stays a string


def _user_id_header(value: str, header: str) -> bytes:
    return _percent_decoded(value, header)


def _symbol_header(value: str, header: str) -> str:
    text = _header_text(value, header)
    if not text.isascii():
        raise _bad_header(header, f"{_shown(text)} is not ASCII")
    return text


def _uint_header(high: int) -> Callable[[str, str], int]:
    most_digits = len(str(high))

    def read(value: str, header: str) -> int:
        text = value.strip()
        # Zeros dropped and length measured before int(), which refuses 4,300 digits.
        digits = text.lstrip("0") or "0"
        if (
            not (text.isascii() and text.isdigit())
            or len(digits) > most_digits
            or int(digits) > high
        ):
            raise _bad_header(header, f"{_shown(value)} is not an integer in [0, {high}]")
        return int(digits)

    return read


def _flag_header(value: str, header: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise _bad_header(header, f"{_shown(value)} is not true or false")
    return text == "true"


_DECIMAL_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _ttl_header(value: str, header: str) -> float:
    text = value.strip()
    if not _DECIMAL_NUMBER.fullmatch(text) or not 0 <= float(text) <= _TTL_MAX_SECONDS:
        raise _bad_header(
            header, f"{_shown(value)} is not a number of seconds in [0, {_TTL_MAX_SECONDS}]"
        )
    return float(text)


def _time_header(value: str, header: str) -> float:
    text = value.strip()
    if _DECIMAL_NUMBER.fullmatch(text):
        seconds = float(text)
    else:
        milliseconds = _milliseconds_from_iso(text)
        if milliseconds is None:
            raise _bad_header(
                header,
                f"{_shown(value)} is neither seconds since the epoch "
                "nor an ISO 8601 date-time with its UTC offset",
            )
        seconds = milliseconds / 1000
    if not _LONG_MIN <= seconds * 1000 <= _LONG_MAX:
        raise _bad_header(header, f"{_shown(value)} is beyond an AMQP timestamp")
    return seconds


#: The `amqp-*` request headers: the Message attribute each sets and how its value is
#: read. Proton's attribute names, with "-" for "_".
HEADER_FIELDS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "amqp-id": ("id", _id_header),
    "amqp-correlation-id": ("correlation_id", _id_header),
    "amqp-subject": ("subject", _header_text),
    "amqp-reply-to": ("reply_to", _header_text),
    "amqp-user-id": ("user_id", _user_id_header),
    "amqp-group-id": ("group_id", _header_text),
    "amqp-group-sequence": ("group_sequence", _uint_header(_UINT_MAX)),
    "amqp-reply-to-group-id": ("reply_to_group_id", _header_text),
    "amqp-content-encoding": ("content_encoding", _symbol_header),
    "amqp-creation-time": ("creation_time", _time_header),
    "amqp-expiry-time": ("expiry_time", _time_header),
    "amqp-ttl": ("ttl", _ttl_header),
    "amqp-priority": ("priority", _uint_header(255)),
    "amqp-durable": ("durable", _flag_header),
    "amqp-first-acquirer": ("first_acquirer", _flag_header),
    "amqp-delivery-count": ("delivery_count", _uint_header(_UINT_MAX)),
}
#: Fields a client might expect as headers that come from elsewhere: refused with the
#: reason, so that two sources never disagree.
_REFUSED_HEADERS = {
    "amqp-address": "the address is the request's path",
    "amqp-to": "the address is the request's path",
    "amqp-content-type": "the content type is the Content-Type header",
}


def _fields_from_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[dict[str, tuple[str, Any]], dict[str, str]]:
    """The fields the `amqp-*` headers set (header -> (attribute, value)) and the
    application properties the `amqp-app-*` headers set."""
    fields: dict[str, tuple[str, Any]] = {}
    properties: dict[str, str] = {}
    for raw_name, value in headers:
        name = raw_name.lower()
        if not name.startswith(HEADER_PREFIX):
            continue
        if name.startswith(APPLICATION_PROPERTY_PREFIX):
            key = _header_text(name[len(APPLICATION_PROPERTY_PREFIX) :], raw_name)
            if not key:
                raise _bad_header(raw_name, "an application property needs a name")
            if key in properties:
                raise _bad_header(raw_name, f"application property {key!r} is given twice")
            properties[key] = _header_text(value, raw_name)
            continue
        field = HEADER_FIELDS.get(name)
        if field is None:
            reason = _REFUSED_HEADERS.get(
                name,
                f"unknown header; the amqp-* headers are {', '.join(HEADER_FIELDS)} "
                "and amqp-app-<name>",
            )
            raise _bad_header(raw_name, reason)
        if name in fields:
            raise _bad_header(raw_name, "given twice")
        attribute, read = field
        fields[name] = (attribute, read(value, name))
    return fields, properties


# ---------------------------------------------------------------------------------------
# Messages -> JSON


def message_to_json(message: Message) -> dict[str, Any]:
    """The message as an envelope: the fields that differ from their defaults, then
    ``body``. `message_from_envelope` reads it back into an equal message, but for a
    body of several amqp-sequence sections, which comes back as one.

    The body is typed JSON (a JSON value as itself, a string as a string); bytes (a
    data section or an amqp-value binary) are base64, marked ``"body_encoding":
    "base64"``, with ``"inferred": false`` for an amqp-value binary. An amqp-sequence
    is a list marked ``"inferred": true``. A message without a body has ``"body": null``.
    """
    result = _fields_to_json(message)
    body = message.body
    kind = type(body)
    # In the order Message.encode reads the body, so that each is shown as it is sent.
    if kind is DataSections:
        result["body_encoding"] = "base64"
        result["body"] = [_base64_text(part) for part in body]
    elif kind is SequenceSections:
        result["inferred"] = True
        result["body"] = [value_to_json(item) for section in body for item in section]
    elif message.inferred and isinstance(body, _BYTES):
        result["body_encoding"] = "base64"
        result["body"] = _base64_text(body)
    elif message.inferred and isinstance(body, list):
        result["inferred"] = True
        result["body"] = value_to_json(body)
    elif kind in _BYTES:  # an amqp-value binary
        result["body_encoding"] = "base64"
        result["inferred"] = False
        result["body"] = _base64_text(body)
    else:
        result["body"] = value_to_json(body)
    return result


def _fields_to_json(message: Message) -> dict[str, Any]:
    """The message's fields that differ from their defaults, as typed JSON."""
    result: dict[str, Any] = {}
    for name, write in _FIELD_WRITERS.items():
        value = getattr(message, name)
        if value is not None and value != _DEFAULTS[name]:
            result[name] = write(value)
    return result


_BYTES = (bytes, bytearray, memoryview)
_DEFAULTS = {name: getattr(Message, name) for name in Message.FIELDS}


def stream_frame(delivery: int | str, message: Message) -> dict[str, Any]:
    """One WebSocket, SSE or long-poll frame: the delivery handle a client acknowledges
    with as ``id`` (``{"ack": <id>}``), then `message_to_json`'s fields, the message's
    own id being ``message_id``."""
    return _framed(delivery, message_to_json(message))


def binary_stream_frame(delivery: int | str, message: Message) -> tuple[dict[str, Any], bytes]:
    """A WebSocket frame for a stream whose client takes bodies as binary frames: a body
    of bytes (one data section, or an amqp-value binary, which also says ``"inferred":
    false``) is left out of the frame, which says ``"body_encoding": "binary"`` and
    ``"body_size"``, and comes back apart, for the binary frames that follow this one.
    Any other body stays in the frame as `stream_frame` has it (the bytes: empty)."""
    body = message.body
    if type(body) is DataSections or not isinstance(body, _BYTES):
        return stream_frame(delivery, message), b""
    fields = _fields_to_json(message)
    if not message.inferred:
        fields["inferred"] = False
    fields["body_encoding"] = "binary"
    fields["body_size"] = len(body)
    return _framed(delivery, fields), bytes(body)


def base64_stream_frame(
    delivery: int | str, message: Message
) -> tuple[dict[str, Any], bytes | bytearray | memoryview | None]:
    """`stream_frame` without a body of bytes (one data section, or an amqp-value
    binary), which comes back apart: its base64, as the string ``"body"`` last in the
    frame, is then the frame `stream_frame` makes, for a caller that encodes a large
    body a slice at a time. None apart (and the body in the frame) for other bodies."""
    body = message.body
    if not (message.inferred and isinstance(body, _BYTES) or type(body) in _BYTES):
        return stream_frame(delivery, message), None
    fields = _fields_to_json(message)
    fields["body_encoding"] = "base64"
    if not message.inferred:
        fields["inferred"] = False
    return _framed(delivery, fields), body


def _framed(delivery: int | str, fields: dict[str, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = {"id": delivery}
    if "id" in fields:
        frame["message_id"] = fields.pop("id")
    frame.update(fields)
    return frame


# ---------------------------------------------------------------------------------------
# Messages -> HTTP answers


class HttpReply(NamedTuple):
    """An HTTP answer's body, Content-Type and other headers."""

    body: bytes
    content_type: str
    headers: dict[str, str]


def http_reply(message: Message) -> HttpReply:
    """The HTTP answer for a reply message (request/reply).

    The body by its section: an amqp-value string as ``text/plain; charset=utf-8`` (or
    the message's own text/* type); bytes (data sections, joined, or an amqp-value
    binary) with the message's content type or ``application/octet-stream``; an
    amqp-sequence (sections joined) or any other amqp-value as typed JSON in
    ``application/json``.

    Headers: the fields `HEADER_FIELDS` names, where set, in the form those headers
    take, and each application property as ``amqp-app-<name>`` (a string as itself,
    another value as typed JSON text). Header names and values are percent-encoded
    (UTF-8) wherever HTTP could not carry them as they are: in names every byte that is
    not an RFC 9110 token character, in values every byte that is not printable ASCII,
    a space at either end (HTTP strips them), and ``%`` itself. A uuid or binary id
    shows as its text or bytes, so only an envelope tells those types apart.

    A content type the answer would carry is stripped of white space at its ends; one
    that still holds what an HTTP field cannot (CR, LF, another control character, a
    non-ASCII character) is a `MappingError` with status 502: the service's reply cannot
    be represented, and saying so beats answering with a Content-Type it did not send.
    """
    body = message.body
    kind = type(body)
    if kind is DataSections:
        return HttpReply(b"".join(body), _data_content_type(message), _reply_headers(message))
    if kind in _BYTES or (message.inferred and isinstance(body, _BYTES)):
        return HttpReply(bytes(body), _data_content_type(message), _reply_headers(message))
    if isinstance(body, str):
        content_type = message.content_type
        if content_type and _media_type(content_type).startswith("text/"):
            content_type = _reply_content_type(content_type)
        else:
            content_type = "text/plain"
        content_type = _without_charset(content_type) + "; charset=utf-8"
        return HttpReply(body.encode("utf-8"), content_type, _reply_headers(message))
    if kind is SequenceSections:
        body = [item for section in body for item in section]
    payload = _json_text(value_to_json(body)).encode("utf-8")
    return HttpReply(payload, "application/json", _reply_headers(message))


def _data_content_type(message: Message) -> str:
    content_type = message.content_type
    if not content_type:
        return DEFAULT_CONTENT_TYPE
    return _reply_content_type(content_type) or DEFAULT_CONTENT_TYPE


_FIELD_TEXT = re.compile(r"[\t\x20-\x7e]*")  # what an HTTP field value holds (obs-text aside)


def _reply_content_type(content_type: str) -> str:
    content_type = content_type.strip()
    if not _FIELD_TEXT.fullmatch(content_type):
        raise MappingError(
            502,
            "Unrepresentable reply",
            f"the service's reply has the content type {_shown(content_type)}, which an "
            "HTTP Content-Type cannot carry (printable ASCII only)",
        )
    return content_type


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _reply_headers(message: Message) -> dict[str, str]:
    headers: dict[str, str] = {}
    fields = message.__dict__
    for header, (attribute, _) in HEADER_FIELDS.items():
        value = fields.get(attribute)
        if value is not None and value != _DEFAULTS[attribute]:
            headers[header] = _REPLY_FORMATS.get(attribute, _header_value)(value)
    for name, value in (message.properties or {}).items():
        text = value if isinstance(value, str) else _json_text(value_to_json(value))
        headers[APPLICATION_PROPERTY_PREFIX + _header_name(str(name))] = _header_value(text)
    return headers


def _id_text(value: Any) -> str:
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _header_value(bytes(value))
    return _header_value(str(value))


def _number_text(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def _flag_text(value: bool) -> str:
    return "true" if value else "false"


_REPLY_FORMATS: dict[str, Callable[[Any], str]] = {
    "id": _id_text,
    "correlation_id": _id_text,
    "group_sequence": str,
    "creation_time": _number_text,
    "expiry_time": _number_text,
    "ttl": _number_text,
    "priority": str,
    "durable": _flag_text,
    "first_acquirer": _flag_text,
    "delivery_count": str,
}

_VALUE_SAFE = frozenset(range(0x20, 0x7F)) - {ord("%")}
_NAME_SAFE = frozenset(
    b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _percent_encoded(raw: bytes, safe: frozenset[int]) -> str:
    last = len(raw) - 1
    return "".join(
        chr(octet)
        if octet in safe and not (octet == 0x20 and index in (0, last))
        else f"%{octet:02X}"
        for index, octet in enumerate(raw)
    )


def _header_value(value: str | bytes) -> str:
    """A header value HTTP carries intact, read back by the request headers' decoding."""
    if isinstance(value, str):
        if (
            value.isascii()
            and value.isprintable()
            and "%" not in value
            and value == value.strip(" ")
        ):
            return value
        value = value.encode("utf-8")
    return _percent_encoded(value, _VALUE_SAFE)


def _header_name(name: str) -> str:
    return _percent_encoded(name.encode("utf-8"), _NAME_SAFE)
