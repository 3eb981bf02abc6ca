"""JMS message selectors (`amqp_core.broker.selector`) parse, evaluate and fail as the JMS
specification's section 3.8.1.1 says.

Most tables give a selector, the values its identifiers have, and the three-valued result
expected: True, False, or None for unknown. A selector matches only when it is True.
"""

from __future__ import annotations

import inspect
import sys
import time
import uuid
from typing import Any

import pytest

from amqp_core import Message
from amqp_core.broker.selector import (
    MAX_NESTING_DEPTH,
    MAX_SELECTOR_LENGTH,
    Selector,
    SelectorError,
    message_lookup,
)
from amqp_core.types import decimal64, float32, symbol, timestamp, ulong

T, F, U = True, False, None  # U: unknown, SQL's NULL as a truth value


def check(text: str, values: dict[str, Any], expected: bool | None) -> None:
    selector = Selector.parse(text)
    assert selector.evaluate(values.get) is expected, text
    assert selector.matches(values.get) is (expected is True), text


# -- three-valued logic: the spec's truth tables --------------------------------------------

AND_TABLE = {
    (T, T): T, (T, F): F, (T, U): U,
    (F, T): F, (F, F): F, (F, U): F,
    (U, T): U, (U, F): F, (U, U): U,
}  # fmt: skip

OR_TABLE = {
    (T, T): T, (T, F): T, (T, U): T,
    (F, T): T, (F, F): F, (F, U): U,
    (U, T): T, (U, F): U, (U, U): U,
}  # fmt: skip

NOT_TABLE = {T: F, F: T, U: U}


@pytest.mark.parametrize(("operands", "expected"), AND_TABLE.items())
def test_and_truth_table(operands: tuple[Any, Any], expected: bool | None) -> None:
    left, right = operands
    check("a AND b", {"a": left, "b": right}, expected)
    # The same table whatever produced the unknown: a comparison with a missing property.
    check("(a = TRUE) AND (b = TRUE)", {"a": left, "b": right}, expected)


@pytest.mark.parametrize(("operands", "expected"), OR_TABLE.items())
def test_or_truth_table(operands: tuple[Any, Any], expected: bool | None) -> None:
    left, right = operands
    check("a OR b", {"a": left, "b": right}, expected)
    check("(a = TRUE) OR (b = TRUE)", {"a": left, "b": right}, expected)


@pytest.mark.parametrize(("operand", "expected"), NOT_TABLE.items())
def test_not_truth_table(operand: bool | None, expected: bool | None) -> None:
    check("NOT a", {"a": operand}, expected)
    check("NOT (a = TRUE)", {"a": operand}, expected)


@pytest.mark.parametrize("size", [3, 5])
def test_long_and_or_chains_follow_the_same_tables(size: int) -> None:
    names = [f"p{i}" for i in range(size)]
    for values in ([T] * size, [T] * (size - 1) + [U], [U] + [F] + [T] * (size - 2)):
        bound = dict(zip(names, values, strict=True))
        expected_and: bool | None = T
        expected_or: bool | None = F
        for value in values:
            expected_and = AND_TABLE[expected_and, value]
            expected_or = OR_TABLE[expected_or, value]
        check(" AND ".join(names), bound, expected_and)
        check(" OR ".join(names), bound, expected_or)


# -- NULL ---------------------------------------------------------------------------------

NULL_CASES = [
    # Comparison or arithmetic with an unknown value always yields an unknown value.
    ("missing = 1", {}, U),
    ("missing <> 1", {}, U),
    ("missing > 1", {}, U),
    ("missing = 'x'", {}, U),
    ("missing = missing", {}, U),
    ("missing + 1 = 2", {}, U),
    ("-missing < 0", {}, U),
    ("x * missing > 0", {"x": 3}, U),
    ("NOT missing > 1", {}, U),
    # IS [NOT] NULL turns unknown into true or false.
    ("missing IS NULL", {}, T),
    ("missing IS NOT NULL", {}, F),
    ("x IS NULL", {"x": 0}, F),
    ("x IS NOT NULL", {"x": ""}, T),
    ("x is not null AND x = ''", {"x": ""}, T),
    ("(missing + 1) IS NULL", {}, T),
    # Unknown inside AND / OR follows the tables.
    ("missing = 1 OR x = 1", {"x": 1}, T),
    ("missing = 1 AND x = 2", {"x": 1}, F),
    ("missing = 1 AND x = 1", {"x": 1}, U),
    # BETWEEN is an AND of two comparisons, NOT BETWEEN an OR.
    ("missing BETWEEN 1 AND 3", {}, U),
    ("x BETWEEN missing AND 3", {"x": 2}, U),
    ("x BETWEEN missing AND 1", {"x": 2}, F),
    ("x NOT BETWEEN missing AND 1", {"x": 2}, T),
    ("x NOT BETWEEN missing AND 3", {"x": 2}, U),
    # If the identifier of IN / NOT IN / LIKE / NOT LIKE is NULL, the result is unknown.
    ("missing IN ('a', 'b')", {}, U),
    ("missing NOT IN ('a', 'b')", {}, U),
    ("missing LIKE 'a%'", {}, U),
    ("missing NOT LIKE 'a%'", {}, U),
]


