"""JMS message selectors: parse the text once, then test many messages quickly.

A selector is the subset of SQL-92 conditional expressions that the JMS specification
defines (JMS 1.1 and Jakarta Messaging section 3.8.1.1, "Message Selector Syntax"):
``JMSType = 'car' AND colour = 'blue' AND weight > 2500``. AMQP consumers send one in
their source's ``apache.org:selector-filter:string`` filter. `Selector.parse` checks the
text and compiles it into nested closures, so testing a message is a handful of calls
and never parses again.

Semantics, with the spec's words where it makes a choice:

- Values are NULL (None), booleans, numbers (exact: int, approximate: float) and
  strings. Other AMQP values (binary, uuid, decimals, lists, maps) are equal only to
  values of the same type, and so can in practice only be tested with IS [NOT] NULL.
- "SQL treats a NULL value as unknown. Comparison or arithmetic with an unknown value
  always yields an unknown value." Unknown is None; AND, OR and NOT follow the spec's
  truth tables, and a selector matches only when it evaluates to true.
- "If the comparison of non-like type values is attempted, the value of the operation
  is false": ``NumberOfOrders > 1`` is false, not unknown, when the property is the
  string '2' (so ``NOT NumberOfOrders > 1`` is true), and so is ``NumberOfOrders <> 1``
  (the sentence covers every comparison; brokers that define <> as NOT = answer true).
  Strings and booleans are ordered by nothing ("restricted to = and <>"): ``<`` on them
  is false.
- "Arithmetic operations must use numeric promotion in the Java programming language":
  two exact numbers give a 64-bit long (wrapping on overflow, ``7 / 2`` is 3, rounding
  toward zero); an approximate number makes the result a double. Arithmetic on a value
  that is not a number is unknown, and so is division by zero, for longs (Java throws)
  and doubles alike (Java's infinities and NaN would only make later comparisons odd).
- ``[NOT] BETWEEN``, ``[NOT] IN`` and ``[NOT] LIKE`` are exactly the expansions the
  spec gives: ``a BETWEEN b AND c`` is ``a >= b AND a <= c``, ``a NOT BETWEEN b AND c``
  is ``a < b OR a > c``; ``IN`` is ORed equalities and ``NOT IN`` their negation;
  ``NOT LIKE`` is the negation of ``LIKE``. So ``x NOT IN ('a')`` is true for a number.
- An identifier used as a condition (``active AND x > 1``) must hold a boolean; any
  other value there is unknown.

Where literals make a selector's types plain, mistakes are rejected when parsing:
``'a' + 1``, ``name < 'b'``, ``'a' = 1``, ``5 AND TRUE``. The left side of IN, LIKE and
IS NULL may be any expression, not only the identifier the spec names, as in ActiveMQ's
grammar, so selectors written for it parse here too.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from uuid import UUID

from ..message import Message
from ..types import decimal32, decimal64

__all__ = [
    "MAX_NESTING_DEPTH",
    "MAX_SELECTOR_LENGTH",
    "Lookup",
    "Selector",
    "SelectorError",
    "message_lookup",
]

Lookup = Callable[[str], Any]
"""Resolves an identifier to its value, or None when the message has no such field."""

_Evaluate = Callable[[Lookup], Any]

#: Longest selector accepted, in characters. The spec sets no limit, but a selector
#: arrives in an attach frame from any client, and parsing costs time and memory in
#: proportion to its length. Hand-written selectors are a line or two; the long ones
#: are generated IN lists, and 8 KiB holds some 200 quoted UUIDs.
MAX_SELECTOR_LENGTH = 8192

#: Deepest nesting accepted. Every parenthesis, NOT and unary sign is one level. The
#: parser descends eight Python frames per parenthesis (one per precedence level) and
#: an evaluation at most four, so 32 levels take under 300 frames: far below Python's
#: default limit of 1000 even for a caller deep in its own stack, and a hostile selector
#: gets a SelectorError, never a RecursionError. Selectors people write nest a handful
#: of levels; ActiveMQ and the JMS spec set no limit at all.
MAX_NESTING_DEPTH = 32

_JAVA_WHITESPACE = " \t\f\r\n"


class SelectorError(ValueError):
    """A selector that is not valid: `message` says why, `position` (0-based, an index
    into the selector's text) says where."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return f"at position {self.position}: {self.message}"


# -- values -------------------------------------------------------------------------------

# A value's kind decides what it compares with. Kinds are these four objects, or for
# any other value its type, so that two uuids (say) are alike and a uuid and a string
# are not.
_NULL = "null"
_BOOLEAN = "boolean"
_NUMBER = "number"
_STRING = "string"

_KINDS: dict[type, object] = {
    type(None): _NULL,
    bool: _BOOLEAN,
    int: _NUMBER,
    float: _NUMBER,
    str: _STRING,
}


def _kind(value: Any) -> object:
    value_type = type(value)
    kind = _KINDS.get(value_type)
    if kind is None:
        # Subclasses (ulong, timestamp, float32, symbol, ...) are classified once.
        kind = _KINDS[value_type] = _classify(value_type)
    return kind


def _classify(value_type: type) -> object:
    if issubclass(value_type, (decimal32, decimal64)):
        return value_type  # raw IEEE 754 decimal bits: an int, but not the number meant
    if issubclass(value_type, (int, float)):
        return _NUMBER
    if issubclass(value_type, str):
        return _STRING
    return value_type


_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1


def _long(value: int) -> int:
    """`value` as Java's 64-bit long arithmetic leaves it: wrapped around on overflow."""
    if _LONG_MIN <= value <= _LONG_MAX:
        return value
    return (value - _LONG_MIN) % 2**64 + _LONG_MIN


def _arithmetic(operation: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        if _kind(left) is not _NUMBER or _kind(right) is not _NUMBER:
            return None
        try:
            result = operation(left, right)
        except ArithmeticError:  # division by zero; an int too large for a float
            return None
        return _long(result) if type(result) is int else result

    return apply


def _java_divide(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        quotient = abs(left) // abs(right)  # Java's long division rounds toward zero
        return -quotient if (left < 0) != (right < 0) else quotient
    return left / right


_ARITHMETIC = {
    "+": _arithmetic(operator.add),
    "-": _arithmetic(operator.sub),
    "*": _arithmetic(operator.mul),
    "/": _arithmetic(_java_divide),
}


def _negate(value: Any) -> Any:
    if _kind(value) is not _NUMBER:
        return None
    return _long(-value) if isinstance(value, int) else -value


def _positive(value: Any) -> Any:
    return value if _kind(value) is _NUMBER else None


def _equal(left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None
    if _kind(left) is not _kind(right):
        return False
    return bool(left == right)


def _not_equal(left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None
    if _kind(left) is not _kind(right):
        return False
    return bool(left != right)


def _ordering(operation: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool | None]:
    def compare(left: Any, right: Any) -> bool | None:
        if left is None or right is None:
            return None
        if _kind(left) is _NUMBER and _kind(right) is _NUMBER:
            return operation(left, right)
        return False

    return compare


_less = _ordering(operator.lt)
_less_equal = _ordering(operator.le)
_greater = _ordering(operator.gt)
_greater_equal = _ordering(operator.ge)

_COMPARISONS: dict[str, Callable[[Any, Any], bool | None]] = {
    "=": _equal,
    "<>": _not_equal,
    "<": _less,
    "<=": _less_equal,
    ">": _greater,
    ">=": _greater_equal,
}


def _and(left: Any, right: Any) -> bool | None:
    """The spec's AND table: false wins, then unknown."""
    if left is False or right is False:
        return False
    if left is True and right is True:
        return True
    return None


def _or(left: Any, right: Any) -> bool | None:
    """The spec's OR table: true wins, then unknown."""
    if left is True or right is True:
        return True
    if left is False and right is False:
        return False
    return None


# -- LIKE ---------------------------------------------------------------------------------


class _Text:
    """A stretch of a LIKE pattern between two '%' with no '_': plain string search."""

    __slots__ = ("length", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.length = len(text)

    def whole(self, value: str) -> bool:
        return value == self.text

    def at(self, value: str, position: int) -> bool:
        return value.startswith(self.text, position)

    def find(self, value: str, start: int, end: int) -> int:
        return value.find(self.text, start, end)


class _Wildcards:
    """A stretch of a LIKE pattern between two '%' holding '_': a fixed-length regex
    with no repetition, so it never backtracks."""

    __slots__ = ("length", "regex")

    def __init__(self, characters: list[str | None]) -> None:
        source = "".join("." if c is None else re.escape(c) for c in characters)
        self.regex = re.compile(source, re.DOTALL)
        self.length = len(characters)

    def whole(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None

    def at(self, value: str, position: int) -> bool:
        return self.regex.match(value, position) is not None

    def find(self, value: str, start: int, end: int) -> int:
        found = self.regex.search(value, start, end)
        return -1 if found is None else found.start()


def _stretch(characters: list[str | None]) -> _Text | _Wildcards:
    if None in characters:
        return _Wildcards(characters)
    return _Text("".join(c for c in characters if c is not None))


def _like_matcher(pattern: str, escape: str | None, position: int) -> Callable[[str], bool]:
    """A test of strings against a LIKE pattern: '_' is any one character, '%' any run.

    The pattern is cut at each '%' into fixed-length stretches. The first must sit at the
    start, the last at the end, and each one between at its leftmost place after the one
    before: if any placement works, that one does. The cost is one scan of the string,
    where a translation to a backtracking regex ('%a%a%a%b') could take forever.
    """
    stretches: list[list[str | None]] = [[]]
    characters = iter(pattern)
    for character in characters:
        if character == escape:
            escaped = next(characters, None)
            if escaped is None:
                raise SelectorError("the LIKE pattern ends with its escape character", position)
            stretches[-1].append(escaped)  # any character after the escape is itself
        elif character == "%":
            stretches.append([])
        elif character == "_":
            stretches[-1].append(None)
        else:
            stretches[-1].append(character)
    if len(stretches) == 1:
        return _stretch(stretches[0]).whole
    first, *inner, last = (_stretch(characters) for characters in stretches)
    middle = tuple(stretch for stretch in inner if stretch.length)

    def matches(value: str) -> bool:
        end = len(value) - last.length
        if end < first.length or not first.at(value, 0) or not last.at(value, end):
            return False
        start = first.length
        for stretch in middle:
            found = stretch.find(value, start, end)
            if found < 0:
                return False
            start = found + stretch.length
        return True

    return matches


# -- tokens -------------------------------------------------------------------------------

_KEYWORDS = frozenset(
    ["AND", "BETWEEN", "ESCAPE", "FALSE", "IN", "IS", "LIKE", "NOT", "NULL", "OR", "TRUE"]
)

# Java's literal syntax, as the spec asks: integers in decimal, hex or octal with an
# optional L; floating-point numbers with a point or an exponent and an optional F or D.
_TOKEN = re.compile(
    r"(?P<space>[ \t\f\r\n]+)"
    r"|(?P<approximate>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?"
    r"|[0-9]+(?:[eE][+-]?[0-9]+[fFdD]?|[fFdD]))"
    r"|(?P<exact>0[xX][0-9a-fA-F]+[lL]?|[0-9]+[lL]?)"
    r"|(?P<identifier>(?:[^\W\d]|\$)(?:\w|\$)*)"
    r"|(?P<string>'(?:[^']++|'')*+')"  # possessive: an unclosed 'it''s fails at its start
    r"|(?P<operator><>|<=|>=|[=<>+\-*/(),])"
)


class _Token(NamedTuple):
    kind: str  # "identifier", "string", "exact", "approximate", "end", a keyword, an operator
    value: Any
    position: int
    text: str


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    end = len(text)
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None:
            raise SelectorError(_unexpected_character(text, position), position)
        kind = match.lastgroup
        source = match.group()
        following = match.end()
        if kind == "identifier":
            keyword = source.upper()
            if source.isascii() and keyword in _KEYWORDS:
                tokens.append(_Token(keyword, None, position, source))
            else:
                tokens.append(_Token("identifier", source, position, source))
        elif kind == "string":
            tokens.append(_Token("string", source[1:-1].replace("''", "'"), position, source))
        elif kind == "exact" or kind == "approximate":
            if following < end and _continues_number(text[following]):
                malformed = text[position : following + 1]
                raise SelectorError(f"malformed number {malformed!r}", position)
            if kind == "exact":
                value: int | float = _exact_value(source, position)
            else:
                value = _approximate_value(source, position)
            tokens.append(_Token(kind, value, position, source))
        elif kind == "operator":
            tokens.append(_Token(source, None, position, source))
        position = following
    tokens.append(_Token("end", None, end, ""))
    return tokens


def _unexpected_character(text: str, position: int) -> str:
    character = text[position]
    if character == "'":
        return "unterminated string literal"
    if character == '"':
        return "unexpected character '\"' (string literals are in single quotes)"
    if text.startswith("!=", position):
        return "unexpected '!=' (not equal is <>)"
    return f"unexpected character {character!r}"


def _continues_number(character: str) -> bool:
    return character.isalnum() or character in "_$."


_OUT_OF_LONG_RANGE = "integer literal out of the range of a 64-bit long"


def _exact_value(source: str, position: int) -> int:
    digits = source.rstrip("lL")
    if len(digits) > 1 and digits[0] == "0":
        # Hex and octal literals may spell all 64 bits: 0xFFFFFFFFFFFFFFFF is -1.
        if digits[1] in "xX":
            value = int(digits[2:], 16)
        elif digits.strip("01234567"):
            raise SelectorError(f"malformed octal literal {source!r}", position)
        else:
            value = int(digits, 8)
        if value >= 2**64:
            raise SelectorError(_OUT_OF_LONG_RANGE, position)
        return _long(value)
    # Counting digits first keeps int() away from its limit on huge digit strings.
    if len(digits) > 19 or int(digits) > 2**63:
        raise SelectorError(_OUT_OF_LONG_RANGE, position)
    return int(digits)  # the parser lets 2**63 through only as -9223372036854775808


def _approximate_value(source: str, position: int) -> float:
    value = float(source.rstrip("fFdD"))
    if value == float("inf"):
        raise SelectorError("approximate literal out of the range of a double", position)
    return value


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the selector"
    text = token.text if len(token.text) <= 30 else token.text[:27] + "..."
    if token.kind == "string":
        return f"string {text}"
    return repr(text)


# -- parse tree ---------------------------------------------------------------------------

# What a node is known to yield before any message is seen, named for error messages.
_CONDITION = "a condition"
_NUMERIC = "a number"
_TEXT = "a string"
_ANY = "any value"  # an identifier: its type is the message's business

_VARIES = object()  # a node's `constant` when its value depends on the message


class _Node:
    """A compiled expression: `evaluate(lookup)` gives its value for one message."""

    __slots__ = ("constant", "evaluate", "identifier", "position", "yields")

    def __init__(
        self,
        evaluate: _Evaluate,
        yields: str,
        position: int,
        constant: Any = _VARIES,
        identifier: str | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.yields = yields
        self.position = position
        self.constant = constant
        self.identifier = identifier


def _constant(value: Any, yields: str, position: int) -> _Node:
    return _Node(lambda lookup: value, yields, position, constant=value)


def _identifier(name: str, position: int) -> _Node:
    return _Node(lambda lookup: lookup(name), _ANY, position, identifier=name)


def _node(evaluate: _Evaluate, yields: str, position: int, operands: Iterable[_Node]) -> _Node:
    """A node for `evaluate`, computed now if every operand is a constant."""
    if all(operand.constant is not _VARIES for operand in operands):
        return _constant(evaluate(_no_lookup), yields, position)
    return _Node(evaluate, yields, position)


def _no_lookup(name: str) -> Any:
    raise AssertionError("a constant expression looked up an identifier")


def _binary(test: Callable[[Any, Any], Any], left: _Node, right: _Node) -> _Evaluate:
    """`test` of two operands; the usual ``name <op> literal`` makes one call less."""
    if left.identifier is not None and right.constant is not _VARIES:
        name, constant = left.identifier, right.constant
        return lambda lookup: test(lookup(name), constant)
    if left.constant is not _VARIES and right.identifier is not None:
        constant, name = left.constant, right.identifier
        return lambda lookup: test(constant, lookup(name))
    evaluate_left, evaluate_right = left.evaluate, right.evaluate
    return lambda lookup: test(evaluate_left(lookup), evaluate_right(lookup))


def _all_true(operands: list[_Evaluate]) -> _Evaluate:
    if len(operands) == 2:
        first, second = operands
        return lambda lookup: _and(first(lookup), second(lookup))
    evaluators = tuple(operands)

    def evaluate(lookup: Lookup) -> bool | None:
        result: bool | None = True
        for operand in evaluators:
            value = operand(lookup)
            if value is False:
                return False
            if value is not True:
                result = None
        return result

    return evaluate


def _any_true(operands: list[_Evaluate]) -> _Evaluate:
    if len(operands) == 2:
        first, second = operands
        return lambda lookup: _or(first(lookup), second(lookup))
    evaluators = tuple(operands)

    def evaluate(lookup: Lookup) -> bool | None:
        result: bool | None = False
        for operand in evaluators:
            value = operand(lookup)
            if value is True:
                return True
            if value is not False:
                result = None
        return result

    return evaluate


def _negation(operand: _Evaluate) -> _Evaluate:
    def evaluate(lookup: Lookup) -> bool | None:
        value = operand(lookup)
        if value is True:
            return False
        if value is False:
            return True
        return None

    return evaluate


def _arithmetic_chain(
    first: _Evaluate, steps: list[tuple[Callable[[Any, Any], Any], _Evaluate]]
) -> _Evaluate:
    """``a + b - c ...``, left to right, in one loop so a long chain nests nothing."""
    if len(steps) == 1:
        ((apply, second),) = steps
        return lambda lookup: apply(first(lookup), second(lookup))
    rest = tuple(steps)

    def evaluate(lookup: Lookup) -> Any:
        value = first(lookup)
        for apply, operand in rest:
            value = apply(value, operand(lookup))
        return value

    return evaluate


def _unary(apply: Callable[[Any], Any], operand: _Evaluate) -> _Evaluate:
    return lambda lookup: apply(operand(lookup))


def _between(value: _Evaluate, low: _Evaluate, high: _Evaluate) -> _Evaluate:
    def evaluate(lookup: Lookup) -> bool | None:
        subject = value(lookup)
        return _and(_greater_equal(subject, low(lookup)), _less_equal(subject, high(lookup)))

    return evaluate


def _not_between(value: _Evaluate, low: _Evaluate, high: _Evaluate) -> _Evaluate:
    def evaluate(lookup: Lookup) -> bool | None:
        subject = value(lookup)
        return _or(_less(subject, low(lookup)), _greater(subject, high(lookup)))

    return evaluate


def _is_null(value: _Evaluate, negated: bool) -> _Evaluate:
    if negated:
        return lambda lookup: value(lookup) is not None
    return lambda lookup: value(lookup) is None


def _string_test(value: _Evaluate, test: Callable[[Any], bool], negated: bool) -> _Evaluate:
    """IN and LIKE: unknown for NULL, false for a value that is not a string (a non-like
    comparison), so true for NOT IN and NOT LIKE."""

    def evaluate(lookup: Lookup) -> bool | None:
        subject = value(lookup)
        if subject is None:
            return None
        if _kind(subject) is not _STRING:
            return negated
        return test(subject) is not negated

    return evaluate


# -- parser -------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the grammar, lowest precedence first:

    selector       = or-expr
    or-expr        = and-expr {OR and-expr}
    and-expr       = not-expr {AND not-expr}
    not-expr       = NOT not-expr | comparison
    comparison     = sum [ ("=" | "<>" | "<" | "<=" | ">" | ">=") sum
                         | [NOT] BETWEEN sum AND sum
                         | [NOT] IN "(" string {"," string} ")"
                         | [NOT] LIKE string [ESCAPE string]
                         | IS [NOT] NULL ]
    sum            = product {("+" | "-") product}
    product        = unary {("*" | "/") unary}
    unary          = ("+" | "-") unary | primary
    primary        = identifier | string | exact | approximate | TRUE | FALSE
                   | "(" or-expr ")"
    """

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str) -> bool:
        if self.tokens[self.index].kind == kind:
            self.index += 1
            return True
        return False

    def expect(self, kind: str, expected: str) -> _Token:
        if self.token.kind != kind:
            raise self.error(f"expected {expected}")
        return self.advance()

    def error(self, expected: str) -> SelectorError:
        return SelectorError(f"{expected}, found {_describe(self.token)}", self.token.position)

    def nest(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING_DEPTH:
            raise SelectorError(f"nested deeper than {MAX_NESTING_DEPTH} levels", token.position)

    @staticmethod
    def condition(node: _Node) -> _Node:
        if node.yields is not _CONDITION and node.yields is not _ANY:
            raise SelectorError(f"expected a condition, found {node.yields}", node.position)
        return node

    @staticmethod
    def number(node: _Node, operator: str, hint: str = "") -> _Node:
        if node.yields is not _NUMERIC and node.yields is not _ANY:
            message = f"{operator} needs numbers, found {node.yields}{hint}"
            raise SelectorError(message, node.position)
        return node

    @staticmethod
    def string(node: _Node, operator: str) -> _Node:
        if node.yields is not _TEXT and node.yields is not _ANY:
            raise SelectorError(f"{operator} needs a string, found {node.yields}", node.position)
        return node

    def parse(self) -> _Evaluate:
        node = self.condition(self.parse_or())
        if self.token.kind != "end":
            raise self.error("expected an operator or the end of the selector")
        return node.evaluate

    def parse_or(self) -> _Node:
        node = self.parse_and()
        if self.token.kind != "OR":
            return node
        operands = [self.condition(node)]
        while self.accept("OR"):
            operands.append(self.condition(self.parse_and()))
        evaluate = _any_true([operand.evaluate for operand in operands])
        return _node(evaluate, _CONDITION, node.position, operands)

    def parse_and(self) -> _Node:
        node = self.parse_not()
        if self.token.kind != "AND":
            return node
        operands = [self.condition(node)]
        while self.accept("AND"):
            operands.append(self.condition(self.parse_not()))
        evaluate = _all_true([operand.evaluate for operand in operands])
        return _node(evaluate, _CONDITION, node.position, operands)

    def parse_not(self) -> _Node:
        token = self.token
        if token.kind != "NOT":
            return self.parse_comparison()
        self.advance()
        self.nest(token)
        operand = self.condition(self.parse_not())
        self.depth -= 1
        return _node(_negation(operand.evaluate), _CONDITION, token.position, [operand])

    def parse_comparison(self) -> _Node:
        left = self.parse_sum()
        token = self.token
        kind = token.kind
        if kind in _COMPARISONS:
            self.advance()
            right = self.parse_sum()
            if kind == "=" or kind == "<>":
                known = left.yields is not _ANY and right.yields is not _ANY
                if known and left.yields is not right.yields:
                    message = f"cannot compare {left.yields} with {right.yields}"
                    raise SelectorError(message, token.position)
            else:
                hint = " (strings and booleans compare only with = and <>)"
                self.number(left, f"'{kind}'", hint)
                self.number(right, f"'{kind}'", hint)
            evaluate = _binary(_COMPARISONS[kind], left, right)
            return _node(evaluate, _CONDITION, left.position, [left, right])
        negated = kind == "NOT"
        if negated:
            self.advance()
            kind = self.token.kind
            if kind not in ("BETWEEN", "IN", "LIKE"):
                raise self.error("expected BETWEEN, IN or LIKE after NOT")
        if kind == "BETWEEN":
            self.advance()
            return self.parse_between(left, negated)
        if kind == "IN":
            self.advance()
            return self.parse_in(left, negated)
        if kind == "LIKE":
            self.advance()
            return self.parse_like(left, negated)
        if kind == "IS":
            self.advance()
            negated = self.accept("NOT")
            self.expect("NULL", "NULL")
            return _node(_is_null(left.evaluate, negated), _CONDITION, left.position, [left])
        return left

    def parse_between(self, value: _Node, negated: bool) -> _Node:
        self.number(value, "BETWEEN")
        low = self.number(self.parse_sum(), "BETWEEN")
        self.expect("AND", "AND")
        high = self.number(self.parse_sum(), "BETWEEN")
        between = _not_between if negated else _between
        evaluate = between(value.evaluate, low.evaluate, high.evaluate)
        return _node(evaluate, _CONDITION, value.position, [value, low, high])

    def parse_in(self, value: _Node, negated: bool) -> _Node:
        self.string(value, "IN")
        self.expect("(", "'('")
        expected = "a string literal (IN lists hold only strings)"
        members = {self.expect("string", expected).value}
        while self.accept(","):
            members.add(self.expect("string", expected).value)
        self.expect(")", "',' or ')'")
        evaluate = _string_test(value.evaluate, frozenset(members).__contains__, negated)
        return _node(evaluate, _CONDITION, value.position, [value])

    def parse_like(self, value: _Node, negated: bool) -> _Node:
        self.string(value, "LIKE")
        pattern = self.expect("string", "a string literal pattern")
        escape = None
        if self.accept("ESCAPE"):
            token = self.expect("string", "a string literal escape character")
            if len(token.value) != 1:
                raise SelectorError("the ESCAPE string must be one character", token.position)
            escape = token.value
        matches = _like_matcher(pattern.value, escape, pattern.position)
        evaluate = _string_test(value.evaluate, matches, negated)
        return _node(evaluate, _CONDITION, value.position, [value])

    # parse_sum and parse_product loop in place rather than share a helper that parses
    # operands: that would add a Python frame to every level of nesting.

    def parse_sum(self) -> _Node:
        operands = [self.parse_product()]
        operators = []
        while self.token.kind == "+" or self.token.kind == "-":
            operators.append(self.advance().kind)
            operands.append(self.parse_product())
        return self.arithmetic(operands, operators)

    def parse_product(self) -> _Node:
        operands = [self.parse_unary()]
        operators = []
        while self.token.kind == "*" or self.token.kind == "/":
            operators.append(self.advance().kind)
            operands.append(self.parse_unary())
        return self.arithmetic(operands, operators)

    def arithmetic(self, operands: list[_Node], operators: list[str]) -> _Node:
        first = operands[0]
        if not operators:
            return first
        for index, operand in enumerate(operands):
            self.number(operand, f"'{operators[max(index - 1, 0)]}'")
        steps = [
            (_ARITHMETIC[operator], operand.evaluate)
            for operator, operand in zip(operators, operands[1:], strict=True)
        ]
        evaluate = _arithmetic_chain(first.evaluate, steps)
        return _node(evaluate, _NUMERIC, first.position, operands)

    def parse_unary(self) -> _Node:
        token = self.token
        if token.kind != "+" and token.kind != "-":
            return self.parse_primary()
        self.advance()
        following = self.token
        if token.kind == "-" and following.kind == "exact" and following.value == 2**63:
            self.advance()
            return _constant(_LONG_MIN, _NUMERIC, token.position)
        self.nest(token)
        operand = self.number(self.parse_unary(), f"unary '{token.kind}'")
        self.depth -= 1
        evaluate = _unary(_negate if token.kind == "-" else _positive, operand.evaluate)
        return _node(evaluate, _NUMERIC, token.position, [operand])

    def parse_primary(self) -> _Node:
        token = self.token
        kind = token.kind
        if kind == "identifier":
            self.advance()
            return _identifier(token.value, token.position)
        if kind == "string":
            self.advance()
            return _constant(token.value, _TEXT, token.position)
        if kind == "exact" or kind == "approximate":
            if kind == "exact" and token.value > _LONG_MAX:
                raise SelectorError(_OUT_OF_LONG_RANGE, token.position)
            self.advance()
            return _constant(token.value, _NUMERIC, token.position)
        if kind == "TRUE" or kind == "FALSE":
            self.advance()
            return _constant(kind == "TRUE", _CONDITION, token.position)
        if kind == "(":
            self.advance()
            self.nest(token)
            node = self.parse_or()
            self.expect(")", "')'")
            self.depth -= 1
            return node
        if kind == "NULL":
            raise self.error("expected an expression (NULL is only tested, with IS [NOT] NULL)")
        raise self.error("expected an expression")


# -- public API ---------------------------------------------------------------------------


class Selector:
    """A parsed selector. ``Selector.parse("colour = 'green'").matches(message)``.

    An empty selector (or only whitespace) matches every message: JMS treats it as no
    selector at all.
    """

    __slots__ = ("_evaluate", "text")

    def __init__(self, text: str) -> None:
        if len(text) > MAX_SELECTOR_LENGTH:
            raise SelectorError(
                f"selector longer than {MAX_SELECTOR_LENGTH} characters", MAX_SELECTOR_LENGTH
            )
        self.text = text
        if text.strip(_JAVA_WHITESPACE):
            self._evaluate = _Parser(text).parse()
        else:
            self._evaluate = _match_all

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Check and compile `text`; raise `SelectorError` saying where it is wrong."""
        return cls(text)

    def matches(self, source: Lookup | Message) -> bool:
        """Whether the selector is true for a message, or for the values `source` looks up.

        A broker testing one message against many selectors builds the lookup once with
        `message_lookup` and passes that.
        """
        lookup = message_lookup(source) if isinstance(source, Message) else source
        return self._evaluate(lookup) is True

    def evaluate(self, source: Lookup | Message) -> bool | None:
        """The selector's three-valued result: True, False, or None for unknown."""
        lookup = message_lookup(source) if isinstance(source, Message) else source
        value = self._evaluate(lookup)
        return value if value is True or value is False else None

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Selector({self.text!r})"


def _match_all(lookup: Lookup) -> bool:
    return True


def _milliseconds(seconds: float) -> int:
    # JMS times are long milliseconds, 0 when unset, as Message's 0 seconds is.
    return round(seconds * 1000)


def _identifier_value(value: Any) -> Any:
    """A message-id or correlation-id as a selector sees it: strings and ulongs as they
    are, a uuid as its canonical string; a binary id stays bytes, which no literal equals."""
    return str(value) if isinstance(value, UUID) else value


def _user_id(message: Message) -> str | None:
    user_id = message.user_id
    return None if user_id is None else bytes(user_id).decode("utf-8", "replace")


#: The JMS header fields a selector may name, and the JMSX properties AMQP carries in
#: its header and properties sections (the mapping Qpid JMS uses). These names always
#: mean the message's fields: JMS reserves them, so an application property of the same
#: name is not consulted.
_HEADERS: dict[str, Callable[[Message], Any]] = {
    "JMSDeliveryMode": lambda m: "PERSISTENT" if m.durable else "NON_PERSISTENT",
    "JMSPriority": lambda m: m.priority,
    "JMSMessageID": lambda m: _identifier_value(m.id),
    "JMSTimestamp": lambda m: _milliseconds(m.creation_time),
    "JMSCorrelationID": lambda m: _identifier_value(m.correlation_id),
    "JMSType": lambda m: m.subject,
    "JMSExpiration": lambda m: _milliseconds(m.expiry_time),
    "JMSRedelivered": lambda m: m.delivery_count > 0,
    "JMSXDeliveryCount": lambda m: m.delivery_count + 1,  # JMS counts this delivery too
    "JMSXGroupID": lambda m: m.group_id,
    "JMSXGroupSeq": lambda m: m.group_sequence,
    "JMSXUserID": _user_id,
}


def message_lookup(message: Message) -> Lookup:
    """The `Lookup` a selector uses to read `message`.

    The JMS header names map to AMQP fields: JMSDeliveryMode ('PERSISTENT' when durable,
    else 'NON_PERSISTENT'), JMSPriority (priority), JMSMessageID (id), JMSTimestamp
    (creation_time in ms), JMSCorrelationID (correlation_id), JMSType (subject),
    JMSExpiration (expiry_time in ms), JMSRedelivered (delivery_count > 0); and the JMSX
    properties JMSXDeliveryCount (delivery_count + 1), JMSXGroupID (group_id),
    JMSXGroupSeq (group_sequence), JMSXUserID (user_id as UTF-8 text). Every other name
    is an application property (``message.properties``), NULL when absent.
    """
    properties = message.properties
    get_property = properties.get if properties else _absent

    def lookup(name: str) -> Any:
        header = _HEADERS.get(name)
        if header is not None:
            return header(message)
        return get_property(name)

    return lookup


def _absent(name: str) -> None:
    return None
