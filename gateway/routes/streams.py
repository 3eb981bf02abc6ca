"""``GET /streams/{address}``: the messages at an AMQP address, streamed, over a
WebSocket or as Server-Sent Events.

Each stream is one AMQP receiver whose credit window is the most messages in flight to
the client and not acknowledged by it, so a slow client holds the broker back, not the
gateway's memory. Closing the stream releases what the client had not acknowledged back
to the queue. The frame format and the acknowledgement protocol are in the README.

The WebSocket is served by a plain Starlette route (`served_routes`, put ahead of the
FastAPI router by `create_app`): an idle stream holds its handler's frames for as long
as it is open, and FastAPI's dependency machinery would keep some 8 KiB more of them
for each of 10,000 streams. OpenAPI cannot describe a WebSocket in any case.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.datastructures import QueryParams
from starlette.routing import WebSocketRoute

from amqp_core import Message
from amqp_core.grants import Credential
from gateway.amqp import (
    OUTCOME_NAMES,
    BrokerUnavailable,
    GatewayAmqpError,
    StreamReceiver,
    UnknownMessageId,
)
from gateway.auth import SECURED, AuthRefused
from gateway.mapping import base64_stream_frame, binary_stream_frame
from gateway.problems import ProblemError, amqp_problem, problem_responses
from gateway.routes.messages import address_of
from gateway.state import Gateway, GatewayDep, gateway_of

router = APIRouter(tags=["streams"])
log = logging.getLogger(__name__)

#: WebSocket close codes (RFC 6455 section 7.4.1): the client asked for something
#: wrong; the broker is away, try again later; the gateway is shutting down.
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011

#: Bytes of a body per binary frame (``?body=binary``): copying and framing one costs the
#: event loop well under a millisecond, so a large body never holds it long, and the
#: other streams' frames go out between its slices.
BODY_SLICE = 256 * 1024

#: Bytes of a body base64-encoded per turn of the event loop for a JSON frame (a multiple
#: of 3, so that the slices' base64 strings join into the whole body's).
BASE64_SLICE = 3 * 256 * 1024

#: The longest acknowledgement read. ``{"ack": 123456, "outcome": "released"}`` is under
#: 50 characters; a longer text is refused unread, so that a client cannot make the
#: gateway parse megabytes of JSON per frame.
MAX_ACK_LENGTH = 1024

Ack = Literal["auto", "client"]
BodyMode = Literal["json", "binary"]

SelectorQuery = Annotated[
    str | None, Query(description="JMS selector: only the messages it matches")
]
BrowseQuery = Annotated[bool, Query(description="see copies and leave the messages on the queue")]
CreditQuery = Annotated[
    int | None, Query(ge=1, description="most messages in flight and not acknowledged")
]
TicketQuery = Annotated[
    str | None,
    Query(description="a ticket from POST /auth/tickets, for a browser's EventSource"),
]


def _credit(state: Gateway, credit: int | None) -> int:
    settings = state.settings
    if credit is None:
        return settings.stream_credit
    if credit > settings.max_stream_credit:
        raise ProblemError(
            400, "Credit too large", f"credit is at most {settings.max_stream_credit}"
        )
    return credit


@contextlib.asynccontextmanager
async def _counted(state: Gateway, kind: str, credit: int) -> AsyncIterator[None]:
    metrics = state.metrics
    metrics.open_streams.labels(kind).inc()
    metrics.stream_credit.inc(credit)
    try:
        yield
    finally:
        metrics.open_streams.labels(kind).dec()
        metrics.stream_credit.dec(credit)


#: How the query's `browse` may be written (as FastAPI reads a bool).
TRUE_WORDS = {"1", "true", "yes", "on", "t", "y"}
FALSE_WORDS = {"0", "false", "no", "off", "f", "n"}


def _websocket_options(
    query: QueryParams,
) -> tuple[str | None, bool, int | None, Ack, BodyMode]:
    """selector, browse, credit, ack and body from the WebSocket's query; ProblemError
    (400) for a value that is not one."""
    browse = query.get("browse", "false").lower()
    if browse not in TRUE_WORDS | FALSE_WORDS:
        raise ProblemError(400, "Bad browse", "browse is true or false")
    credit_text = query.get("credit")
    credit = None
    if credit_text is not None:
        if not credit_text.isdigit() or int(credit_text) < 1:
            raise ProblemError(400, "Bad credit", "credit is a whole number of at least 1")
        credit = int(credit_text)
    if query.get("ack", "auto") not in ("auto", "client"):
        raise ProblemError(400, "Bad ack", "ack is auto or client")
    if query.get("body", "json") not in ("json", "binary"):
        raise ProblemError(400, "Bad body", "body is json or binary")
    ack: Ack = "client" if query.get("ack") == "client" else "auto"
    body: BodyMode = "binary" if query.get("body") == "binary" else "json"
    return query.get("selector"), browse in TRUE_WORDS, credit, ack, body


async def websocket_stream(websocket: WebSocket) -> None:
    """GET /streams/{address} upgraded to a WebSocket: query options selector, browse,
    credit, ack (auto or client), body (json or binary) and ticket; the protocol is in
    the README."""
    state = gateway_of(websocket)
    await websocket.accept()
    try:
        address = address_of(websocket, websocket.path_params["address"])
        credential = await state.auth.authorize(websocket, "receive", address, tickets=True)
        selector, browse, credit, ack, body = _websocket_options(websocket.query_params)
        window = _credit(state, credit)
        stream = await state.amqp.open_receiver(
            address, selector=selector, browse=browse, credit=window
        )
    except (ProblemError, GatewayAmqpError) as error:
        await _close_with_problem(websocket, error)
        return
    async with _counted(state, "websocket", window):
        client = _Client(websocket, binary=body == "binary")
        # This task reads the client's acknowledgements; one more sends the messages.
        # (A third, to wait for both, would cost every idle stream its frames.)
        reader = asyncio.current_task()
        assert reader is not None
        closing = False

        def stop_reading(finished: asyncio.Task[None]) -> None:
            if not closing:
                reader.cancel()  # the stream ended (the broker closed it, or went away)

        sending = asyncio.create_task(_forward(client, stream, state, ack == "auto" or browse))
        sending.add_done_callback(stop_reading)
        revoked: list[AuthRefused] = []

        def revoke(refusal: AuthRefused) -> None:
            revoked.append(refusal)
            sending.cancel()

        watch = state.auth.streams.watch(credential, address, revoke)
        try:
            await _read_acks(client, stream)
        except asyncio.CancelledError:
            if not sending.done():
                raise  # cancelled from outside: the server is shutting down
            reader.uncancel()
        except Exception:
            log.exception("the stream from %r failed reading from its client", stream.address)
            await _close_quietly(websocket, CLOSE_INTERNAL_ERROR)
        finally:
            closing = True
            state.auth.streams.forget(watch)
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            failure = None if sending.cancelled() else sending.exception()
            if revoked:
                await _close_with_problem(websocket, revoked[0])
            elif isinstance(failure, GatewayAmqpError):
                await _close_with_problem(websocket, failure)
            elif failure is not None and not isinstance(failure, WebSocketDisconnect):
                log.error("the stream from %r failed", stream.address, exc_info=failure)
                await _close_quietly(websocket, CLOSE_INTERNAL_ERROR)
            await stream.close()
            await _close_quietly(websocket, CLOSE_GOING_AWAY)


async def _close_quietly(websocket: WebSocket, code: int) -> None:
    """Close with `code`, unless it is closed already."""
    with contextlib.suppress(Exception):
        await websocket.close(code)


class _Client:
    """The WebSocket of one stream, sending whole messages: a message's frames (its JSON
    frame, then its body's binary frames) never interleave with an error frame."""

    def __init__(self, websocket: WebSocket, binary: bool) -> None:
        self.websocket = websocket
        self.binary = binary
        self._sending = asyncio.Lock()

    async def send_message(self, message_id: int, message: Message) -> None:
        if not self.binary:
            text = await json_frame(message_id, message)
            async with self._sending:
                await self.websocket.send_text(text)
            return
        frame, body = binary_stream_frame(message_id, message)
        async with self._sending:
            await self.websocket.send_text(json.dumps(frame))
            view = memoryview(body)
            for start in range(0, len(view), BODY_SLICE):
                await self.websocket.send_bytes(bytes(view[start : start + BODY_SLICE]))
                await asyncio.sleep(0)  # the loop's other work goes on between slices

    async def send_error(self, problem: dict[str, Any]) -> None:
        async with self._sending:
            await self.websocket.send_text(json.dumps({"error": problem}))


