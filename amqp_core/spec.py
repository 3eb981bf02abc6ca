"""The AMQP 1.0 type definitions as data tables that mirror the spec XML, and their classes.

Every performative, SASL frame, delivery state, terminus, error and message section is
declared once below, field by field, with the names, types and defaults the spec XML
spells (`tests/test_spec_xml.py` checks the tables against Debian's `amqp-specs`).
`define_composite` turns each composite entry into a class (`Open`, `SaslInit`,
`Modified`, ...) and `define_section` each described restricted type (`Data`,
`AmqpValue`, ...). The classes subclass `types.Described`, so `codec.encode` writes them
directly; `from_described` turns what `codec.decode` returns back into them.

Adding a field is one line in a table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

from . import codec
from .codec import DecodeError, EncodeError
from .types import (
    UNDESCRIBED,
    AMQPType,
    Array,
    Described,
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

# ---------------------------------------------------------------------------------------
# Table records: one per <encoding>, <field>, <type> and <definition> element of the XML.


class Encoding(NamedTuple):
    """One encoding of a primitive type (types.xml): `width` is the fixed size, or the
    size of the length prefix for variable, compound and array encodings."""

    type: str
    name: str | None
    code: int
    category: str  # "fixed", "variable", "compound" or "array"
    width: int


class Field(NamedTuple):
    """A field of a composite type. `default` is the spec's default: a Python value, or
    for a restricted type with choices, the choice's name ("mixed")."""

    name: str
    type: str  # a primitive, restricted or composite type name, or "*" (see `requires`)
    mandatory: bool = False
    multiple: bool = False
    default: Any = None
    requires: str | None = None


class Composite(NamedTuple):
    """A described list with named fields (spec 1.4)."""

    name: str
    descriptor: str
    code: int
    fields: tuple[Field, ...] = ()
    provides: tuple[str, ...] = ()
    source: str = "list"


class Restricted(NamedTuple):
    """A restriction of another type: a set of named values, or a described section."""

    name: str
    source: str
    choices: Mapping[str, Any] = {}
    provides: tuple[str, ...] = ()
    descriptor: str | None = None
    code: int | None = None


class Definition(NamedTuple):
    """A named constant of the spec (a port, a version number, a size)."""

    name: str
    value: int


# ---------------------------------------------------------------------------------------
# The tables, file by file and in the spec's order.

ENCODINGS = (
    Encoding("null", None, 0x40, "fixed", 0),
    Encoding("boolean", None, 0x56, "fixed", 1),
    Encoding("boolean", "true", 0x41, "fixed", 0),
    Encoding("boolean", "false", 0x42, "fixed", 0),
    Encoding("ubyte", None, 0x50, "fixed", 1),
    Encoding("ushort", None, 0x60, "fixed", 2),
    Encoding("uint", None, 0x70, "fixed", 4),
    Encoding("uint", "smalluint", 0x52, "fixed", 1),
    Encoding("uint", "uint0", 0x43, "fixed", 0),
    Encoding("ulong", None, 0x80, "fixed", 8),
    Encoding("ulong", "smallulong", 0x53, "fixed", 1),
    Encoding("ulong", "ulong0", 0x44, "fixed", 0),
    Encoding("byte", None, 0x51, "fixed", 1),
    Encoding("short", None, 0x61, "fixed", 2),
    Encoding("int", None, 0x71, "fixed", 4),
    Encoding("int", "smallint", 0x54, "fixed", 1),
    Encoding("long", None, 0x81, "fixed", 8),
    Encoding("long", "smalllong", 0x55, "fixed", 1),
    Encoding("float", "ieee-754", 0x72, "fixed", 4),
    Encoding("double", "ieee-754", 0x82, "fixed", 8),
    Encoding("decimal32", "ieee-754", 0x74, "fixed", 4),
    Encoding("decimal64", "ieee-754", 0x84, "fixed", 8),
    Encoding("decimal128", "ieee-754", 0x94, "fixed", 16),
    Encoding("char", "utf32", 0x73, "fixed", 4),
    Encoding("timestamp", "ms64", 0x83, "fixed", 8),
    Encoding("uuid", None, 0x98, "fixed", 16),
    Encoding("binary", "vbin8", 0xA0, "variable", 1),
    Encoding("binary", "vbin32", 0xB0, "variable", 4),
    Encoding("string", "str8-utf8", 0xA1, "variable", 1),
    Encoding("string", "str32-utf8", 0xB1, "variable", 4),
    Encoding("symbol", "sym8", 0xA3, "variable", 1),
    Encoding("symbol", "sym32", 0xB3, "variable", 4),
    Encoding("list", "list0", 0x45, "fixed", 0),
    Encoding("list", "list8", 0xC0, "compound", 1),
    Encoding("list", "list32", 0xD0, "compound", 4),
    Encoding("map", "map8", 0xC1, "compound", 1),
    Encoding("map", "map32", 0xD1, "compound", 4),
    Encoding("array", "array8", 0xE0, "array", 1),
    Encoding("array", "array32", 0xF0, "array", 4),
)

