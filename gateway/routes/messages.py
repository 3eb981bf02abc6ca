"""``POST /messages/{address}``: HTTP to AMQP, answering with the broker's outcome; and
``GET /messages/{address}``: a long-poll that takes up to N messages.

The address is the percent-decoded rest of the path, so ``/messages/%2Fqueue%2Fr1`` and
``/messages//queue/r1`` both send to ``/queue/r1``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect, HTTPConnection
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from amqp_core import Message
from gateway.amqp import GatewayAmqpError, StreamMessage, StreamReceiver
from gateway.auth import SECURED
from gateway.idempotency import KeyReused
from gateway.mapping import (
    MappingError,
    envelopes_from_json,
    is_envelope,
    message_from_body,
    parse_json,
    stream_frame,
)
from gateway.problems import (
    BROKER_STATUSES,
    Problem,
    ProblemError,
    amqp_problem,
    outcome_problem,
    problem_response,
    problem_responses,
)
from gateway.state import Gateway, GatewayDep, gateway_of

router = APIRouter(tags=["messages"])

#: After the first message of a long-poll, how long to wait for more that are already
#: on their way, so that a burst comes back in one answer rather than one per poll.
POLL_LINGER = 0.05

#: Bytes of a body hashed per turn of the event loop (an Idempotency-Key's fingerprint):
#: a couple of milliseconds, where a 50 MB body at once would hold the loop 100 ms.
HASH_SLICE = 1024 * 1024


async def read_body(request: Request) -> bytes:
    """The request's body, written into one buffer a chunk at a time as it comes in.
    Starlette's `Request.body()` joins the chunks at the end instead: one copy of the
    whole body in one step, 30 ms or more of a stalled event loop for 50 MB."""
    first = b""
    buffer: io.BytesIO | None = None
    async for chunk in request.stream():
        if buffer is None:
            if not first:
                first = chunk
                continue
            if not chunk:
                continue
            buffer = _body_buffer(request)
            buffer.write(first)
        buffer.write(chunk)
    if buffer is None:
        return first
    buffer.truncate()  # to what came, if less than announced
    return buffer.getvalue()  # the buffer itself, not a copy


def _body_buffer(request: Request) -> io.BytesIO:
    """A buffer for a body in several chunks, with room made at once for the size its
    Content-Length announces (RequestLimits checked it): as it fills it is never moved,
    which would copy all it holds. `bytes(n)` is calloc'd memory, zero pages touched a
    chunk at a time, and BytesIO writes into the bytes object it is given in place,
    being its only holder."""
    announced = request.headers.get("content-length", "")
    return io.BytesIO(bytes(int(announced))) if announced.isdigit() else io.BytesIO()


class SendResult(BaseModel):
    """What became of one message."""

    outcome: str = Field(description="accepted (or sent, for settle=presettled)")
    address: str
    message_id: Any = Field(None, description="the message's id, if it has one")


class BatchItem(BaseModel):
    status: int = Field(description="the HTTP status this message alone would have got")
    outcome: str | None = None
    message_id: Any = None
    problem: Problem | None = None


class BatchResult(BaseModel):
    address: str
    results: list[BatchItem]


class PollResult(BaseModel):
    messages: list[dict[str, Any]] = Field(
        description="stream frames: id, message_id, fields and body (see the README)"
    )


def address_of(connection: HTTPConnection, address: str) -> str:
    """The AMQP address a route's path names: 404 when it names none, 400 when its
    percent-encoding is not UTF-8 (the server decoded each bad byte to U+FFFD, so that
    different paths would reach one address)."""
    if not address:
        raise ProblemError(404, "No address", "the path must name an AMQP address")
    if "\ufffd" in address and not _utf8_path(connection.scope.get("raw_path")):
        raise ProblemError(
            400,
            "Invalid address",
            "the path's percent-encoded bytes are not UTF-8; encode the address as UTF-8",
        )
    return address


def _utf8_path(raw_path: bytes | None) -> bool:
    if raw_path is None:  # the server did not say: the decoded path is all there is
        return True
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


BODY_EXAMPLES: dict[str, Any] = {
    "application/json": {"example": {"sequence": 1}},
    "text/plain": {"example": "Twas brillig"},
    "application/vnd.amqp.message+json": {
        "example": {"body": {"sequence": 1}, "subject": "hello", "properties": {"colour": "red"}}
    },
    "application/octet-stream": {},
}


#: Declared for the OpenAPI document only: the route reads them from the request itself.
SEND_PARAMETERS = [
    {
        "name": "settle",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["unsettled", "presettled"], "default": "unsettled"},
        "description": "presettled: at-most-once, answered 202 without waiting for an outcome",
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "becomes the message id (unless one is given); a retry with this key "
        "within the window gets the first answer and sends nothing; the key with another "
        "address, Content-Type, amqp-* header or body is a 422",
    },
]


@router.post(
    "/messages/{address:path}",
    status_code=201,
    summary="Send a message (or a batch of envelopes) to an AMQP address",
    response_model=SendResult,
    responses={
        202: {"model": SendResult, "description": "Sent at most once (settle=presettled)"},
        207: {"model": BatchResult, "description": "A batch: one result per message"},
        **problem_responses(*BROKER_STATUSES, 401, 404, 413, 415),
    },
    openapi_extra={
        "requestBody": {"content": BODY_EXAMPLES, "required": True},
        "parameters": SEND_PARAMETERS,
        "security": SECURED,
    },
)
async def send_message(address: str, request: Request) -> Any:
    # Served through `served_routes` below; this FastAPI route gives the OpenAPI document.
    state = gateway_of(request)
    settle = request.query_params.get("settle", "unsettled")
    if settle not in ("unsettled", "presettled"):
        raise ProblemError(400, "Bad settle", "settle is unsettled or presettled")
    idempotency_key = request.headers.get("idempotency-key")
    address = address_of(request, address)
    await state.auth.authorize(request, "send", address)
    body = await read_body(request)
    if idempotency_key is None:
        return await _deliver(state, address, request, body, settle, None)

    async def attempt() -> Response:
        try:
            return await _deliver(state, address, request, body, settle, idempotency_key)
        except ProblemError as error:
            return problem_response(error.problem, error.headers)
        except GatewayAmqpError as error:
            answer = amqp_problem(error)
            return problem_response(answer.problem, answer.headers)
        except MappingError as error:
            problem = Problem(title=error.title, status=error.status, detail=error.detail)
            return problem_response(problem)

    try:
        answer, replayed = await state.idempotency.once(
            idempotency_key,
            await _fingerprint(address, settle, request, body),
            attempt,
            # A 503 sent nothing (or the broker did not take it): its retry sends for
            # real. Every other answer stands: an outcome, and a send in doubt too,
            # whose retry must not deliver the message a second time.
            keep=lambda answer: answer.status_code != 503,
        )
    except KeyReused:
        raise ProblemError(
            422,
            "Idempotency-Key reused",
            f"the Idempotency-Key {idempotency_key[:60]!r} was first used with another "
            "request (another address, settle mode, Content-Type, amqp-* header or body); "
            "a new message needs a new key",
        ) from None
    if not replayed:
        return answer
    headers = {
        k: v for k, v in answer.headers.items() if k not in ("content-length", "content-type")
    }
    headers["Idempotent-Replayed"] = "true"
    return Response(answer.body, answer.status_code, headers, media_type=answer.media_type)


async def _fingerprint(address: str, settle: str, request: Request, body: bytes) -> bytes:
    """A digest of what makes the message, which a key is bound to; a large body is
    hashed a slice at a time, letting the event loop's other work go on between."""
    digest = hashlib.sha256()
    mapped = sorted(
        (name, value)
        for name, value in request.headers.raw
        if name == b"content-type" or name.startswith(b"amqp-")
    )
    for part in (address.encode(), settle.encode(), *itertools.chain.from_iterable(mapped)):
        digest.update(len(part).to_bytes(8, "big"))  # so that no two splits read alike
        digest.update(part)
    view = memoryview(body)
    for start in range(0, len(view), HASH_SLICE):
        if start:
            await asyncio.sleep(0)
        digest.update(view[start : start + HASH_SLICE])
    return digest.digest()


