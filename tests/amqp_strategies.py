"""Hypothesis strategies for AMQP 1.0 values, and helpers to compare them with Proton's.

Every strategy here generates *our* values (``amqp_core`` wrappers and Python built-ins);
`to_proton` turns one into the equivalent Proton value, and `pairs` gives both at once.
`amqp_tag` describes a value of either library as nested tuples of (AMQP type, content),
so that ``amqp_tag(a) == amqp_tag(b)`` checks equality *and* the AMQP type, recursively,
across the two libraries (``int`` is a long and ``int32`` an int; ``bytes`` and Proton's
``memoryview`` are both binary).

Floats: ``-0.0`` and ``0.0`` are told apart by their bits; every NaN has the tag
``("nan",)`` whatever its payload or sign, since NaN is unequal to itself. NaN is never a
map key (a NaN key can never be looked up), but is otherwise generated like any float.
"""

from __future__ import annotations

import math
import random
import struct
import uuid
from typing import Any

import proton
from hypothesis import strategies as st

import amqp_core
from amqp_core import (
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
# Comparing values of either library

#: The wrapper classes both libraries have, by name.
WRAPPER_NAMES = (
    "ubyte",
    "ushort",
    "uint",
    "ulong",
    "byte",
    "short",
    "int32",
    "timestamp",
    "decimal32",
    "decimal64",
    "decimal128",
    "float32",
    "char",
    "symbol",
)
_WRAPPER_NAME: dict[type, str] = {}
for _name in WRAPPER_NAMES:
    _WRAPPER_NAME[getattr(amqp_core, _name)] = _name
    _WRAPPER_NAME[getattr(proton, _name)] = _name

_DESCRIBED_TYPES = (Described, proton.Described)
_ARRAY_TYPES = (Array, proton.Array)
# Proton's dict and list subclasses used by its Message (annotations, properties).
_PROTON_MAPS = (proton.AnnotationDict, proton.PropertyDict)
_PROTON_LISTS = (proton.SymbolList,)


def _float_key(value: float, fmt: str) -> Any:
    if math.isnan(value):
        return ("nan",)
    return struct.pack(fmt, value)


def amqp_tag(value: Any) -> Any:
    """A description of `value` (ours or Proton's) that is equal for two values exactly
    when they are the same AMQP value of the same AMQP type, recursively."""
    kind = type(value)
    if value is None:
        return ("null",)
    if kind is bool:
        return ("bool", value)
    if kind is int:
        return ("long", value)
    if kind is float:
        return ("double", _float_key(value, ">d"))
    if kind is str:
        return ("string", value)
    if kind in (bytes, bytearray, memoryview):
        return ("binary", bytes(value))
    if kind is uuid.UUID:
        return ("uuid", value.bytes)
    if kind is list or kind in _PROTON_LISTS:
        return ("list", tuple(amqp_tag(item) for item in value))
    if kind is dict or kind in _PROTON_MAPS:
        return ("map", tuple((amqp_tag(k), amqp_tag(v)) for k, v in value.items()))
    name = _WRAPPER_NAME.get(kind)
    if name is not None:
        if name == "float32":
            return (name, _float_key(value, ">f"))
        if name == "decimal128":
            return (name, bytes(value))
        if name in ("symbol", "char"):
            return (name, str(value))
        return (name, int(value))
    if kind in _DESCRIBED_TYPES:
        return ("described", amqp_tag(value.descriptor), amqp_tag(value.value))
    if kind in _ARRAY_TYPES:
        if value.descriptor is UNDESCRIBED or value.descriptor is proton.UNDESCRIBED:
            descriptor: Any = ("UNDESCRIBED",)
        else:
            descriptor = amqp_tag(value.descriptor)
        return (
            "array",
            AMQPType(value.type).name,
            descriptor,
            tuple(amqp_tag(element) for element in value.elements),
        )
    raise TypeError(f"not an AMQP value of either library: {value!r} ({kind})")


def assert_same(actual: Any, expected: Any) -> None:
    """Assert two values (of either library) are the same AMQP value and type."""
    actual_tag, expected_tag = amqp_tag(actual), amqp_tag(expected)
    assert actual_tag == expected_tag, f"\n  actual:   {actual!r}\n  expected: {expected!r}"


# ---------------------------------------------------------------------------------------
# Converting between the libraries


def to_proton(value: Any) -> Any:
    """Our value as the equivalent Proton value (recursively)."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes, uuid.UUID):
        return value
    if kind is list:
        return [to_proton(item) for item in value]
    if kind is dict:
        return {to_proton(k): to_proton(v) for k, v in value.items()}
    name = _WRAPPER_NAME.get(kind)
    if name is not None:
        proton_class = getattr(proton, name)
        if name == "float32":
            return proton_class(float(value))
        if name == "decimal128":
            return proton_class(bytes(value))
        if name in ("symbol", "char"):
            return proton_class(str(value))
        return proton_class(int(value))
    if kind is Described:
        return proton.Described(to_proton(value.descriptor), to_proton(value.value))
    if kind is Array:
        descriptor = (
            proton.UNDESCRIBED if value.descriptor is UNDESCRIBED else to_proton(value.descriptor)
        )
        return proton.Array(
            descriptor, int(value.type), *(to_proton(element) for element in value.elements)
        )
    raise TypeError(f"cannot convert {value!r} ({kind}) to Proton")


def from_proton(value: Any) -> Any:
    """A Proton value as ours (recursively); binary comes back as `bytes`."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str, bytes, uuid.UUID):
        return value
    if kind in (memoryview, bytearray):
        return bytes(value)
    if kind is list or kind in _PROTON_LISTS:
        return [from_proton(item) for item in value]
    if kind is dict or kind in _PROTON_MAPS:
        return {from_proton(k): from_proton(v) for k, v in value.items()}
    name = _WRAPPER_NAME.get(kind)
    if name is not None:
        our_class = getattr(amqp_core, name)
        if name == "float32":
            return our_class(float(value))
        if name == "decimal128":
            return our_class(bytes(value))
        if name in ("symbol", "char"):
            return our_class(str(value))
        return our_class(int(value))
    if kind is proton.Described:
        return Described(from_proton(value.descriptor), from_proton(value.value))
    if kind is proton.Array:
        descriptor = (
            UNDESCRIBED if value.descriptor is proton.UNDESCRIBED else from_proton(value.descriptor)
        )
        return Array(descriptor, value.type, *(from_proton(element) for element in value))
    raise TypeError(f"cannot convert {value!r} ({kind}) from Proton")


def proton_misreads(value: Any) -> bool:
    """Whether `value` holds what Proton 0.40's decoder gets wrong: a described value
    whose value is itself described. Proton's decoder then misplaces what follows it,
    even in bytes Proton encoded itself:

        [Described(ulong(1), Described(ulong(2), 3)), None]   decodes as  [Described(...)]
        {1: Described(ulong(1), Described(ulong(2), 3)), 2: 3}  as  {1: Described(...), 3: None}
        Array(UNDESCRIBED, LIST, [Described(ulong(1), Described(ulong(2), 3))])
            as  Array(UNDESCRIBED, 0, [...])  (element type 0)

    and its Message drops an amqp-value body ``Described(ulong(1), Described(...))``
    altogether. Tests whose oracle is Proton's decoder skip such values; Proton's
    encoding of them is still checked with our decoder, and our own round trip covers
    them too.
    """
    kind = type(value)
    if kind is Described:
        return (
            type(value.value) is Described
            or proton_misreads(value.descriptor)
            or proton_misreads(value.value)
        )
    if kind is Array:
        return proton_misreads(value.descriptor) or any(map(proton_misreads, value.elements))
    if kind is list:
        return any(map(proton_misreads, value))
    if kind is dict:
        return any(proton_misreads(k) or proton_misreads(v) for k, v in value.items())
    return False


def proton_encode(value: Any) -> bytes:
    """Proton's encoding of one Proton value."""
    data = proton.Data()
    data.put_object(value)
    return data.encode()


def proton_decode(encoded: bytes) -> Any:
    """Decode one value with Proton, checking it used every byte."""
    data = proton.Data()
    used = data.decode(encoded)
    assert used == len(encoded), f"Proton decoded {used} of {len(encoded)} bytes"
    data.rewind()
    assert data.next() is not None
    value = own_binaries(data.get_object())
    assert data.next() is None, "Proton found more than one value"
    return value


def own_binaries(value: Any) -> Any:
    """Proton's value with each binary copied to `bytes`: Proton's `memoryview`s point
    into the `Data` object's memory, which is freed with it."""
    kind = type(value)
    if kind is memoryview:
        return bytes(value)
    if kind is list or kind in _PROTON_LISTS:
        return [own_binaries(item) for item in value]
    if kind is dict or kind in _PROTON_MAPS:
        return {own_binaries(k): own_binaries(v) for k, v in value.items()}
    if kind is proton.Described:
        return proton.Described(own_binaries(value.descriptor), own_binaries(value.value))
    if kind is proton.Array:
        return proton.Array(
            own_binaries(value.descriptor),
            value.type,
            *(own_binaries(element) for element in value.elements),
        )
    return value


# ---------------------------------------------------------------------------------------
# Scalars


def _integers(low: int, high: int, *boundaries: int) -> st.SearchStrategy[int]:
    """Integers in [low, high], with the range's ends and the given boundaries often."""
    edges = sorted(
        {b for b in (low, low + 1, 0, 1, high - 1, high, *boundaries) if low <= b <= high}
    )
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


_BYTE_EDGES = (-129, -128, -1, 127, 128, 255, 256)
_WORD_EDGES = (*_BYTE_EDGES, 2**15 - 1, 2**15, 2**16 - 1, 2**16)
_INT_EDGES = (*_WORD_EDGES, -(2**31), 2**31 - 1, 2**31, 2**32 - 1, 2**32)
_LONG_EDGES = (*_INT_EDGES, -(2**63), 2**63 - 1, 2**63, 2**64 - 1)

_DOUBLE_EDGES = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    math.inf,
    -math.inf,
    math.nan,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,  # the smallest normal
    1.7976931348623157e308,  # the largest finite
    float(2**53 + 1),  # not exactly representable: rounds to 2**53
)
_FLOAT32_EDGES = (
    0.0,
    -0.0,
    1.0,
    math.inf,
    -math.inf,
    math.nan,
    1.401298464324817e-45,  # the smallest float32 subnormal
    1.1754943508222875e-38,  # the smallest float32 normal
    3.4028234663852886e38,  # the largest finite float32
    -3.4028234663852886e38,
    0.1,  # not representable: rounded to single precision by float32()
)
_CHAR_EDGES = ("\0", "\x7f", "\x80", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\U00010000")
_CHAR_EDGES += ("\U0010ffff",)


def _non_surrogate(code_point: int) -> bool:
    return not 0xD800 <= code_point <= 0xDFFF


_code_points = st.integers(0, 0x10FFFF).filter(_non_surrogate).map(chr)

# Long strings and binaries come from a seeded random generator: drawing hundreds of
# characters one by one through Hypothesis would make every test slow.


def _random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Code point ranges of each UTF-8 length (never a surrogate), and how often to use each.
_CODE_POINT_POOLS = ((1, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF))
_CODE_POINT_POOLS += ((0x10000, 0x10FFFF),)
_POOL_WEIGHTS = (8, 1, 1, 1, 1)


def _random_text(seed: int, size: int, ascii_only: bool) -> str:
    rng = random.Random(seed)
    if ascii_only:
        return "".join(chr(rng.randint(0, 0x7F)) for _ in range(size))
    pools = rng.choices(_CODE_POINT_POOLS, _POOL_WEIGHTS, k=size)
    return "".join(chr(rng.randint(low, high)) for low, high in pools)


_seeds = st.integers(0, 2**32)


def _long_texts(min_size: int, max_size: int, ascii_only: bool = False) -> Any:
    return st.builds(_random_text, _seeds, st.integers(min_size, max_size), st.just(ascii_only))


_unicode = st.characters(exclude_categories=["Cs"])
#: Unicode text (no surrogates: they cannot be UTF-8), short and long: some above 255
#: UTF-8 bytes, to reach str32.
texts = st.one_of(
    st.text(_unicode, max_size=20),
    st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), max_size=8),
    _long_texts(80, 300),
)
#: Binary, short and long (some over 255 bytes, to reach vbin32).
binaries = st.one_of(
    st.binary(max_size=20),
    st.builds(_random_bytes, _seeds, st.integers(250, 600)),
)
_ascii = st.characters(max_codepoint=0x7F)
#: Symbols: ASCII, short and long (sym32).
symbols = st.one_of(
    st.text(_ascii, max_size=20),
    st.sampled_from(["amqp:accepted:list", "apache.org:selector-filter:string", "x-opt-to"]),
    _long_texts(250, 300, ascii_only=True),
).map(symbol)
chars = st.one_of(
    st.sampled_from(_CHAR_EDGES),
    _unicode,
    _code_points,
).map(char)
doubles = st.one_of(st.sampled_from(_DOUBLE_EDGES), st.floats())
#: float32 values: every one exactly representable in 32 bits (NaN and infinities too).
float32s = st.one_of(st.sampled_from(_FLOAT32_EDGES), st.floats(width=32)).map(float32)
uuids = st.one_of(
    st.sampled_from([uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]),
    st.uuids(),
)

