"""``POST /requests/{address}``: call an AMQP request/response service as if it were an
HTTP endpoint. The body is mapped as for POST /messages, sent with the gateway's reply
address and a fresh correlation id, and the reply comes back as the HTTP answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from gateway.auth import SECURED
from gateway.mapping import (
    http_reply,
    message_from_body,
)
from gateway.problems import BROKER_STATUSES, ProblemError, problem_responses
from gateway.routes.messages import BODY_EXAMPLES, address_of, read_body
from gateway.state import GatewayDep

router = APIRouter(tags=["requests"])


@router.post(
    "/requests/{address:path}",
    summary="Send a request to an AMQP service and answer with its reply",
    response_class=Response,
    responses={
        200: {
            "description": "The reply: its body by section and content type, its fields "
            "as amqp-* headers, its application properties as amqp-app-* headers",
            "content": {"application/json": {}, "text/plain": {}, "application/octet-stream": {}},
        },
        **problem_responses(*BROKER_STATUSES, 401, 404, 413, 415),
    },
    openapi_extra={
        "requestBody": {"content": BODY_EXAMPLES, "required": True},
        "security": SECURED,
    },
)
async def call_service(
    address: str,
    state: GatewayDep,
    request: Request,
    timeout: Annotated[
        float | None, Query(gt=0, description="seconds to wait for the reply (default 30)")
    ] = None,
    request_timeout: Annotated[
        float | None, Header(gt=0, description="seconds to wait for the reply")
    ] = None,
) -> Any:
    address = address_of(request, address)
    await state.auth.authorize(request, "request", address)
    settings = state.settings
    wait = request_timeout or timeout or settings.request_timeout
    if wait > settings.max_request_timeout:
        raise ProblemError(
            400, "Timeout too long", f"the timeout is at most {settings.max_request_timeout:g} s"
        )
    body = await read_body(request)
    message = message_from_body(body, request.headers.get("content-type"), request.headers)
    reply = await state.amqp.request(address, message, timeout=wait)
    state.metrics.outcomes.labels("requests", "replied").inc()
    answer = http_reply(reply)
    return Response(answer.body, media_type=answer.content_type, headers=answer.headers)