async def _serve_send_message(request: Request) -> Response:
    request.scope.setdefault("route", served_routes[0])  # the metrics label it by its path
    return await send_message(request.path_params["address"], request)


#: POST /messages as it is served: a plain Starlette route that `create_app` puts ahead
#: of `router`. FastAPI's per-request parameter machinery costs more than the send
#: itself (bench/gateway.py: 0.61 of a bare endpoint through it, 0.85 without).
served_routes = [Route("/messages/{address:path}", _serve_send_message, methods=["POST"])]


async def _deliver(
    state: Gateway,
    address: str,
    request: Request,
    body: bytes,
    settle: str,
    idempotency_key: str | None,
) -> Response:
    """Map the body to a message (or a batch) and send it; the answer to the POST."""
    content_type = request.headers.get("content-type")
    if is_envelope(content_type):
        value = parse_json(body)
        if isinstance(value, list):
            return await _send_batch(state, address, envelopes_from_json(value))
    message = message_from_body(body, content_type, request.headers)
    if message.id is None and idempotency_key is not None:
        message.id = idempotency_key
    if settle == "presettled":
        await state.amqp.send_presettled(address, message, timeout=state.settings.send_timeout)
        state.metrics.outcomes.labels("messages", "presettled").inc()
        return _answer(SendResult(outcome="sent", address=address, message_id=message.id), 202)
    return _answer(await _send(state, address, message))


def _answer(result: SendResult, status: int = 201) -> Response:
    # Serialized here: FastAPI's response_model validation would cost more than the send.
    body = result.model_dump_json().encode()
    return Response(body, status, media_type="application/json")


async def _send(state: Gateway, address: str, message: Message) -> SendResult:
    outcome = await state.send(address, message)
    state.metrics.outcomes.labels("messages", outcome.name).inc()
    if not outcome.accepted:
        raise outcome_problem(address, outcome)
    return SendResult(outcome="accepted", address=address, message_id=message.id)