_CAPABILITIES = (
    Field("offered-capabilities", "symbol", multiple=True),
    Field("desired-capabilities", "symbol", multiple=True),
)
_FRAME = ("frame",)
_SASL_FRAME = ("sasl-frame",)
_SECTION = ("section",)
_OUTCOME = ("delivery-state", "outcome")

TRANSPORT = (
    Composite("open", "amqp:open:list", 0x00000000_00000010, (
        Field("container-id", "string", mandatory=True),
        Field("hostname", "string"),
        Field("max-frame-size", "uint", default=4294967295),
        Field("channel-max", "ushort", default=65535),
        Field("idle-time-out", "milliseconds"),
        Field("outgoing-locales", "ietf-language-tag", multiple=True),
        Field("incoming-locales", "ietf-language-tag", multiple=True),
        *_CAPABILITIES,
        Field("properties", "fields"),
    ), _FRAME),
    Composite("begin", "amqp:begin:list", 0x00000000_00000011, (
        Field("remote-channel", "ushort"),
        Field("next-outgoing-id", "transfer-number", mandatory=True),
        Field("incoming-window", "uint", mandatory=True),
        Field("outgoing-window", "uint", mandatory=True),
        Field("handle-max", "handle", default=4294967295),
        *_CAPABILITIES,
        Field("properties", "fields"),
    ), _FRAME),
    Composite("attach", "amqp:attach:list", 0x00000000_00000012, (
        Field("name", "string", mandatory=True),
        Field("handle", "handle", mandatory=True),
        Field("role", "role", mandatory=True),
        Field("snd-settle-mode", "sender-settle-mode", default="mixed"),
        Field("rcv-settle-mode", "receiver-settle-mode", default="first"),
        Field("source", "*", requires="source"),
        Field("target", "*", requires="target"),
        Field("unsettled", "map"),
        Field("incomplete-unsettled", "boolean", default=False),
        Field("initial-delivery-count", "sequence-no"),
        Field("max-message-size", "ulong"),
        *_CAPABILITIES,
        Field("properties", "fields"),
    ), _FRAME),
    Composite("flow", "amqp:flow:list", 0x00000000_00000013, (
        Field("next-incoming-id", "transfer-number"),
        Field("incoming-window", "uint", mandatory=True),
        Field("next-outgoing-id", "transfer-number", mandatory=True),
        Field("outgoing-window", "uint", mandatory=True),
        Field("handle", "handle"),
        Field("delivery-count", "sequence-no"),
        Field("link-credit", "uint"),
        Field("available", "uint"),
        Field("drain", "boolean", default=False),
        Field("echo", "boolean", default=False),
        Field("properties", "fields"),
    ), _FRAME),
    Composite("transfer", "amqp:transfer:list", 0x00000000_00000014, (
        Field("handle", "handle", mandatory=True),
        Field("delivery-id", "delivery-number"),
        Field("delivery-tag", "delivery-tag"),
        Field("message-format", "message-format"),
        Field("settled", "boolean"),
        Field("more", "boolean", default=False),
        Field("rcv-settle-mode", "receiver-settle-mode"),
        Field("state", "*", requires="delivery-state"),
        Field("resume", "boolean", default=False),
        Field("aborted", "boolean", default=False),
        Field("batchable", "boolean", default=False),
    ), _FRAME),
    Composite("disposition", "amqp:disposition:list", 0x00000000_00000015, (
        Field("role", "role", mandatory=True),
        Field("first", "delivery-number", mandatory=True),
        Field("last", "delivery-number"),
        Field("settled", "boolean", default=False),
        Field("state", "*", requires="delivery-state"),
        Field("batchable", "boolean", default=False),
    ), _FRAME),
    Composite("detach", "amqp:detach:list", 0x00000000_00000016, (
        Field("handle", "handle", mandatory=True),
        Field("closed", "boolean", default=False),
        Field("error", "error"),
    ), _FRAME),
    Composite("end", "amqp:end:list", 0x00000000_00000017, (Field("error", "error"),), _FRAME),
    Composite("close", "amqp:close:list", 0x00000000_00000018, (Field("error", "error"),), _FRAME),
    Restricted("role", "boolean", {"sender": False, "receiver": True}),
    Restricted("sender-settle-mode", "ubyte", {"unsettled": 0, "settled": 1, "mixed": 2}),
    Restricted("receiver-settle-mode", "ubyte", {"first": 0, "second": 1}),
    Restricted("handle", "uint"),
    Restricted("seconds", "uint"),
    Restricted("milliseconds", "uint"),
    Restricted("delivery-tag", "binary"),
    Restricted("delivery-number", "sequence-no"),
    Restricted("transfer-number", "sequence-no"),
    Restricted("sequence-no", "uint"),
    Restricted("message-format", "uint"),
    Restricted("ietf-language-tag", "symbol"),
    Restricted("fields", "map"),
    Composite("error", "amqp:error:list", 0x00000000_0000001D, (
        Field("condition", "symbol", mandatory=True, requires="error-condition"),
        Field("description", "string"),
        Field("info", "fields"),
    )),
    Restricted("amqp-error", "symbol", {
        "internal-error": "amqp:internal-error",
        "not-found": "amqp:not-found",
        "unauthorized-access": "amqp:unauthorized-access",
        "decode-error": "amqp:decode-error",
        "resource-limit-exceeded": "amqp:resource-limit-exceeded",
        "not-allowed": "amqp:not-allowed",
        "invalid-field": "amqp:invalid-field",
        "not-implemented": "amqp:not-implemented",
        "resource-locked": "amqp:resource-locked",
        "precondition-failed": "amqp:precondition-failed",
        "resource-deleted": "amqp:resource-deleted",
        "illegal-state": "amqp:illegal-state",
        "frame-size-too-small": "amqp:frame-size-too-small",
    }, ("error-condition",)),
    Restricted("connection-error", "symbol", {
        "connection-forced": "amqp:connection:forced",
        "framing-error": "amqp:connection:framing-error",
        "redirect": "amqp:connection:redirect",
    }, ("error-condition",)),
    Restricted("session-error", "symbol", {
        "window-violation": "amqp:session:window-violation",
        "errant-link": "amqp:session:errant-link",
        "handle-in-use": "amqp:session:handle-in-use",
        "unattached-handle": "amqp:session:unattached-handle",
    }, ("error-condition",)),
    Restricted("link-error", "symbol", {
        "detach-forced": "amqp:link:detach-forced",
        "transfer-limit-exceeded": "amqp:link:transfer-limit-exceeded",
        "message-size-exceeded": "amqp:link:message-size-exceeded",
        "redirect": "amqp:link:redirect",
        "stolen": "amqp:link:stolen",
    }, ("error-condition",)),
    Definition("PORT", 5672),
    Definition("SECURE-PORT", 5671),
    Definition("MAJOR", 1),
    Definition("MINOR", 0),
    Definition("REVISION", 0),
    Definition("MIN-MAX-FRAME-SIZE", 512),
)  # fmt: skip