@pytest.mark.parametrize(("text", "values", "expected"), NULL_CASES)
def test_null_semantics(text: str, values: dict[str, Any], expected: bool | None) -> None:
    check(text, values, expected)


# -- types --------------------------------------------------------------------------------

TYPE_CASES = [
    # "Only like type values can be compared ... If the comparison of non-like type values
    # is attempted, the value of the operation is false."
    ("NumberOfOrders > 1", {"NumberOfOrders": "2"}, F),
    ("NOT NumberOfOrders > 1", {"NumberOfOrders": "2"}, T),
    ("NumberOfOrders = 2", {"NumberOfOrders": "2"}, F),
    ("NumberOfOrders <> 2", {"NumberOfOrders": "2"}, F),
    ("flag = 1", {"flag": True}, F),
    ("flag = 'true'", {"flag": True}, F),
    ("flag = TRUE", {"flag": True}, T),
    ("flag <> FALSE", {"flag": True}, T),
    ("name = other", {"name": "1", "other": 1}, F),
    ("name = other", {"name": "a", "other": "a"}, T),
    # "String and boolean comparison is restricted to = and <>."
    ("name > other", {"name": "b", "other": "a"}, F),
    ("flag >= other", {"flag": True, "other": False}, F),
    # "... valid to compare exact numeric values and approximate numeric values."
    ("x = 5.0", {"x": 5}, T),
    ("x >= 4.99", {"x": 5}, T),
    ("x < 5.01", {"x": 5}, T),
    ("price = 10", {"price": 10.0}, T),
    # AMQP's wrappers are their plain kinds.
    ("x = 7", {"x": ulong(7)}, T),
    ("x > 1.5", {"x": float32(2.5)}, T),
    ("s = 'abc'", {"s": symbol("abc")}, T),
    ("t < 1000", {"t": timestamp(999)}, T),
    # Other values equal only values of their own type.
    ("b = 'abc'", {"b": b"abc"}, F),
    ("b = other", {"b": b"abc", "other": b"abc"}, T),
    ("u = other", {"u": uuid.UUID(int=1), "other": "00000000-0000-0000-0000-000000000001"}, F),
    ("d = 1", {"d": decimal64(1)}, F),  # raw decimal bits are not the number 1
    ("b IS NOT NULL", {"b": b""}, T),
    # Arithmetic on what is not a number is unknown.
    ("s + 1 = 2", {"s": "1"}, U),
    ("-s = -1", {"s": "1"}, U),
    ("flag * 1 = 1", {"flag": True}, U),
    # An identifier used as a condition must be a boolean; anything else is unknown.
    ("flag", {"flag": True}, T),
    ("flag", {"flag": False}, F),
    ("flag", {"flag": "true"}, U),
    ("NOT flag", {"flag": 1}, U),
    ("flag AND TRUE", {"flag": 1}, U),
    # IN and LIKE on a value that is not a string: false (a non-like comparison), and so
    # NOT IN / NOT LIKE are true, as the spec's expansions into = give.
    ("x IN ('1', '2')", {"x": 1}, F),
    ("x NOT IN ('1', '2')", {"x": 1}, T),
    ("x LIKE '1%'", {"x": 12}, F),
    ("x NOT LIKE '1%'", {"x": 12}, T),
    # BETWEEN on strings: both comparisons are false, for BETWEEN and NOT BETWEEN alike.
    ("s BETWEEN 1 AND 3", {"s": "2"}, F),
    ("s NOT BETWEEN 1 AND 3", {"s": "2"}, F),
]


@pytest.mark.parametrize(("text", "values", "expected"), TYPE_CASES)
def test_type_rules(text: str, values: dict[str, Any], expected: bool | None) -> None:
    check(text, values, expected)


# -- operators ----------------------------------------------------------------------------

ARITHMETIC_CASES = [
    # Unary signs, then * and /, then + and -; left to right within a level.
    ("2 + 3 * 4 = 14", {}, T),
    ("(2 + 3) * 4 = 20", {}, T),
    ("10 - 4 - 3 = 3", {}, T),
    ("10 - (4 - 3) = 9", {}, T),
    ("12 / 3 / 2 = 2", {}, T),
    ("2 * 3 + 4 * 5 = 26", {}, T),
    ("-3 * 2 = -6", {}, T),
    ("2 * -3 = -6", {}, T),
    ("- -3 = 3", {}, T),
    ("+x = 4 AND -x = -4 AND - - x = 4", {"x": 4}, T),
    ("x * 2 + y = 11", {"x": 4, "y": 3}, T),
    ("x + y * 2 = 10", {"x": 4, "y": 3}, T),
    ("x - y - 1 = 0", {"x": 4, "y": 3}, T),
    # Java's numeric promotion: long / long rounds toward zero; a double makes a double.
    ("7 / 2 = 3", {}, T),
    ("-7 / 2 = -3", {}, T),
    ("7 / -2 = -3", {}, T),
    ("7 / 2.0 = 3.5", {}, T),
    ("x / 2 = 2.5", {"x": 5.0}, T),
    ("x * 2 = 5", {"x": 2.5}, T),
    # Longs wrap around as in Java.
    ("9223372036854775807 + 1 = -9223372036854775808", {}, T),
    ("x * 2 = -2", {"x": 2**63 - 1}, T),
    ("-x = x", {"x": -(2**63)}, T),
    # Division by zero is unknown.
    ("x / 0 = 1", {"x": 1}, U),
    ("x / 0 IS NULL", {"x": 1}, T),
    ("x / 0.0 > 0", {"x": 1.5}, U),
    ("NOT x / y = 0", {"x": 1, "y": 0}, U),
    ("1 / 0 = 1 OR TRUE", {}, T),
]


