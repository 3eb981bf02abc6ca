"""Hostile HTTP input against the real app: no header value, charset, content type, query
parameter, path or envelope gives a 5xx, and every 4xx is an RFC 9457 problem.

The app runs in this process (its lifespan started, with its embedded broker on a free
port) and is driven through httpx's ASGI transport, so that hypothesis can try thousands
of requests quickly and an exception inside the app fails the test with its traceback.
Values a real HTTP server would never pass (CR, LF) are left out; everything else an ASGI
server may hand over, NUL and obs-text included, is fair game.
"""

from __future__ import annotations

import asyncio
import encodings
import encodings.aliases
import json
import pkgutil
from collections.abc import Callable, Coroutine, Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from processes import free_port

from gateway.app import create_app
from gateway.mapping import ENVELOPE_FIELDS, ENVELOPE_TYPE, HEADER_FIELDS
from gateway.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The longest long-poll or request wait the app allows here, in seconds.
MAX_WAIT = 0.2

Request = Callable[[httpx.AsyncClient], Coroutine[Any, Any, httpx.Response]]
Call = Callable[[Request], httpx.Response]


@pytest.fixture(scope="module")
def call() -> Iterator[Call]:
    """Run one request against the app: `call(lambda client: client.post(...))`."""
    # Short bounds, so that a valid wait is short too.
    settings_ = Settings(
        amqp_listen=f"127.0.0.1:{free_port()}",
        max_poll_timeout=MAX_WAIT,
        request_timeout=0.05,
        max_request_timeout=MAX_WAIT,
    )
    app = create_app(settings_)
    with asyncio.Runner() as runner:
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=10
        )
        try:
            yield lambda request: runner.run(request(client))
        finally:
            runner.run(client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))


def assert_answered(answer: httpx.Response) -> None:
    """Not a 5xx; a 4xx is a problem whose status is the answer's."""
    assert answer.status_code < 500, f"{answer.status_code} {answer.text}"
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/problem+json"), answer
        problem = answer.json()
        assert problem["status"] == answer.status_code, problem
        assert problem["title"] and problem["detail"], problem


def _without_line_breaks(raw: bytes) -> bytes:
    return raw.replace(b"\r", b"").replace(b"\n", b"")


#: Header values: any bytes a server passes, digit strings beyond Python's 4,300-digit
#: int conversion limit, percent escapes, numbers and dates in odd forms.
header_values = st.one_of(
    st.binary(max_size=40).map(_without_line_breaks),
    st.text("0123456789", min_size=1, max_size=30).map(str.encode),
    st.builds(
        lambda count, digit, last: (digit * count + last).encode(),
        st.integers(min_value=4000, max_value=6000),
        st.sampled_from("0123456789"),
        st.sampled_from(["", "7"]),
    ),
    st.text("%0123456789abcdefABCDEFxyz -.:+eE", max_size=30).map(str.encode),
    st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=30).map(
        lambda text: text.encode("latin-1")
    ),
    st.datetimes().map(lambda moment: moment.isoformat().encode()),
    st.floats().map(lambda number: repr(number).encode()),
    st.sampled_from([b"true", b"false", b"-1", b"1e999", b"nan", b"inf", b"\xb2", b"\xff"]),
)
header_names = st.one_of(
    st.sampled_from(
        [*HEADER_FIELDS, "amqp-to", "amqp-address", "amqp-content-type", "amqp-bogus", "amqp-"]
    ),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-%_.~!", max_size=12).map(
        lambda name: f"amqp-app-{name}"
    ),
)

#: Every codec name Python knows (text and binary ones), and made-up names.
CODEC_NAMES = sorted(
    set(encodings.aliases.aliases)
    | set(encodings.aliases.aliases.values())
    | {module.name for module in pkgutil.iter_modules(encodings.__path__)}
)
charsets = st.one_of(
    st.sampled_from(CODEC_NAMES),
    st.text(max_size=12).map(lambda text: text.replace("\r", "").replace("\n", "")),
)
content_types = st.one_of(
    charsets.map(lambda charset: f"text/plain; charset={charset}".encode()),
    st.sampled_from(
        ["application/json", "text/plain", ENVELOPE_TYPE, "application/x; a=b", "a/b+json"]
    ).map(str.encode),
    st.binary(max_size=40).map(_without_line_breaks),
)
HOSTILE_TEXT = [b"xn--zz", b"a..b", b"xn--", b"\\N{", b"\\x4", b"+AAA", b"\xff\xfe\x00", b"-"]
bodies = st.one_of(st.binary(max_size=40), st.sampled_from([*HOSTILE_TEXT, b"{}", b"[]", b"1"]))


@SETTINGS
@given(st.lists(st.tuples(header_names, header_values), min_size=1, max_size=3), bodies)
def test_no_header_value_gives_a_5xx(
    call: Call, headers: list[tuple[str, bytes]], body: bytes
) -> None:
    sent = [(name.encode(), value) for name, value in headers]
    sent.append((b"content-type", b"text/plain"))
    answer = call(lambda client: client.post("/messages/fuzz", content=body, headers=sent))
    assert_answered(answer)