_TERMINUS = (
    Field("address", "*", requires="address"),
    Field("durable", "terminus-durability", default="none"),
    Field("expiry-policy", "terminus-expiry-policy", default="session-end"),
    Field("timeout", "seconds", default=0),
    Field("dynamic", "boolean", default=False),
    Field("dynamic-node-properties", "node-properties"),
)

MESSAGING = (
    Composite("header", "amqp:header:list", 0x00000000_00000070, (
        Field("durable", "boolean"),
        Field("priority", "ubyte"),
        Field("ttl", "milliseconds"),
        Field("first-acquirer", "boolean"),
        Field("delivery-count", "uint"),
    ), _SECTION),
    Restricted("delivery-annotations", "annotations", provides=_SECTION,
               descriptor="amqp:delivery-annotations:map", code=0x00000000_00000071),
    Restricted("message-annotations", "annotations", provides=_SECTION,
               descriptor="amqp:message-annotations:map", code=0x00000000_00000072),
    Composite("properties", "amqp:properties:list", 0x00000000_00000073, (
        Field("message-id", "*", requires="message-id"),
        Field("user-id", "binary"),
        Field("to", "*", requires="address"),
        Field("subject", "string"),
        Field("reply-to", "*", requires="address"),
        Field("correlation-id", "*", requires="message-id"),
        Field("content-type", "symbol"),
        Field("content-encoding", "symbol"),
        Field("absolute-expiry-time", "timestamp"),
        Field("creation-time", "timestamp"),
        Field("group-id", "string"),
        Field("group-sequence", "sequence-no"),
        Field("reply-to-group-id", "string"),
    ), _SECTION),
    Restricted("application-properties", "map", provides=_SECTION,
               descriptor="amqp:application-properties:map", code=0x00000000_00000074),
    Restricted("data", "binary", provides=_SECTION,
               descriptor="amqp:data:binary", code=0x00000000_00000075),
    Restricted("amqp-sequence", "list", provides=_SECTION,
               descriptor="amqp:amqp-sequence:list", code=0x00000000_00000076),
    Restricted("amqp-value", "*", provides=_SECTION,
               descriptor="amqp:amqp-value:*", code=0x00000000_00000077),
    Restricted("footer", "annotations", provides=_SECTION,
               descriptor="amqp:footer:map", code=0x00000000_00000078),
    Restricted("annotations", "map"),
    Restricted("message-id-ulong", "ulong", provides=("message-id",)),
    Restricted("message-id-uuid", "uuid", provides=("message-id",)),
    Restricted("message-id-binary", "binary", provides=("message-id",)),
    Restricted("message-id-string", "string", provides=("message-id",)),
    Restricted("address-string", "string", provides=("address",)),
    Definition("MESSAGE-FORMAT", 0),
    Composite("received", "amqp:received:list", 0x00000000_00000023, (
        Field("section-number", "uint", mandatory=True),
        Field("section-offset", "ulong", mandatory=True),
    ), ("delivery-state",)),
    Composite("accepted", "amqp:accepted:list", 0x00000000_00000024, (), _OUTCOME),
    Composite("rejected", "amqp:rejected:list", 0x00000000_00000025, (
        Field("error", "error"),
    ), _OUTCOME),
    Composite("released", "amqp:released:list", 0x00000000_00000026, (), _OUTCOME),
    Composite("modified", "amqp:modified:list", 0x00000000_00000027, (
        Field("delivery-failed", "boolean"),
        Field("undeliverable-here", "boolean"),
        Field("message-annotations", "fields"),
    ), _OUTCOME),
    Composite("source", "amqp:source:list", 0x00000000_00000028, (
        *_TERMINUS,
        Field("distribution-mode", "symbol", requires="distribution-mode"),
        Field("filter", "filter-set"),
        Field("default-outcome", "*", requires="outcome"),
        Field("outcomes", "symbol", multiple=True),
        Field("capabilities", "symbol", multiple=True),
    ), ("source",)),
    Composite("target", "amqp:target:list", 0x00000000_00000029, (
        *_TERMINUS,
        Field("capabilities", "symbol", multiple=True),
    ), ("target",)),
    Restricted("terminus-durability", "uint", {
        "none": 0,
        "configuration": 1,
        "unsettled-state": 2,
    }),
    Restricted("terminus-expiry-policy", "symbol", {
        "link-detach": "link-detach",
        "session-end": "session-end",
        "connection-close": "connection-close",
        "never": "never",
    }),
    Restricted("std-dist-mode", "symbol", {"move": "move", "copy": "copy"}, ("distribution-mode",)),
    Restricted("filter-set", "map"),
    Restricted("node-properties", "fields"),
    Composite("delete-on-close", "amqp:delete-on-close:list", 0x00000000_0000002B,
              provides=("lifetime-policy",)),
    Composite("delete-on-no-links", "amqp:delete-on-no-links:list", 0x00000000_0000002C,
              provides=("lifetime-policy",)),
    Composite("delete-on-no-messages", "amqp:delete-on-no-messages:list", 0x00000000_0000002D,
              provides=("lifetime-policy",)),
    Composite("delete-on-no-links-or-messages", "amqp:delete-on-no-links-or-messages:list",
              0x00000000_0000002E, provides=("lifetime-policy",)),
)  # fmt: skip