@pytest.mark.parametrize(("text", "values", "expected"), ARITHMETIC_CASES)
def test_arithmetic(text: str, values: dict[str, Any], expected: bool | None) -> None:
    check(text, values, expected)


COMPARISON_CASES = [
    ("x = 3", {"x": 3}, T),
    ("x <> 3", {"x": 3}, F),
    ("x < 3", {"x": 3}, F),
    ("x <= 3", {"x": 3}, T),
    ("x > 3", {"x": 3}, F),
    ("x >= 3", {"x": 3}, T),
    ("3 < x", {"x": 4}, T),
    ("x = y", {"x": 1, "y": 1.0}, T),
    ("s = 'abc'", {"s": "abc"}, T),
    ("s = 'ABC'", {"s": "abc"}, F),  # strings are equal only with the same characters
    ("s <> 'ABC'", {"s": "abc"}, T),
    # Logical precedence: NOT, then AND, then OR; comparisons bind tighter than all three.
    ("a OR b AND c", {"a": T, "b": F, "c": F}, T),
    ("(a OR b) AND c", {"a": T, "b": F, "c": F}, F),
    ("NOT a AND b", {"a": F, "b": T}, T),
    ("NOT (a AND b)", {"a": T, "b": F}, T),
    ("NOT a OR b", {"a": T, "b": F}, F),
    ("NOT x = 1", {"x": 2}, T),
    ("NOT NOT a", {"a": T}, T),
    ("x = 1 OR x = 2 AND y = 3", {"x": 1, "y": 0}, T),
    ("(x = 1 OR x = 2) AND y = 3", {"x": 1, "y": 0}, F),
    ("(x = 1) = (y = 2)", {"x": 1, "y": 2}, T),
    ("(x = 1) <> FALSE", {"x": 1}, T),
]


@pytest.mark.parametrize(("text", "values", "expected"), COMPARISON_CASES)
def test_comparisons_and_logic(text: str, values: dict[str, Any], expected: bool | None) -> None:
    check(text, values, expected)


BETWEEN_CASES = [
    # "age BETWEEN 15 AND 19" is "age >= 15 AND age <= 19": both ends included.
    ("age BETWEEN 15 AND 19", {"age": 15}, T),
    ("age BETWEEN 15 AND 19", {"age": 19}, T),
    ("age BETWEEN 15 AND 19", {"age": 17.5}, T),
    ("age BETWEEN 15 AND 19", {"age": 14}, F),
    ("age BETWEEN 15 AND 19", {"age": 19.01}, F),
    ("age BETWEEN 19 AND 15", {"age": 17}, F),
    # "age NOT BETWEEN 15 AND 19" is "age < 15 OR age > 19".
    ("age NOT BETWEEN 15 AND 19", {"age": 15}, F),
    ("age NOT BETWEEN 15 AND 19", {"age": 14}, T),
    ("age NOT BETWEEN 15 AND 19", {"age": 20}, T),
    ("age BETWEEN low AND high", {"age": 5, "low": 1, "high": 9.5}, T),
    ("age + 1 BETWEEN 2 * 3 AND 10 - 3", {"age": 6}, T),
    # The AND inside BETWEEN belongs to it; the next one is logical.
    ("age BETWEEN 1 AND 3 AND flag", {"age": 2, "flag": True}, T),
    ("age BETWEEN 1 AND 3 AND flag", {"age": 2, "flag": False}, F),
    ("age between 1 and 3 or flag", {"age": 9, "flag": True}, T),
]


@pytest.mark.parametrize(("text", "values", "expected"), BETWEEN_CASES)
def test_between(text: str, values: dict[str, Any], expected: bool | None) -> None:
    check(text, values, expected)


IN_CASES = [
    ("Country IN ('UK', 'US', 'France')", {"Country": "UK"}, T),
    ("Country IN ('UK', 'US', 'France')", {"Country": "Peru"}, F),
    ("Country NOT IN ('UK', 'US', 'France')", {"Country": "UK"}, F),
    ("Country NOT IN ('UK', 'US', 'France')", {"Country": "Peru"}, T),
    ("Country IN ('UK')", {"Country": "uk"}, F),
    ("Country IN ('it''s')", {"Country": "it's"}, T),
    ("Country IN ('')", {"Country": ""}, T),
    ("Country IN ('UK', 'UK')", {"Country": "UK"}, T),
    ("Country IN ('UK')", {"Country": symbol("UK")}, T),
]


@pytest.mark.parametrize(("text", "values", "expected"), IN_CASES)
def test_in(text: str, values: dict[str, Any], expected: bool | None) -> None:
    check(text, values, expected)