async def json_frame(message_id: int, message: Message) -> str:
    """The text of a message's JSON frame (`gateway.mapping.stream_frame`). A large body
    of bytes is base64-encoded a slice at a time, the event loop's other work going on
    between slices, and its base64 joined into the text once: it needs no JSON escaping,
    so json.dumps need not scan it again (a 50 MB body: 0.2-0.4 s in one go). The text
    is one string all the same: large bodies are better taken as binary frames."""
    frame, body = base64_stream_frame(message_id, message)
    if body is None:
        return json.dumps(frame)
    view = memoryview(body)
    if len(view) <= BASE64_SLICE:
        frame["body"] = base64.b64encode(view).decode("ascii")
        return json.dumps(frame)
    pieces = [json.dumps(frame)[:-1], ', "body": "']
    for start in range(0, len(view), BASE64_SLICE):
        pieces.append(base64.b64encode(view[start : start + BASE64_SLICE]).decode("ascii"))
        await asyncio.sleep(0)
    pieces.append('"}')
    text = "".join(pieces)
    await asyncio.sleep(0)  # the join is one step, the socket's framing of it the next
    return text


async def _forward(client: _Client, stream: StreamReceiver, state: Gateway, auto_ack: bool) -> None:
    """Send each message to the client; in auto mode, accept it once its frames are
    handed to the socket (which waits while the client does not read)."""
    counter = state.metrics.stream_messages.labels("websocket")
    while True:
        received = await stream.receive()
        await client.send_message(received.id, received.message)
        counter.inc()
        if auto_ack:
            received.accept()