SECURITY = (
    Definition("TLS-MAJOR", 1),
    Definition("TLS-MINOR", 0),
    Definition("TLS-REVISION", 0),
    Composite("sasl-mechanisms", "amqp:sasl-mechanisms:list", 0x00000000_00000040, (
        Field("sasl-server-mechanisms", "symbol", mandatory=True, multiple=True),
    ), _SASL_FRAME),
    Composite("sasl-init", "amqp:sasl-init:list", 0x00000000_00000041, (
        Field("mechanism", "symbol", mandatory=True),
        Field("initial-response", "binary"),
        Field("hostname", "string"),
    ), _SASL_FRAME),
    Composite("sasl-challenge", "amqp:sasl-challenge:list", 0x00000000_00000042, (
        Field("challenge", "binary", mandatory=True),
    ), _SASL_FRAME),
    Composite("sasl-response", "amqp:sasl-response:list", 0x00000000_00000043, (
        Field("response", "binary", mandatory=True),
    ), _SASL_FRAME),
    Composite("sasl-outcome", "amqp:sasl-outcome:list", 0x00000000_00000044, (
        Field("code", "sasl-code", mandatory=True),
        Field("additional-data", "binary"),
    ), _SASL_FRAME),
    Restricted("sasl-code", "ubyte", {"ok": 0, "auth": 1, "sys": 2, "sys-perm": 3, "sys-temp": 4}),
    Definition("SASL-MAJOR", 1),
    Definition("SASL-MINOR", 0),
    Definition("SASL-REVISION", 0),
)  # fmt: skip