LIKE_CASES = [
    # '_' is any one character, '%' any sequence (also empty), the rest themselves.
    ("phone LIKE '12%3'", "123", T),
    ("phone LIKE '12%3'", "12993", T),
    ("phone LIKE '12%3'", "1234", F),
    ("phone NOT LIKE '12%3'", "123", F),
    ("phone NOT LIKE '12%3'", "1234", T),
    ("word LIKE 'l_se'", "lose", T),
    ("word LIKE 'l_se'", "loose", F),
    ("word LIKE 'l_se'", "lse", F),
    ("word LIKE ''", "", T),
    ("word LIKE ''", "a", F),
    ("word LIKE '%'", "", T),
    ("word LIKE '%'", "anything", T),
    ("word LIKE '%%'", "x", T),
    ("word LIKE '_'", "", F),
    ("word LIKE '_%_'", "a", F),
    ("word LIKE '_%_'", "ab", T),
    ("word LIKE 'abc'", "abc", T),
    ("word LIKE 'abc'", "ABC", F),
    ("word LIKE 'a%'", "abc", T),
    ("word LIKE '%c'", "abc", T),
    ("word LIKE '%b%'", "abc", T),
    ("word LIKE '%x%'", "abc", F),
    ("word LIKE 'a%b%c'", "aXbYc", T),
    ("word LIKE 'a%b%c'", "acb", F),
    ("word LIKE 'ab%bc'", "abc", F),  # the two ends may not overlap
    ("word LIKE 'ab%bc'", "abbc", T),
    ("word LIKE '%a_c%'", "xxabcxx", T),
    ("word LIKE '%a_c%'", "xxabbcxx", F),
    ("word LIKE '%a_c%a_c'", "abcxadc", T),
    ("word LIKE 'a__%__z'", "abcyz", F),
    ("word LIKE 'a__%__z'", "abcdyz", T),
    # '_' and '%' match line breaks; regex characters are plain characters.
    ("word LIKE 'a_b'", "a\nb", T),
    ("word LIKE 'a%b'", "a\n\nb", T),
    ("word LIKE 'a.c'", "abc", F),
    ("word LIKE 'a.c'", "a.c", T),
    ("word LIKE '[a]*(b)+?$'", "[a]*(b)+?$", T),
    ("word LIKE '\\d'", "\\d", T),
    ("word LIKE 'it''s%'", "it's here", T),
    # ESCAPE takes away the special meaning of '_' and '%'.
    ("underscored LIKE '\\_%' ESCAPE '\\'", "_foo", T),
    ("underscored LIKE '\\_%' ESCAPE '\\'", "bar", F),
    ("underscored LIKE '\\_%' ESCAPE '\\'", "x_foo", F),
    ("word LIKE '100!%' ESCAPE '!'", "100%", T),
    ("word LIKE '100!%' ESCAPE '!'", "1000", F),
    ("word LIKE '%!%%' ESCAPE '!'", "a%b", T),
    ("word LIKE '%!%%' ESCAPE '!'", "ab", F),
    ("word LIKE 'a!_b' ESCAPE '!'", "a_b", T),
    ("word LIKE 'a!_b' ESCAPE '!'", "axb", F),
    ("word LIKE 'a!!b' ESCAPE '!'", "a!b", T),  # the escape escapes itself
    ("word LIKE 'a!b' ESCAPE '!'", "ab", T),  # and any other character is just itself
    ("word LIKE 'a\\b'", "a\\b", T),  # no ESCAPE clause: a backslash is a character
    ("word LIKE '%''%' ESCAPE ''''", "it's", F),  # the quote escapes the '%' after it
    ("word LIKE '%''%' ESCAPE ''''", "%", T),
    ("word NOT LIKE '!%%' ESCAPE '!'", "%off", F),
    ("word not like 'a%' escape 'x'", "abc", F),
]


@pytest.mark.parametrize(("text", "value", "expected"), LIKE_CASES)
def test_like(text: str, value: str, expected: bool | None) -> None:
    identifier = text.split()[0]
    check(text, {identifier: value}, expected)


def test_like_takes_linear_time_on_patterns_that_make_regexes_backtrack() -> None:
    selector = Selector.parse("word LIKE '" + "%a" * 30 + "%b'")
    started = time.perf_counter()
    assert not selector.matches({"word": "a" * 100_000}.get)
    assert selector.matches({"word": "a" * 100_000 + "b"}.get)
    assert time.perf_counter() - started < 1.0


# -- lexical forms ------------------------------------------------------------------------

KEYWORD_CASES = [
    "x BETWEEN 1 AND 3 AND s IN ('a') AND s LIKE 'a' ESCAPE '!' AND m IS NULL AND NOT FALSE",
    "x between 1 and 3 and s in ('a') and s like 'a' escape '!' and m is null and not false",
    "x BeTwEeN 1 aNd 3 AnD s In ('a') aND s LiKe 'a' EsCaPe '!' AND m iS nUlL AND nOt FaLsE",
    "x BETWEEN 1 AND 3 AND s IN('a')AND(s LIKE'a'ESCAPE'!')AND m IS NULL AND NOT FALSE",
    "x\tBETWEEN\n1\rAND\f3 AND s IN ( 'a' ) AND s LIKE 'a' ESCAPE '!' AND m IS NULL AND NOT FALSE",
]


@pytest.mark.parametrize("text", KEYWORD_CASES)
def test_keywords_are_case_insensitive_and_whitespace_is_javas(text: str) -> None:
    check(text, {"x": 2, "s": "a"}, T)