async def _read_acks(client: _Client, stream: StreamReceiver) -> None:
    """Settle what the client acknowledges. Anything else it sends (a binary frame, a
    text that is not an acknowledgement) is answered with an error frame and logged, and
    the stream goes on. Only a stream's first bad frame is a warning: a client sending
    nothing else must not flood the log."""
    bad_frames = 0
    while True:
        received = await client.websocket.receive()
        if received["type"] == "websocket.disconnect":
            return
        try:
            stream.settle(*_parse_ack(received.get("text")))
        except (ValueError, UnknownMessageId) as error:
            bad_frames += 1
            level = logging.WARNING if bad_frames == 1 else logging.DEBUG
            log.log(level, "bad acknowledgement on the stream from %r: %s", stream.address, error)
            problem = {"type": "about:blank", "title": "Bad ack", "status": 400}
            await client.send_error({**problem, "detail": str(error)})


#: The WebSocket as it is served: a plain Starlette route that `create_app` puts ahead of
#: `router` (see the module's docstring).
served_routes = [WebSocketRoute("/streams/{address:path}", websocket_stream)]


def _parse_ack(text: str | None) -> tuple[int, Any]:
    """(message id, outcome) from an acknowledgement frame's text (None: a binary frame);
    ValueError saying what is wrong with it."""
    usage = 'send {"ack": <id>} or {"ack": <id>, "outcome": ...}'
    if text is None:
        raise ValueError(f"a binary frame is not an acknowledgement: {usage} as text")
    if len(text) > MAX_ACK_LENGTH:
        raise ValueError(f"{len(text)} characters is not an acknowledgement: {usage}")
    try:
        request = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's limit
        raise ValueError(f"not JSON: {usage}") from None
    if not isinstance(request, dict) or "ack" not in request:
        raise ValueError(usage)
    message_id = request["ack"]
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise ValueError(f"ack takes a message's id (an integer), not {message_id!r}")
    outcome = request.get("outcome", "accepted")
    if outcome not in OUTCOME_NAMES:
        raise ValueError(f"outcome is one of {', '.join(OUTCOME_NAMES)}, not {outcome!r}")
    return message_id, outcome