TRANSACTIONS = (
    Composite("coordinator", "amqp:coordinator:list", 0x00000000_00000030, (
        Field("capabilities", "symbol", multiple=True, requires="txn-capability"),
    ), ("target",)),
    Composite("declare", "amqp:declare:list", 0x00000000_00000031, (
        Field("global-id", "*", requires="global-tx-id"),
    )),
    Composite("discharge", "amqp:discharge:list", 0x00000000_00000032, (
        Field("txn-id", "*", mandatory=True, requires="txn-id"),
        Field("fail", "boolean"),
    )),
    Restricted("transaction-id", "binary", provides=("txn-id",)),
    Composite("declared", "amqp:declared:list", 0x00000000_00000033, (
        Field("txn-id", "*", mandatory=True, requires="txn-id"),
    ), _OUTCOME),
    Composite("transactional-state", "amqp:transactional-state:list", 0x00000000_00000034, (
        Field("txn-id", "*", mandatory=True, requires="txn-id"),
        Field("outcome", "*", requires="outcome"),
    ), ("delivery-state",)),
    Restricted("txn-capability", "symbol", {
        "local-transactions": "amqp:local-transactions",
        "distributed-transactions": "amqp:distributed-transactions",
        "promotable-transactions": "amqp:promotable-transactions",
        "multi-txns-per-ssn": "amqp:multi-txns-per-ssn",
        "multi-ssns-per-txn": "amqp:multi-ssns-per-txn",
    }, ("txn-capability",)),
    Restricted("transaction-error", "symbol", {
        "unknown-id": "amqp:transaction:unknown-id",
        "transaction-rollback": "amqp:transaction:rollback",
        "transaction-timeout": "amqp:transaction:timeout",
    }, ("error-condition",)),
)  # fmt: skip

_ENTRIES = TRANSPORT + MESSAGING + SECURITY + TRANSACTIONS

#: Every primitive type by name, with its encodings in the spec's order.
PRIMITIVES: dict[str, tuple[Encoding, ...]] = {}
for _encoding in ENCODINGS:
    PRIMITIVES[_encoding.type] = (*PRIMITIVES.get(_encoding.type, ()), _encoding)
COMPOSITES = {entry.name: entry for entry in _ENTRIES if isinstance(entry, Composite)}
RESTRICTED = {entry.name: entry for entry in _ENTRIES if isinstance(entry, Restricted)}
DEFINITIONS = {entry.name: entry.value for entry in _ENTRIES if isinstance(entry, Definition)}


def primitive_of(type_name: str) -> str:
    """The primitive type under a restricted type ("delivery-number" -> "uint")."""
    while type_name in RESTRICTED:
        type_name = RESTRICTED[type_name].source
    return type_name


# ---------------------------------------------------------------------------------------
# Coercion of field values to their AMQP type (encoding) and checks (decoding).

#: The Python type `codec.decode` returns for each primitive type.
_DECODED_TYPE: dict[str, type] = {
    "null": type(None),
    "boolean": bool,
    "ubyte": ubyte,
    "ushort": ushort,
    "uint": uint,
    "ulong": ulong,
    "byte": byte,
    "short": short,
    "int": int32,
    "long": int,
    "float": float32,
    "double": float,
    "decimal32": decimal32,
    "decimal64": decimal64,
    "decimal128": decimal128,
    "char": char,
    "timestamp": timestamp,
    "uuid": uuid.UUID,
    "binary": bytes,
    "string": str,
    "symbol": symbol,
    "list": list,
    "map": dict,
    "array": Array,
}
_ARRAY_TYPE = {name: AMQPType[name.upper()] for name in _DECODED_TYPE if name != "boolean"}
_ARRAY_TYPE["boolean"] = AMQPType.BOOL

Coerce = Callable[[Any], Any]


def _wrapping(cls: Callable[[Any], Any]) -> Coerce:
    return lambda value: value if type(value) is cls else cls(value)


def _as_string(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"expected a str, not {type(value).__name__}")


def _as_symbol(value: Any) -> symbol:
    if type(value) is symbol:
        return value
    if isinstance(value, str):
        return symbol(value)
    raise TypeError(f"expected a str or symbol, not {type(value).__name__}")