def test_identifiers_are_case_sensitive() -> None:
    check("colour = 'green'", {"colour": "green"}, T)
    check("Colour = 'green'", {"colour": "green"}, U)
    check("COLOUR IS NULL", {"colour": "green"}, T)


IDENTIFIER_CASES = [
    ("_private = 1", "_private"),
    ("$dollar = 1", "$dollar"),
    ("a1_b$2 = 1", "a1_b$2"),
    ("café = 1", "café"),
    ("Größe = 1", "Größe"),
    ("nulls = 1", "nulls"),  # keywords only as whole words
    ("INside = 1", "INside"),
    ("notable = 1", "notable"),
    ("ANDROID = 1", "ANDROID"),
    ("trueish = 1", "trueish"),
]


@pytest.mark.parametrize(("text", "name"), IDENTIFIER_CASES)
def test_identifiers(text: str, name: str) -> None:
    check(text, {name: 1}, T)


STRING_CASES = [
    ("s = 'literal'", "literal"),
    ("s = 'literal''s'", "literal's"),
    ("s = ''''", "'"),
    ("s = ''", ""),
    ("s = ''''''", "''"),
    ("s = 'a''''b'", "a''b"),
    ("s = 'with \"double\" quotes'", 'with "double" quotes'),
    ("s = 'AND OR NOT'", "AND OR NOT"),
    ("s = 'tab\there'", "tab\there"),
    ("s = 'naïve ✓'", "naïve ✓"),
    ("s = '%_'", "%_"),
]


@pytest.mark.parametrize(("text", "value"), STRING_CASES)
def test_string_literals(text: str, value: str) -> None:
    check(text, {"s": value}, T)


NUMBER_CASES = [
    # Exact numeric literals: Java's integer literal syntax, in the range of a long.
    ("57", 57),
    ("-957", -957),
    ("+62", 62),
    ("57L", 57),
    ("57l", 57),
    ("0", 0),
    ("0x1F", 31),
    ("0XffL", 255),
    ("017", 15),
    ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775808", -(2**63)),
    ("0x7FFFFFFFFFFFFFFF", 2**63 - 1),
    ("0xFFFFFFFFFFFFFFFF", -1),  # all 64 bits, as in Java
    ("01777777777777777777777", -1),
    # Approximate numeric literals: Java's floating-point literal syntax.
    ("7E3", 7000.0),
    ("-57.9E2", -5790.0),
    ("7.", 7.0),
    ("-95.7", -95.7),
    ("+6.2", 6.2),
    (".5", 0.5),
    ("1.5", 1.5),
    ("1e3", 1000.0),
    ("1.5E-2", 0.015),
    ("1.5e+2", 150.0),
    ("2.5f", 2.5),
    ("2.5D", 2.5),
    ("1d", 1.0),
    ("3F", 3.0),
    ("1.e2", 100.0),
    ("1.7976931348623157E308", 1.7976931348623157e308),
    ("4.9E-324", 4.9e-324),
]


@pytest.mark.parametrize(("literal", "value"), NUMBER_CASES)
def test_numeric_literals(literal: str, value: float) -> None:
    check(f"x = {literal}", {"x": value}, T)
    check(f"{literal} = x", {"x": value}, T)
    check(f"x <> {literal}", {"x": value}, F)


def test_exact_and_approximate_literals_keep_their_kinds() -> None:
    check("7 / 2 = 3", {}, T)
    check("7. / 2 = 3.5", {}, T)
    check("7E0 / 2 = 3.5", {}, T)
    check("7L / 2 = 3", {}, T)


def test_boolean_literals() -> None:
    for text, expected in [("TRUE", T), ("FALSE", F), ("true", T), ("False", F)]:
        check(text, {}, expected)
        check(f"flag = {text}", {"flag": expected}, T)


def test_empty_selector_matches_everything() -> None:
    for text in ["", "   ", "\t\n"]:
        selector = Selector.parse(text)
        assert selector.matches(lambda name: None)
        assert selector.evaluate(lambda name: None) is True
        assert str(selector) == text


def test_str_is_the_source_text() -> None:
    text = "JMSType = 'car' AND color = 'blue' AND weight > 2500"
    selector = Selector.parse(text)
    assert str(selector) == text
    assert selector.text == text
    assert repr(selector) == f"Selector({text!r})"
    assert Selector(text).text == text


def test_constant_selectors_need_no_lookup() -> None:
    def no_lookup(name: str) -> Any:
        raise AssertionError(name)

    assert Selector.parse("1 + 1 = 2 AND 'a' <> 'b' AND NOT 1 > 2").matches(no_lookup)
    assert Selector.parse("1 / 0 = 0").evaluate(no_lookup) is None


def test_evaluation_never_raises_on_odd_values() -> None:
    selector = Selector.parse(
        "x = 1 OR x > 1 OR x + 1 = 2 OR -x = 1 OR x / 2 = 1 OR x BETWEEN 1 AND 2 "
        "OR x IN ('a') OR x LIKE 'a%' OR x IS NULL OR x = 1.5 * x OR x"
    )
    odd: list[Any] = [
        b"bytes", uuid.uuid4(), [1, 2], {"a": 1}, object(), float("nan"), float("inf"),
        10**400, -(10**400), decimal64(5), "", True, 0.0,
    ]  # fmt: skip
    for value in odd:
        selector.evaluate({"x": value}.get)