@SETTINGS
@given(
    st.sampled_from(
        ["content-length", "idempotency-key", "request-timeout", "accept", "host", "origin"]
        + ["sec-fetch-site", "x-api-key", "authorization"]
    ),
    header_values,
)
def test_no_other_header_value_gives_a_5xx(call: Call, name: str, value: bytes) -> None:
    headers = [(name.encode(), value), (b"content-type", b"text/plain")]
    answer = call(lambda client: client.post("/messages/fuzz", content=b"x", headers=headers))
    assert_answered(answer)


def test_a_content_length_of_5000_digits_is_413(call: Call) -> None:
    headers = [(b"content-length", b"1" * 5000)]
    answer = call(lambda client: client.post("/messages/fuzz", content=b"", headers=headers))
    assert_answered(answer)
    assert answer.status_code == 413


@SETTINGS
@given(content_types, bodies)
def test_no_content_type_gives_a_5xx(call: Call, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type)]
    answer = call(lambda client: client.post("/messages/fuzz", content=body, headers=headers))
    assert_answered(answer)


def test_no_charset_python_knows_gives_a_5xx(call: Call) -> None:
    """Every codec name, text or not, with bodies that trip the odd ones (idna and
    punycode raise plain UnicodeError, unicode_escape its own)."""
    for charset in CODEC_NAMES:
        headers = {"content-type": f"text/plain; charset={charset}"}
        for body in HOSTILE_TEXT:
            answer = call(
                lambda client: client.post("/messages/fuzz", content=body, headers=headers)  # noqa: B023
            )
            assert_answered(answer)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("content-type", "text/plain; charset=idna"),
        ("content-type", "text/plain; charset=punycode"),
        *[(name, "1" * 5000) for name in HEADER_FIELDS if name != "amqp-user-id"],
        ("amqp-priority", "0" * 5000 + "7"),
    ],
    ids=lambda value: value if len(value) < 40 else f"{value[:3]}...({len(value)})",
)
def test_the_500s_of_the_issue_are_4xx_problems(call: Call, header: str, value: str) -> None:
    for body in (b"xn--zz", b"a..b", b"hello"):
        headers = {"content-type": "text/plain", header: value}
        answer = call(lambda client: client.post("/messages/fuzz", content=body, headers=headers))  # noqa: B023
        assert_answered(answer)


def test_a_text_content_type_with_a_non_ascii_parameter_is_400(call: Call) -> None:
    """Found by hypothesis: the parameter was kept in the message's content type, which
    an AMQP symbol cannot hold (a 500)."""
    headers = [(b"content-type", b"text/plain;\xc2\x80")]
    answer = call(lambda client: client.post("/messages/fuzz", content=b"x", headers=headers))
    assert_answered(answer)
    assert answer.status_code == 400


def _envelope_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.sampled_from(["NaN", "Infinity", "2024-05-01T12:00:00Z", "9" * 30]),
    )
    tagged = st.fixed_dictionaries(
        {"$type": st.sampled_from(["ulong", "uuid", "binary", "symbol", "map", "array", "x"])},
        optional={"value": scalars, "type": st.text(max_size=6), "descriptor": scalars},
    )
    return st.recursive(
        st.one_of(scalars, tagged),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(ENVELOPE_FIELDS)), _envelope_values(), max_size=4))
def test_no_envelope_gives_a_5xx(call: Call, envelope: dict[str, Any]) -> None:
    content = json.dumps(envelope)
    for body in (content, f"[{content}]"):
        answer = call(
            lambda client: client.post(
                "/messages/fuzz-envelope",
                content=body,  # noqa: B023
                headers={"content-type": ENVELOPE_TYPE},
            )
        )
        assert_answered(answer)


query_values = st.one_of(
    st.text(max_size=12),
    st.text("0123456789", min_size=1, max_size=6000),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "0", "0.01", "true", "1" * 30]),
)


@SETTINGS
@given(query_values, query_values, st.one_of(st.none(), st.text(max_size=20)))
def test_no_long_poll_parameter_gives_a_5xx(
    call: Call, count: str, timeout: str, selector: str | None
) -> None:
    try:
        wait = float(timeout)
    except ValueError:
        wait = 0.0
    assume(not 0.05 < wait <= MAX_WAIT)  # a valid long wait would only slow the test down
    params = {"count": count, "timeout": timeout}
    if selector is not None:
        params["selector"] = selector
    answer = call(lambda client: client.get("/messages/fuzz-poll", params=params))
    assert_answered(answer)


@SETTINGS
@given(st.binary(min_size=1, max_size=12), st.sampled_from(["post", "get"]))
def test_no_address_gives_a_5xx(call: Call, raw: bytes, method: str) -> None:
    path = "/messages/" + quote_from_bytes(raw, safe="")
    if method == "post":
        answer = call(lambda client: client.post(path, content=b"x"))
    else:
        answer = call(lambda client: client.get(path, params={"timeout": "0"}))
    assert_answered(answer)


@SETTINGS
@given(query_values, header_values)
def test_no_request_timeout_gives_a_500(call: Call, timeout: str, header: bytes) -> None:
    """A request nobody answers is a 504 (a real answer), never a 500."""
    for wait in (timeout, None):
        params = {"timeout": wait} if wait is not None else {}
        answer = call(
            lambda client: client.post(
                "/requests/nobody",
                content=b"x",
                params=params,  # noqa: B023
                headers=[(b"request-timeout", header)],
            )
        )
        if answer.status_code == 504:
            continue
        assert_answered(answer)