def _as_binary(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected bytes, not {type(value).__name__}")


def _symbol_keys(value: Mapping[Any, Any]) -> dict[Any, Any]:
    return {_as_symbol(key): item for key, item in value.items()}


def _annotation_key(key: Any) -> Any:
    # Annotation keys are symbols, or ulongs reserved for the spec (3.2.10).
    if type(key) is symbol or type(key) is ulong:
        return key
    return ulong(key) if isinstance(key, int) else _as_symbol(key)


def _annotation_keys(value: Mapping[Any, Any]) -> dict[Any, Any]:
    return {_annotation_key(key): item for key, item in value.items()}


_COERCE_PRIMITIVE: dict[str, Coerce] = {
    "boolean": bool,
    "double": float,
    "string": _as_string,
    "symbol": _as_symbol,
    "binary": _as_binary,
}
for _name in ("ubyte", "ushort", "uint", "ulong", "byte", "short", "int", "float", "char"):
    _COERCE_PRIMITIVE[_name] = _wrapping(_DECODED_TYPE[_name])
for _name in ("timestamp", "decimal32", "decimal64", "decimal128"):
    _COERCE_PRIMITIVE[_name] = _wrapping(_DECODED_TYPE[_name])
# Maps whose keys the spec constrains: fields-like maps are keyed by symbols (2.8.14).
_COERCE_RESTRICTED: dict[str, Coerce] = {
    "fields": _symbol_keys,
    "filter-set": _symbol_keys,
    "annotations": _annotation_keys,
}


def _coercer(type_name: str) -> Coerce | None:
    """How to turn what a user gave for a field of this type into its AMQP type."""
    while type_name in RESTRICTED:
        if type_name in _COERCE_RESTRICTED:
            return _COERCE_RESTRICTED[type_name]
        type_name = RESTRICTED[type_name].source
    return _COERCE_PRIMITIVE.get(type_name)


def _multiple(coerce: Coerce | None, array_type: AMQPType) -> Coerce:
    def coerce_multiple(value: Any) -> Array:
        if type(value) is Array:
            return value
        values = [value] if isinstance(value, str) else value
        if coerce is not None:
            values = [coerce(item) for item in values]
        return Array(UNDESCRIBED, array_type, *values)

    return coerce_multiple


class FieldDecodeError(DecodeError):
    """Well-formed AMQP whose value does not fit the spec: a field of the wrong type, a
    mandatory field missing. It is found after decoding, so `offset` is 0."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.offset = 0


Check = Callable[[Any], Any]


def _type_name(value: Any) -> str:
    if isinstance(value, Described):
        return f"described {value.descriptor!r}"
    return type(value).__name__


def _checker(owner: str, field: Field) -> Check:
    """How to check (and convert) a decoded value for `field` of composite `owner`."""
    where = f"{owner} field {field.name}"

    def fail(value: Any, expected: str) -> FieldDecodeError:
        return FieldDecodeError(f"{where}: expected {expected}, got {_type_name(value)}")

    if field.type in COMPOSITES:
        expected_class = field.type

        def check(value: Any) -> Any:
            result = from_described(value)
            if type(result) is not CLASSES[expected_class]:
                raise fail(value, expected_class)
            return result

    elif field.type == "*":
        requires = field.requires or ""
        classes = {name for name, entry in COMPOSITES.items() if requires in entry.provides}
        primitives = {
            _DECODED_TYPE[primitive_of(name)]
            for name, entry in RESTRICTED.items()
            if requires in entry.provides
        }
        anything = not classes and not primitives

        def check(value: Any) -> Any:
            if isinstance(value, Described):
                result = from_described(value)
                # Described values we do not know are extensions: let them through.
                known = isinstance(result, (DescribedList, DescribedValue))
                if known and not anything and result.amqp_type.name not in classes:
                    raise fail(value, requires)
                return result
            if anything or type(value) in primitives:
                return value
            raise fail(value, requires)

    else:
        primitive = primitive_of(field.type)
        decoded_type = _DECODED_TYPE[primitive]

        def check(value: Any) -> Any:
            if type(value) is not decoded_type:
                raise fail(value, f"{field.type} ({primitive})")
            return value

    if not field.multiple:
        return check
    single = check

    def check_multiple(value: Any) -> list[Any]:
        if type(value) is Array or type(value) is list:
            return [single(item) for item in value]
        return [single(value)]

    return check_multiple


# ---------------------------------------------------------------------------------------
# Classes


def attribute_name(field_name: str) -> str:
    """The Python attribute for a spec field: "max-frame-size" -> "max_frame_size"."""
    return field_name.replace("-", "_")


def class_name(type_name: str) -> str:
    """The Python class for a spec type: "sasl-mechanisms" -> "SaslMechanisms"."""
    return "".join(part.capitalize() for part in type_name.split("-"))


def choice(type_name: str, choice_name: str) -> Any:
    """A restricted type's named value in its AMQP type: ("sender-settle-mode", "mixed")
    -> ubyte(2)."""
    value = RESTRICTED[type_name].choices[choice_name]
    coerce = _coercer(type_name)
    return value if coerce is None else coerce(value)


def _default(field: Field) -> Any:
    if field.default is None:
        return None
    if field.type in RESTRICTED and RESTRICTED[field.type].choices:
        return choice(field.type, field.default)
    coerce = _coercer(field.type)
    return field.default if coerce is None else coerce(field.default)


class DescribedList(Described):
    """Base of the classes made from `Composite` entries: a described list whose items
    are the attributes, in the table's order."""

    __slots__ = ()
    amqp_type: ClassVar[Composite]
    symbolic_descriptor: ClassVar[symbol]
    # (attribute, default) per field, for the constructor.
    _defaults: ClassVar[tuple[tuple[str, Any], ...]]
    # (attribute, field name, coerce or None, mandatory, default) per field, for encoding.
    _encoders: ClassVar[tuple[tuple[str, str, Coerce | None, bool, Any], ...]]
    # (attribute, default, check, mandatory, field name) per field, for decoding.
    _decoders: ClassVar[tuple[tuple[str, Any, Check, bool, str], ...]]

    def __init__(self, **fields: Any) -> None:
        for attribute, default in self._defaults:
            setattr(self, attribute, fields.pop(attribute, default))
        if fields:
            raise TypeError(f"{type(self).__name__}() has no field {next(iter(fields))!r}")

    @property
    def value(self) -> list[Any]:
        """The field values in their AMQP types, trailing nulls and defaults left out."""
        values: list[Any] = []
        for attribute, name, coerce, mandatory, default in self._encoders:
            value = getattr(self, attribute)
            if value is None or (default is not None and value == default):
                if mandatory:
                    raise EncodeError(f"{self.amqp_type.name}: mandatory field {name} is not set")
                values.append(None)
            elif coerce is None:
                values.append(value)
            else:
                try:
                    values.append(coerce(value))
                except (TypeError, ValueError) as exc:
                    raise EncodeError(f"{self.amqp_type.name} field {name}: {exc}") from None
        while values and values[-1] is None:
            values.pop()
        return values

    @classmethod
    def from_decoded(cls, values: Any) -> DescribedList:
        """Build from a decoded field list; raises `FieldDecodeError` for wrong types."""
        if type(values) is not list:
            raise FieldDecodeError(
                f"{cls.amqp_type.name} must be a described list, not {_type_name(values)}"
            )
        self = cls.__new__(cls)
        decoders = cls._decoders
        # Fields past the end of the list are null: zip stops there and the second loop
        # fills them in. Items past the last field are ignored, so a peer that knows
        # fields added after 1.0 still gets through.
        pairs = zip(values, decoders, strict=False)
        for value, (attribute, default, check, mandatory, name) in pairs:
            if value is None:
                if mandatory:
                    raise FieldDecodeError(f"{cls.amqp_type.name}: mandatory field {name} is null")
                value = default
            else:
                value = check(value)
            setattr(self, attribute, value)
        for attribute, default, _check, mandatory, name in decoders[len(values) :]:
            if mandatory:
                raise FieldDecodeError(f"{cls.amqp_type.name}: mandatory field {name} is null")
            setattr(self, attribute, default)
        return self

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            _or_default(getattr(self, attribute), default)
            == _or_default(getattr(other, attribute), default)
            for attribute, default in self._defaults
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = []
        for attribute, default in self._defaults:
            value = getattr(self, attribute)
            if value is not None and value != default:
                shown.append(f"{attribute}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


class DescribedValue(Described):
    """Base of the classes made from described `Restricted` entries (the message sections
    data, amqp-value, application-properties, ...): a descriptor and one value."""

    __slots__ = ()
    amqp_type: ClassVar[Restricted]
    symbolic_descriptor: ClassVar[symbol]
    _coerce: ClassVar[Coerce | None]
    _decoded_type: ClassVar[type | None]

    def __init__(self, value: Any) -> None:
        coerce = type(self)._coerce
        self.value = value if coerce is None else coerce(value)

    @classmethod
    def from_decoded(cls, value: Any) -> DescribedValue:
        """Build from the decoded value; raises `FieldDecodeError` for a wrong type."""
        expected = cls._decoded_type
        if expected is not None and type(value) is not expected:
            raise FieldDecodeError(
                f"{cls.amqp_type.name} must hold a {cls.amqp_type.source}, not {_type_name(value)}"
            )
        self = cls.__new__(cls)
        self.value = value
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


def define_composite(entry: Composite) -> type[DescribedList]:
    """Make the class for a composite table entry."""
    attributes = [attribute_name(field.name) for field in entry.fields]
    defaults = [_default(field) for field in entry.fields]
    encoders = []
    for field, attribute, default in zip(entry.fields, attributes, defaults, strict=True):
        coerce = None if field.type in COMPOSITES else _coercer(field.type)
        if field.multiple:
            coerce = _multiple(coerce, _ARRAY_TYPE[primitive_of(field.type)])
        encoders.append((attribute, field.name, coerce, field.mandatory, default))
    namespace = {
        "__slots__": tuple(attributes),
        "__match_args__": tuple(attributes),
        "__doc__": f"The {entry.name} composite ({entry.descriptor}).",
        "__module__": __name__,
        "amqp_type": entry,
        "descriptor": ulong(entry.code),
        "symbolic_descriptor": symbol(entry.descriptor),
        "_defaults": tuple(zip(attributes, defaults, strict=True)),
        "_encoders": tuple(encoders),
    }
    return type(class_name(entry.name), (DescribedList,), namespace)


def define_section(entry: Restricted) -> type[DescribedValue]:
    """Make the class for a described restricted table entry (a message section)."""
    assert entry.descriptor is not None and entry.code is not None
    primitive = primitive_of(entry.source)
    namespace = {
        "__slots__": (),
        "__doc__": f"The {entry.name} section ({entry.descriptor}).",
        "__module__": __name__,
        "amqp_type": entry,
        "descriptor": ulong(entry.code),
        "symbolic_descriptor": symbol(entry.descriptor),
        "_coerce": _coercer(entry.source),
        "_decoded_type": _DECODED_TYPE.get(primitive),
    }
    return type(class_name(entry.name), (DescribedValue,), namespace)


def _decoders(entry: Composite) -> tuple[tuple[str, Any, Check, bool, str], ...]:
    return tuple(
        (
            attribute_name(field.name),
            _default(field),
            _checker(entry.name, field),
            field.mandatory,
            field.name,
        )
        for field in entry.fields
    )


_COMPOSITE_CLASSES = [define_composite(entry) for entry in COMPOSITES.values()]
_SECTION_CLASSES = [
    define_section(entry) for entry in RESTRICTED.values() if entry.descriptor is not None
]
#: Every generated class by its spec name: CLASSES["sasl-init"] is SaslInit.
CLASSES: dict[str, type[DescribedList] | type[DescribedValue]] = {
    cls.amqp_type.name: cls for cls in _COMPOSITE_CLASSES
}
CLASSES.update((cls.amqp_type.name, cls) for cls in _SECTION_CLASSES)
# The checks look nested classes up in CLASSES, so they are made once every class exists.
for _class in _COMPOSITE_CLASSES:
    _class._decoders = _decoders(_class.amqp_type)

#: Every generated class by its descriptor, both the ulong code and the symbolic name.
BY_DESCRIPTOR: dict[int | str, type[DescribedList] | type[DescribedValue]] = {}
_DESCRIBED_ENTRIES: list[Composite | Restricted] = [*COMPOSITES.values(), *RESTRICTED.values()]
for _entry in _DESCRIBED_ENTRIES:
    if _entry.code is not None and _entry.descriptor is not None:
        BY_DESCRIPTOR[_entry.code] = BY_DESCRIPTOR[_entry.descriptor] = CLASSES[_entry.name]


def from_described(value: Any) -> Any:
    """Turn a plain `Described` from `codec.decode` into its spec class, nested described
    fields included. A descriptor not in the tables (an extension, a filter) leaves the
    value as it is. Raises `FieldDecodeError` (a `codec.DecodeError`) for a field whose
    type is not the table's."""
    if type(value) is not Described:
        return value
    try:
        cls = BY_DESCRIPTOR.get(value.descriptor)
    except TypeError:  # an unhashable descriptor: not one of ours
        return value
    if cls is None:
        return value
    return cls.from_decoded(value.value)


def decode(data: bytes) -> Any:
    """Decode one AMQP value and convert it with `from_described`."""
    return from_described(codec.decode(data))


# ---------------------------------------------------------------------------------------
# Constants: the error conditions (DECODE_ERROR, FRAMING_ERROR, LINK_REDIRECT, ...) and
# the definitions (PORT, MIN_MAX_FRAME_SIZE, ...).


def _constant_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _error_conditions() -> dict[str, symbol]:
    tables = [entry for entry in RESTRICTED.values() if "error-condition" in entry.provides]
    seen: dict[str, int] = {}
    for table in tables:
        for name in table.choices:
            seen[name] = seen.get(name, 0) + 1
    conditions = {}
    for table in tables:
        for name, value in table.choices.items():
            # "redirect" is both a connection and a link error: name each after its table.
            qualified = f"{table.name.removesuffix('-error')}-{name}" if seen[name] > 1 else name
            conditions[_constant_name(qualified)] = symbol(value)
    return conditions


#: Every error condition of the spec by constant name: ERROR_CONDITIONS["NOT_FOUND"].
ERROR_CONDITIONS = _error_conditions()
_CONSTANTS: dict[str, Any] = {
    **ERROR_CONDITIONS,
    **{_constant_name(name): value for name, value in DEFINITIONS.items()},
}
_CLASSES_BY_NAME = {cls.__name__: cls for cls in CLASSES.values()}
globals().update(_CLASSES_BY_NAME)
globals().update(_CONSTANTS)

__all__ = sorted(
    [
        "BY_DESCRIPTOR",
        "CLASSES",
        "COMPOSITES",
        "DEFINITIONS",
        "ENCODINGS",
        "ERROR_CONDITIONS",
        "MESSAGING",
        "PRIMITIVES",
        "RESTRICTED",
        "SECURITY",
        "TRANSACTIONS",
        "TRANSPORT",
        "Composite",
        "Definition",
        "DescribedList",
        "DescribedValue",
        "Encoding",
        "Field",
        "FieldDecodeError",
        "Restricted",
        "attribute_name",
        "choice",
        "class_name",
        "decode",
        "define_composite",
        "define_section",
        "from_described",
        "primitive_of",
        *_CLASSES_BY_NAME,
        *_CONSTANTS,
    ]
)


def __getattr__(name: str) -> Any:
    # The classes and constants above are made from the tables at import, so a type
    # checker cannot see them; this hook makes it treat `spec.Open` as Any. At run time
    # it is reached only for names the tables do not define.
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