#: Our value of each AMQP scalar type (the types that can be array elements, less the
#: compound ones).
SCALARS: dict[AMQPType, st.SearchStrategy[Any]] = {
    AMQPType.NULL: st.none(),
    AMQPType.BOOL: st.booleans(),
    AMQPType.UBYTE: _integers(0, 2**8 - 1, *_BYTE_EDGES).map(ubyte),
    AMQPType.BYTE: _integers(-(2**7), 2**7 - 1, *_BYTE_EDGES).map(byte),
    AMQPType.USHORT: _integers(0, 2**16 - 1, *_WORD_EDGES).map(ushort),
    AMQPType.SHORT: _integers(-(2**15), 2**15 - 1, *_WORD_EDGES).map(short),
    AMQPType.UINT: _integers(0, 2**32 - 1, *_INT_EDGES).map(uint),
    AMQPType.INT: _integers(-(2**31), 2**31 - 1, *_INT_EDGES).map(int32),
    AMQPType.CHAR: chars,
    AMQPType.ULONG: _integers(0, 2**64 - 1, *_LONG_EDGES).map(ulong),
    AMQPType.LONG: _integers(-(2**63), 2**63 - 1, *_LONG_EDGES),
    AMQPType.TIMESTAMP: _integers(-(2**63), 2**63 - 1, *_LONG_EDGES, 1311704463521).map(timestamp),
    AMQPType.FLOAT: float32s,
    AMQPType.DOUBLE: doubles,
    AMQPType.DECIMAL32: _integers(0, 2**32 - 1, 0x22500000).map(decimal32),
    AMQPType.DECIMAL64: _integers(0, 2**64 - 1, 0x2238000000000000).map(decimal64),
    AMQPType.DECIMAL128: st.binary(min_size=16, max_size=16).map(decimal128),
    AMQPType.UUID: uuids,
    AMQPType.BINARY: binaries,
    AMQPType.STRING: texts,
    AMQPType.SYMBOL: symbols,
}
SCALAR_TYPES = tuple(SCALARS)