# -- errors -------------------------------------------------------------------------------

ERROR_CASES = [
    # (selector, position, part of the message)
    ("a ==1", 3, "expected an expression, found '='"),
    ("(a = 1", 6, "expected ')', found the end of the selector"),
    ("a = 1)", 5, "expected an operator or the end of the selector, found ')'"),
    ("a = 1 b = 2", 6, "found 'b'"),
    ("a = ", 4, "expected an expression, found the end of the selector"),
    ("a AND", 5, "expected an expression"),
    ("AND a", 0, "expected an expression, found 'AND'"),
    ("a != 1", 2, "not equal is <>"),
    ('s = "x"', 4, "single quotes"),
    ("s = 'abc", 4, "unterminated string literal"),
    ("s = 'it''s", 4, "unterminated string literal"),
    ("a = 1 # x", 6, "unexpected character '#'"),
    ("a = 1abc", 4, "malformed number '1a'"),
    ("a = 1.2.3", 4, "malformed number"),
    ("a = 0x", 4, "malformed number"),
    ("a = 09", 4, "malformed octal literal"),
    ("a = 9223372036854775808", 4, "out of the range of a 64-bit long"),
    ("a = 99999999999999999999999999", 4, "out of the range of a 64-bit long"),
    ("a = 0x10000000000000000", 4, "out of the range of a 64-bit long"),
    ("a = 1e999", 4, "out of the range of a double"),
    ("a = NULL", 4, "IS [NOT] NULL"),
    ("a IS 1", 5, "expected NULL, found '1'"),
    ("a IS NOT", 8, "expected NULL"),
    ("a NOT = 1", 6, "expected BETWEEN, IN or LIKE after NOT"),
    ("a BETWEEN 1", 11, "expected AND"),
    ("a BETWEEN 1 OR 2", 12, "expected AND, found 'OR'"),
    ("a IN 'x'", 5, "expected '('"),
    ("a IN ()", 6, "expected a string literal"),
    ("a IN (1, 2)", 6, "IN lists hold only strings"),
    ("a IN ('x' 'y')", 10, "expected ',' or ')'"),
    ("a IN ('x',)", 10, "expected a string literal"),
    ("a LIKE b", 7, "expected a string literal pattern"),
    ("a LIKE 'x' ESCAPE ''", 18, "one character"),
    ("a LIKE 'x' ESCAPE '!!'", 18, "one character"),
    ("a LIKE 'x!' ESCAPE '!'", 7, "ends with its escape character"),
    ("a = 1 = 2", 6, "found '='"),
    # Types that literals make plain.
    ("'a' + 1 = 2", 0, "'+' needs numbers, found a string"),
    ("1 + TRUE = 2", 4, "'+' needs numbers, found a condition"),
    ("-'a' = 1", 1, "unary '-' needs numbers, found a string"),
    ("s < 'b'", 4, "'<' needs numbers, found a string"),
    ("TRUE > FALSE", 0, "'>' needs numbers, found a condition"),
    ("'a' = 1", 4, "cannot compare a string with a number"),
    ("x = 1 = TRUE", 6, "found '='"),
    ("(x = 1) = 1", 8, "cannot compare a condition with a number"),
    ("5", 0, "expected a condition, found a number"),
    ("'yes'", 0, "expected a condition, found a string"),
    ("5 AND TRUE", 0, "expected a condition, found a number"),
    ("TRUE OR x + 1", 8, "expected a condition, found a number"),
    ("NOT 'a'", 4, "expected a condition, found a string"),
    ("1 BETWEEN 'a' AND 2", 10, "BETWEEN needs numbers, found a string"),
    ("5 IN ('5')", 0, "IN needs a string, found a number"),
    ("5 LIKE '5'", 0, "LIKE needs a string, found a number"),
    # Keywords are not identifiers.
    ("NULL IS NULL", 0, "found 'NULL'"),
    ("escape = 1", 0, "found 'escape'"),
    ("Between = 1", 0, "found 'Between'"),
    ("x + in = 1", 4, "found 'in'"),
]


