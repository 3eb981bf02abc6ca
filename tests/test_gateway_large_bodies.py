"""Large bodies in the gateway's own steps, in this process: a stream's JSON frame of a
large body is built a slice at a time (and reads as `stream_frame` says), and a POSTed
body is read without a whole copy. End to end, a 50 MB body each way is in
test_gateway_streams.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tracemalloc
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from starlette.requests import Request

from amqp_core import DataSections, Message
from gateway.mapping import stream_frame
from gateway.routes.messages import HASH_SLICE, _fingerprint, read_body
from gateway.routes.streams import BASE64_SLICE, json_frame

MEBIBYTE = 1024 * 1024

T = TypeVar("T")


async def counting_turns(work: Awaitable[T]) -> tuple[T, int]:
    """What `work` gives, and how many turns the event loop took meanwhile."""
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    await asyncio.sleep(0)
    try:
        return await work, turns
    finally:
        counter.cancel()


# -- a stream's JSON frame ------------------------------------------------------------------

SIZES = [0, 1, 2, 3, BASE64_SLICE - 1, BASE64_SLICE, BASE64_SLICE + 1, 3 * BASE64_SLICE + 2]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["data", "amqp-value binary"])
def test_a_json_frame_reads_as_stream_frame_says(size: int, kind: str) -> None:
    body = os.urandom(size)
    inferred = kind == "data"
    message = Message(body=body, inferred=inferred, subject="s", properties={"k": 1}, id=9)
    text = asyncio.run(json_frame(7, message))
    assert json.loads(text) == stream_frame(7, message)
    assert base64.b64decode(json.loads(text)["body"]) == body


@pytest.mark.parametrize(
    "body",
    [{"a": [1, 2]}, "text", None, DataSections([b"a", b"b"]), [1, "x"]],
    ids=["map", "string", "none", "data sections", "list"],
)
def test_a_json_frame_of_other_bodies_is_stream_frame(body: Any) -> None:
    message = Message(body=body)
    assert json.loads(asyncio.run(json_frame(1, message))) == stream_frame(1, message)


def test_the_json_frame_of_a_50_mb_body_lets_the_loop_run_between_slices() -> None:
    """json.dumps of the frame took 0.3-0.7 s in one step (base64, then escaping 67 MB
    of it); now the base64 is made a slice at a time, the event loop's other work going
    on between slices, and only the join of the text is one step. Counted in turns of
    the loop, not timed: a timed bound on the join flaked on a loaded machine."""
    body = os.urandom(50 * MEBIBYTE)
    message = Message(body=body, inferred=True)
    text, turns = asyncio.run(counting_turns(json_frame(1, message)))
    assert turns >= len(body) // BASE64_SLICE
    assert text.endswith('"}') and len(text) > len(body) * 4 // 3


# -- a POSTed body ----------------------------------------------------------------------------


def posted(body: bytes, chunk: int, announce: bool) -> Request:
    """A Starlette request whose body arrives in `chunk`-byte pieces, as uvicorn hands
    them on, with its Content-Length if `announce`."""
    headers = [(b"content-length", str(len(body)).encode())] if announce else []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    view = memoryview(body)
    offsets = list(range(0, len(body), chunk)) or [0]

    async def receive() -> dict[str, Any]:
        start = offsets.pop(0)
        part = bytes(view[start : start + chunk])
        return {"type": "http.request", "body": part, "more_body": bool(offsets)}

    return Request(scope, receive)


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
def test_a_large_body_is_read_without_a_whole_copy(announce: bool) -> None:
    """Read in 64 KiB chunks, a 20 MB body costs one body's worth of memory: each chunk
    is written into one buffer as it comes (room made at once for an announced size),
    not kept and joined at the end, which held two bodies' worth."""
    body = os.urandom(20 * MEBIBYTE)
    request = posted(body, 64 * 1024, announce)

    async def traced() -> tuple[bytes, int]:
        # Traced inside the loop: asyncio.run's own handling of a large result shows as
        # more of a peak than read_body makes.
        tracemalloc.start()
        try:
            read = await read_body(request)
            return read, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    read, peak = asyncio.run(traced())
    assert read == body
    assert peak < 1.3 * len(body), f"{peak / len(body):.2f} times the body"


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * 1024 + 1, 300_000])
@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "chunked"])
def test_a_body_is_read_whole_in_any_chunks(size: int, announce: bool) -> None:
    body = os.urandom(size)
    assert asyncio.run(read_body(posted(body, 64 * 1024, announce))) == body


def test_the_idempotency_fingerprint_of_a_large_body_lets_the_loop_run_between_slices() -> None:
    """The digest an Idempotency-Key is bound to: 20 MB hashed a slice at a time, the
    event loop's other work going on between slices (one sha256 of it all: 15-35 ms)."""
    body = os.urandom(20 * MEBIBYTE)
    request = posted(b"", 1, announce=False)

    def fingerprint(data: bytes) -> tuple[bytes, int]:
        return asyncio.run(counting_turns(_fingerprint("address", "unsettled", request, data)))

    digest, turns = fingerprint(body)
    assert turns >= len(body) // HASH_SLICE - 1
    assert digest == fingerprint(body)[0]
    assert digest != fingerprint(body[:-1] + bytes([body[-1] ^ 1]))[0]