async def _send_batch(
    state: Gateway, address: str, messages: list[Message | MappingError]
) -> Response:
    """Send each message in order; one result each, whatever became of the others."""
    results = []
    for message in messages:
        if isinstance(message, MappingError):
            problem = Problem(title=message.title, status=message.status, detail=message.detail)
            results.append(BatchItem(status=message.status, problem=problem))
            continue
        try:
            sent = await _send(state, address, message)
        except ProblemError as error:
            results.append(BatchItem(status=error.problem.status, problem=error.problem))
        except GatewayAmqpError as error:
            problem = amqp_problem(error).problem
            results.append(BatchItem(status=problem.status, problem=problem))
        else:
            results.append(BatchItem(status=201, outcome="accepted", message_id=sent.message_id))
    batch = BatchResult(address=address, results=results)
    return Response(
        batch.model_dump_json(exclude_none=True), status_code=207, media_type="application/json"
    )


@router.get(
    "/messages/{address:path}",
    summary="Take up to `count` messages, waiting up to `timeout` seconds (long-poll)",
    response_model=PollResult,
    responses={
        204: {"description": "No message arrived in time"},
        **problem_responses(400, 401, 403, 404, 503),
    },
    openapi_extra={"security": SECURED},
)
async def poll_messages(
    request: Request,
    address: str,
    state: GatewayDep,
    count: Annotated[int, Query(ge=1, description="most messages to take")] = 1,
    timeout: Annotated[float, Query(ge=0, description="seconds to wait for the first")] = 10.0,
    selector: Annotated[str | None, Query(description="JMS selector")] = None,
) -> Any:
    """The messages are accepted (removed from the queue) once the answer is handed to
    the connection: at most once. A client that goes away before that takes nothing:
    what was taken for it goes back to the queue. Use a WebSocket with ack=client to
    acknowledge each message."""
    address = address_of(request, address)
    await state.auth.authorize(request, "receive", address)
    settings = state.settings
    if count > settings.max_poll_count:
        raise ProblemError(400, "Too many", f"count is at most {settings.max_poll_count}")
    if timeout > settings.max_poll_timeout:
        raise ProblemError(400, "Too long", f"timeout is at most {settings.max_poll_timeout:g}")
    stream = await state.amqp.open_receiver(address, selector=selector, credit=count)
    client_gone = asyncio.ensure_future(_client_gone(request.receive))
    try:
        taken = await _take(stream, client_gone, count, timeout)
    except BaseException:
        client_gone.cancel()
        await stream.close()  # releases what was taken
        raise
    if not taken:
        client_gone.cancel()
        await stream.close()
        return Response(status_code=204)
    frames = [stream_frame(received.id, received.message) for received in taken]
    return _PollAnswer(PollResult(messages=frames), stream, taken, client_gone, state)


async def _client_gone(receive: Receive) -> None:
    """Return once the client has closed its connection (the server says so by ASGI's
    http.disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _take(
    stream: StreamReceiver, client_gone: asyncio.Future[None], count: int, timeout: float
) -> list[StreamMessage]:
    """Up to `count` messages, the first waited for up to `timeout` seconds, the others
    only while they come in a burst; ClientDisconnect if the client goes away first."""
    taken: list[StreamMessage] = []
    wait = timeout
    while len(taken) < count:
        receiving = asyncio.ensure_future(stream.receive(timeout=wait))
        await asyncio.wait((receiving, client_gone), return_when=asyncio.FIRST_COMPLETED)
        if client_gone.done():
            # A message that came meanwhile is the stream's, which releases it on close.
            receiving.cancel()
            await asyncio.wait((receiving,))
            if not receiving.cancelled():
                receiving.exception()  # retrieved: a timeout or a lost broker, moot now
            raise ClientDisconnect
        try:
            taken.append(receiving.result())
        except TimeoutError:
            break
        wait = POLL_LINGER
    return taken


class _PollAnswer(Response):
    """A long-poll's answer, which settles the messages it carries: accepted once it is
    handed to the connection, released if the client went away first. A client that goes
    away while the answer travels may lose them: HTTP never says what a client read."""

    def __init__(
        self,
        result: PollResult,
        stream: StreamReceiver,
        taken: list[StreamMessage],
        client_gone: asyncio.Future[None],
        state: Gateway,
    ) -> None:
        super().__init__(result.model_dump_json().encode(), media_type="application/json")
        self._stream = stream
        self._taken = taken
        self._client_gone = client_gone
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(0)  # a disconnect the server has seen reaches the watcher
            gone = self._client_gone.done()
            # A send to a client already gone returns as if it had written (uvicorn's
            # does): the disconnect, seen before or while it waited, says nothing was.
            # Not after: the response's end looks like a disconnect to the watcher.
            await super().__call__(scope, receive, send)
            if gone or self._client_gone.done():
                return  # the stream's close releases the messages
            for received in self._taken:
                received.accept()
            self._state.metrics.stream_messages.labels("poll").inc(len(self._taken))
        finally:
            self._client_gone.cancel()
            await self._stream.close()