scalars = st.one_of(*SCALARS.values())


def _not_nan(value: Any) -> bool:
    return not (isinstance(value, float) and math.isnan(value))


#: Map keys: any scalar but NaN and binary. Compound keys are left out because Proton's
#: are not hashable; binary because Proton decodes it as a `memoryview`, which is not
#: hashable either (Proton cannot decode a map with a binary key: see
#: `test_binary_map_keys` for ours).
map_keys = st.one_of(
    *(strategy for kind, strategy in SCALARS.items() if kind is not AMQPType.BINARY)
).filter(_not_nan)

#: Descriptors of described values and arrays: ulong codes (small, spec-sized, and the
#: domain-id:descriptor-id form) and symbols.
ulong_descriptors = _integers(0, 2**64 - 1, 0x70, 0x77, 0x0000468C00000004).map(ulong)
descriptors = st.one_of(ulong_descriptors, symbols)
#: Array descriptors: mostly none, else a ulong, a symbol, or null (a real descriptor).
array_descriptors = st.one_of(st.just(UNDESCRIBED), st.just(UNDESCRIBED), descriptors, st.none())


def make_array(descriptor: Any, element_type: AMQPType, elements: list[Any]) -> Array:
    return Array(descriptor, element_type, *elements)


def arrays_of(
    element_type: AMQPType, elements: st.SearchStrategy[Any], max_size: int = 6
) -> st.SearchStrategy[Array]:
    """Arrays of `element_type` with elements drawn from `elements`, described or not."""
    return st.builds(
        make_array,
        array_descriptors,
        st.just(element_type),
        st.lists(elements, max_size=max_size),
    )