async def _close_with_problem(websocket: WebSocket, error: Exception) -> None:
    """Tell the client what went wrong in a last frame, then close with a matching code."""
    answer = error if isinstance(error, ProblemError) else amqp_problem(error)  # type: ignore[arg-type]
    problem = answer.problem
    if isinstance(error, AuthRefused):
        code = error.close_code
    elif isinstance(error, BrokerUnavailable):
        code = CLOSE_TRY_AGAIN_LATER
    else:
        code = CLOSE_POLICY_VIOLATION
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"error": problem.model_dump(exclude_none=True)}))
        await websocket.close(code, reason=problem.title[:120])


@router.get(
    "/streams/{address:path}",
    summary="Stream messages as Server-Sent Events (Accept: text/event-stream)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "One event per message"},
        **problem_responses(400, 401, 403, 404, 406, 503),
    },
    openapi_extra={"security": SECURED},
)
async def sse_stream(
    request: Request,
    address: str,
    state: GatewayDep,
    selector: SelectorQuery = None,
    browse: BrowseQuery = False,
    credit: CreditQuery = None,
    ticket: TicketQuery = None,  # for the OpenAPI document: `Auth.authenticate` reads it
) -> StreamingResponse:
    """Messages are accepted as they are written out (auto-ack). Each event's id is the
    message's stream id; comments keep idle connections open. For acknowledgements, use
    a WebSocket on the same URL."""
    address = address_of(request, address)
    credential = await state.auth.authorize(request, "receive", address, tickets=True)
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise ProblemError(
            406,
            "Not acceptable",
            "ask for Accept: text/event-stream, or open a WebSocket on this URL",
        )
    window = _credit(state, credit)
    stream = await state.amqp.open_receiver(
        address, selector=selector, browse=browse, credit=window
    )
    return StreamingResponse(
        _events(stream, state, window, credential),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    stream: StreamReceiver, state: Gateway, window: int, credential: Credential
) -> AsyncIterator[str]:
    keepalive = state.settings.sse_keepalive
    counter = state.metrics.stream_messages.labels("sse")
    revoked: list[AuthRefused] = []
    waiting: asyncio.Task[Any] | None = None

    def revoke(refusal: AuthRefused) -> None:
        # Interrupted only while it waits for a message: not in the middle of a write.
        revoked.append(refusal)
        if waiting is not None:
            waiting.cancel()

    watch = state.auth.streams.watch(credential, stream.address, revoke)
    async with _counted(state, "sse", window):
        try:
            yield ": connected\n\n"
            while not revoked:
                try:
                    waiting = asyncio.current_task()
                    received = await stream.receive(timeout=keepalive)
                except asyncio.CancelledError:
                    if not revoked:
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    break
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                except GatewayAmqpError as error:
                    problem = amqp_problem(error).problem.model_dump(exclude_none=True)
                    yield f"event: error\ndata: {json.dumps(problem)}\n\n"
                    return
                finally:
                    waiting = None
                data = await json_frame(received.id, received.message)
                head = f"id: {received.id}\nevent: message\ndata: "
                if len(data) < BASE64_SLICE:
                    yield f"{head}{data}\n\n"
                else:  # in three chunks, so that a large frame is not copied once more
                    yield head
                    yield data
                    yield "\n\n"
                counter.inc()
                received.accept()
            problem = revoked[0].problem.model_dump(exclude_none=True)
            yield f"event: error\ndata: {json.dumps(problem)}\n\n"
        finally:
            state.auth.streams.forget(watch)
            await stream.close()