@pytest.mark.parametrize(("text", "position", "message"), ERROR_CASES)
def test_parse_errors_say_where(text: str, position: int, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        Selector.parse(text)
    error = caught.value
    assert error.position == position, str(error)
    assert message in error.message
    assert str(error).startswith(f"at position {position}: ")
    assert isinstance(error, ValueError)


# -- limits -------------------------------------------------------------------------------


def test_longest_selector_is_accepted_and_one_more_character_is_not() -> None:
    clause = "x = 1 OR "
    text = clause * ((MAX_SELECTOR_LENGTH - 5) // len(clause)) + "x = 1"
    text += " " * (MAX_SELECTOR_LENGTH - len(text))
    assert len(text) == MAX_SELECTOR_LENGTH
    assert Selector.parse(text).matches({"x": 1}.get)
    with pytest.raises(SelectorError) as caught:
        Selector.parse(text + " ")
    assert caught.value.position == MAX_SELECTOR_LENGTH
    assert "longer than" in caught.value.message


def test_huge_selectors_fail_quickly() -> None:
    started = time.perf_counter()
    for text in ["(" * 10**6, "a = '" + "x" * 10**6 + "'", "NOT " * 10**6 + "a"]:
        with pytest.raises(SelectorError):
            Selector.parse(text)
    assert time.perf_counter() - started < 1.0


DEPTH = MAX_NESTING_DEPTH
DEEP_CASES = [
    ("(" * DEPTH + "a = 1" + ")" * DEPTH, {"a": 1}, T),
    ("NOT " * DEPTH + "a", {"a": True}, T if DEPTH % 2 == 0 else F),
    ("x = " + "-" * DEPTH + "1", {"x": 1 if DEPTH % 2 == 0 else -1}, T),
    ("x = " + "-(" * (DEPTH // 2) + "1" + ")" * (DEPTH // 2), {"x": (-1) ** (DEPTH // 2)}, T),
    ("(" * DEPTH + "a = 1 OR b" + ")" * DEPTH + " AND c", {"a": 1, "c": True}, T),
    ("".join(f"(x{i} = {i} AND " for i in range(DEPTH)) + "TRUE" + ")" * DEPTH,
     {f"x{i}": i for i in range(DEPTH)}, T),
    ("".join(f"((x{i} = {i}) = " for i in range(DEPTH // 2)) + "TRUE" + ")" * (DEPTH // 2),
     {f"x{i}": i for i in range(DEPTH)}, T),
    ("(" * (DEPTH - 1) + "x + (1" + ")" * DEPTH + " = 2", {"x": 1}, T),
]  # fmt: skip


@pytest.mark.parametrize(("text", "values", "expected"), DEEP_CASES, ids=range(len(DEEP_CASES)))
def test_deepest_nesting_parses_and_evaluates_in_under_300_frames(
    text: str, values: dict[str, Any], expected: bool | None
) -> None:
    # So a caller already 700 frames deep still gets an answer, not a RecursionError.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 300)
    try:
        check(text, values, expected)
    finally:
        sys.setrecursionlimit(limit)


DEEPER_CASES = [
    "(" * (DEPTH + 1) + "a = 1" + ")" * (DEPTH + 1),
    "NOT " * (DEPTH + 1) + "a",
    "x = " + "-" * (DEPTH + 1) + "1",
    "x = " + "+" * (DEPTH + 1) + "1",
    "".join(f"(x{i} = {i} AND " for i in range(DEPTH + 1)) + "TRUE" + ")" * (DEPTH + 1),
    "(" * 4000 + "a" + ")" * 4000,
    "NOT " * 2000 + "a",
    "x = " + "-" * 8000 + "1",
]


@pytest.mark.parametrize("text", DEEPER_CASES, ids=range(len(DEEPER_CASES)))
def test_deeper_nesting_is_a_selector_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(SelectorError) as caught:
        Selector.parse(text)
    assert f"nested deeper than {MAX_NESTING_DEPTH} levels" in caught.value.message


def test_long_flat_chains_evaluate_without_deep_recursion() -> None:
    terms = MAX_SELECTOR_LENGTH // 12
    sums = Selector.parse("x = " + " + ".join(["1"] * (MAX_SELECTOR_LENGTH // 5)))
    assert sums.evaluate({"x": MAX_SELECTOR_LENGTH // 5}.get) is True
    chain = Selector.parse(" OR ".join(f"x = {i}" for i in range(terms)))
    assert chain.matches({"x": terms - 1}.get)
    products = Selector.parse("x * " + " * ".join(["x"] * (MAX_SELECTOR_LENGTH // 5)) + " > 0")
    assert products.evaluate({"x": 3}.get) is not None  # wraps as a long, never raises


# -- message_lookup -----------------------------------------------------------------------


def test_application_properties() -> None:
    message = Message(properties={"colour": "green", "weight": 2600, "fragile": True})
    assert Selector.parse("colour = 'green'").matches(message)
    assert not Selector.parse("colour = 'red'").matches(message)
    assert Selector.parse("weight > 2500 AND fragile").matches(message)
    assert Selector.parse("size IS NULL").matches(message)
    assert not Selector.parse("colour = 'green'").matches(Message())
    assert Selector.parse("colour IS NULL").matches(Message())
    lookup = message_lookup(message)
    assert Selector.parse("colour = 'green'").matches(lookup)
    assert lookup("colour") == "green"
    assert lookup("nothing") is None


HEADER_CASES: list[tuple[str, dict[str, Any], bool | None]] = [
    ("JMSPriority > 4", {"priority": 7}, T),
    ("JMSPriority > 4", {}, F),  # the default priority is 4, never NULL
    ("JMSPriority = 4", {}, T),
    ("JMSDeliveryMode = 'PERSISTENT'", {"durable": True}, T),
    ("JMSDeliveryMode = 'NON_PERSISTENT'", {}, T),
    ("JMSMessageID = 'ID:42'", {"id": "ID:42"}, T),
    ("JMSMessageID = 42", {"id": 42}, T),
    ("JMSMessageID = '00000000-0000-0000-0000-000000000001'", {"id": uuid.UUID(int=1)}, T),
    ("JMSMessageID IS NOT NULL", {"id": b"\x01"}, T),
    ("JMSMessageID = '\x01'", {"id": b"\x01"}, F),
    ("JMSMessageID IS NULL", {}, T),
    ("JMSCorrelationID = 'abc'", {"correlation_id": "abc"}, T),
    ("JMSCorrelationID IS NULL", {}, T),
    ("JMSType = 'car'", {"subject": "car"}, T),
    ("JMSType IS NULL", {}, T),
    ("JMSTimestamp = 1700000000123", {"creation_time": 1700000000.123}, T),
    ("JMSTimestamp = 0", {}, T),
    ("JMSExpiration = 1700000060000", {"expiry_time": 1700000060.0}, T),
    ("JMSExpiration = 0", {}, T),
    ("JMSRedelivered", {"delivery_count": 1}, T),
    ("JMSRedelivered = FALSE", {}, T),
    ("JMSXDeliveryCount = 1", {}, T),
    ("JMSXDeliveryCount = 3", {"delivery_count": 2}, T),
    ("JMSXGroupID = 'g'", {"group_id": "g"}, T),
    ("JMSXGroupSeq = 5", {"group_sequence": 5}, T),
    ("JMSXUserID = 'alice'", {"user_id": b"alice"}, T),
    ("JMSXUserID IS NULL", {}, T),
    # Header names mean the header, even when a property has the same name.
    ("JMSType = 'car'", {"subject": "car", "properties": {"JMSType": "bike"}}, T),
    ("JMSPriority = 9", {"properties": {"JMSPriority": 9}}, F),
]


@pytest.mark.parametrize(("text", "fields", "expected"), HEADER_CASES)
def test_jms_header_names(text: str, fields: dict[str, Any], expected: bool | None) -> None:
    selector = Selector.parse(text)
    assert selector.evaluate(Message(**fields)) is expected
    assert selector.matches(message_lookup(Message(**fields))) is (expected is True)


def test_the_specs_example_on_a_message() -> None:
    selector = Selector.parse("JMSType = 'car' AND color = 'blue' AND weight > 2500")
    car = Message(subject="car", properties={"color": "blue", "weight": 3000})
    assert selector.matches(car)
    assert not selector.matches(Message(subject="car", properties={"color": "blue"}))
    assert not selector.matches(
        Message(subject="van", properties={"color": "blue", "weight": 3000})
    )


# -- cross-check against the spec's own examples ------------------------------------------

# Each row is derived by hand from a sentence of JMS 1.1 / Jakarta Messaging section
# 3.8.1.1 (quoted or paraphrased in the comment), not from running the code.
SPEC_TABLE: list[tuple[str, dict[str, Any], bool | None]] = [
    # "JMSType = 'car' AND color = 'blue' AND weight > 2500"
    ("JMSType = 'car' AND color = 'blue' AND weight > 2500",
     {"JMSType": "car", "color": "blue", "weight": 2501}, T),
    ("JMSType = 'car' AND color = 'blue' AND weight > 2500",
     {"JMSType": "car", "color": "blue", "weight": 2500}, F),
    # "age BETWEEN 15 AND 19" is "age >= 15 AND age <= 19"
    ("age BETWEEN 15 AND 19", {"age": 19}, T),
    # "age NOT BETWEEN 15 AND 19" is "age < 15 OR age > 19"
    ("age NOT BETWEEN 15 AND 19", {"age": 19}, F),
    # "Country IN ('UK', 'US', 'France')" is true for 'UK' and false for 'Peru'
    ("Country IN ('UK', 'US', 'France')", {"Country": "Peru"}, F),
    # "Country NOT IN (...)" is false for 'UK' and true for 'Peru'
    ("Country NOT IN ('UK', 'US', 'France')", {"Country": "Peru"}, T),
    # "phone LIKE '12%3'" is true for '123' or '12993' and false for '1234'
    ("phone LIKE '12%3'", {"phone": "12993"}, T),
    # "word LIKE 'l_se'" is true for 'lose' and false for 'loose'
    ("word LIKE 'l_se'", {"word": "loose"}, F),
    # "underscored LIKE '\_%' ESCAPE '\'" is true for '_foo' and false for 'bar'
    ("underscored LIKE '\\_%' ESCAPE '\\'", {"underscored": "_foo"}, T),
    # "phone NOT LIKE '12%3'" is false for '123' or '12993' and true for '1234'
    ("phone NOT LIKE '12%3'", {"phone": "1234"}, T),
    # "If identifier of an IN or NOT IN operation is NULL, the value is unknown"
    ("Country NOT IN ('UK')", {}, U),
    # NumberOfOrders set as the string "2": "NumberOfOrders > 1" "would evaluate to false"
    ("NumberOfOrders > 1", {"NumberOfOrders": "2"}, F),
    # "prop_name IS NULL" tests for a missing property
    ("prop_name IS NULL", {}, T),
    # AND table: F AND U is F; OR table: T OR U is T; NOT table: NOT U is U
    ("f AND missing = 1", {"f": False}, F),
    ("t OR missing = 1", {"t": True}, T),
    ("NOT missing = 1", {}, U),
    # "a selector that evaluates to false or unknown does not match"
    ("missing = 1 OR FALSE", {}, U),
]  # fmt: skip


@pytest.mark.parametrize(("text", "values", "expected"), SPEC_TABLE)
def test_examples_from_the_spec(text: str, values: dict[str, Any], expected: bool | None) -> None:
    check(text, values, expected)