#: Arrays of every scalar type, plus a few with more than 255 elements (array32).
scalar_arrays = st.one_of(
    *(arrays_of(kind, strategy) for kind, strategy in SCALARS.items()),
    st.builds(
        lambda descriptor, seed, count: Array(
            descriptor, AMQPType.UBYTE, *map(ubyte, _random_bytes(seed, count))
        ),
        array_descriptors,
        _seeds,
        st.integers(256, 300),
    ),
    st.builds(
        make_array,
        array_descriptors,
        st.sampled_from([AMQPType.NULL, AMQPType.BOOL, AMQPType.ULONG]),
        st.just([]),
    ),
    st.builds(
        lambda descriptor, count: Array(descriptor, AMQPType.NULL, *([None] * count)),
        array_descriptors,
        st.integers(250, 300),
    ),
)


def _compounds(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    lists = st.lists(children, max_size=6)
    maps = st.dictionaries(map_keys, children, max_size=6)
    inner_arrays = st.one_of(
        scalar_arrays,
        arrays_of(AMQPType.LIST, st.lists(children, max_size=3), max_size=3),
        arrays_of(AMQPType.MAP, st.dictionaries(map_keys, children, max_size=3), max_size=3),
    )
    return st.one_of(
        lists,
        maps,
        st.builds(Described, descriptors, children),
        arrays_of(AMQPType.LIST, lists, max_size=4),
        arrays_of(AMQPType.MAP, maps, max_size=4),
        arrays_of(AMQPType.ARRAY, inner_arrays, max_size=4),
        arrays_of(AMQPType.ARRAY, arrays_of(AMQPType.ARRAY, scalar_arrays, 3), max_size=3),
    )


#: Any AMQP value: scalars, lists, maps, described values and arrays, nested.
values = st.recursive(st.one_of(scalars, scalar_arrays), _compounds, max_leaves=8)
#: Smaller values, for maps of them in messages (annotations and footers).
small_values = st.recursive(st.one_of(scalars, scalar_arrays), _compounds, max_leaves=3)

#: Lists, maps, arrays and described values only (each holding any values).
compounds = _compounds(values)


def pairs(strategy: st.SearchStrategy[Any] = values) -> st.SearchStrategy[tuple[Any, Any]]:
    """(our value, the equivalent Proton value)."""
    return strategy.map(lambda value: (value, to_proton(value)))


# ---------------------------------------------------------------------------------------
# Message fields

#: Message ids and correlation ids of every allowed type: a plain int (sent as a ulong),
#: ulong, uuid, binary and string.
message_ids = st.one_of(
    _integers(0, 2**64 - 1, *_LONG_EDGES),
    _integers(0, 2**64 - 1, *_LONG_EDGES).map(ulong),
    uuids,
    binaries,
    texts,
)
#: Text for the properties' string fields. Proton passes these through C strings, so a
#: NUL would cut them short on its side: leave NUL out.
c_texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=30),
    _long_texts(100, 300),  # its code points start at 1
)
c_symbols = st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=40).map(symbol)
#: Times in integer milliseconds (0 means unset in both libraries).
milliseconds = _integers(-(2**47), 2**47, 1311704463521)
#: Annotation maps (delivery and message annotations, footer): symbol or ulong keys.
annotation_maps = st.dictionaries(
    st.one_of(symbols, ulong_descriptors),
    small_values,
    min_size=1,
    max_size=3,
)
#: Application properties: string keys, simple (scalar) values as the spec says.
application_properties = st.dictionaries(texts, scalars, min_size=1, max_size=5)
