"""Errors as RFC 9457 problem details (``application/problem+json``): the one shape of
every error the gateway answers, with the AMQP condition when the broker gave one."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from amqp_core import Condition
from amqp_core.aio import Outcome
from gateway.amqp import (
    AddressRefused,
    BrokerUnavailable,
    GatewayAmqpError,
    RequestInDoubt,
    RequestNotAccepted,
    RequestTimeout,
    SendInDoubt,
    StreamInterrupted,
)
from gateway.mapping import MappingError

PROBLEM_JSON = "application/problem+json"


#: The problem type of a message sent whose outcome is unknown (`SendInDoubt`).
IN_DOUBT = "/problems/in-doubt"


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, for people and for programs."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    #: The AMQP error condition behind it, when the broker gave one.
    condition: str | None = None
    #: The message id of a message in doubt, when it has one.
    message_id: Any = None


class ProblemError(Exception):
    """Raise anywhere in a route to answer with this problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        condition: str | None = None,
        headers: dict[str, str] | None = None,
        problem_type: str = "about:blank",
        message_id: Any = None,
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(
            type=problem_type,
            title=title,
            status=status,
            detail=detail,
            condition=condition,
            message_id=message_id,
        )
        self.headers = headers


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries declaring these statuses as problems."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {"content": {PROBLEM_JSON: {"schema": schema}}, "description": _TITLES[status]}
        for status in statuses
    }


def declare_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what the app does: every error is a Problem, even
    FastAPI's own 422 for a query that does not validate."""
    document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
        Problem.model_json_schema()
    )
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = problem_responses(int(status))[int(status)]["content"]
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


#: The HTTP status for an AMQP error condition, when the broker rejects a message or
#: refuses a link. A condition not listed here, or none, is 422: the broker understood
#: the message and would not take it.
STATUS_BY_CONDITION = {
    "amqp:invalid-field": 400,
    "amqp:decode-error": 400,
    "amqp:unauthorized-access": 403,
    "amqp:not-allowed": 403,
    "amqp:not-found": 404,
    "amqp:precondition-failed": 412,
    "amqp:link:message-size-exceeded": 413,
    "amqp:resource-limit-exceeded": 429,
    "amqp:not-implemented": 501,
    "amqp:internal-error": 502,
}

#: What a route that sends to the broker may answer besides its own statuses.
BROKER_STATUSES = (*sorted(set(STATUS_BY_CONDITION.values())), 422, 503, 504)

#: Seconds a client should wait before retrying a 503.
RETRY_AFTER = "1"


def status_of(condition: Condition | None) -> int:
    return STATUS_BY_CONDITION.get(condition.name, 422) if condition is not None else 422


def outcome_problem(address: str, outcome: Outcome) -> ProblemError:
    """The answer to a message the broker did not accept."""
    if outcome.name == "rejected":
        condition = outcome.condition
        detail = f"the broker rejected the message to {address!r}"
        if condition is not None:
            detail += f": {condition.description or condition.name}"
        return ProblemError(
            status_of(condition),
            "Rejected by the broker",
            detail,
            condition=condition.name if condition is not None else None,
        )
    return ProblemError(
        503,
        f"Message {outcome.name} by the broker",
        f"the broker did not take the message to {address!r} ({outcome.name}): try again",
        headers={"Retry-After": RETRY_AFTER},
    )


def amqp_problem(error: GatewayAmqpError) -> ProblemError:
    """The answer to an error of the gateway's AMQP side."""
    if isinstance(error, StreamInterrupted):
        return ProblemError(
            503,
            "Stream interrupted",
            str(error),
            condition=error.condition.name if error.condition is not None else None,
            headers={"Retry-After": RETRY_AFTER},
        )
    if isinstance(error, BrokerUnavailable):
        return ProblemError(
            503, "Broker unavailable", str(error), headers={"Retry-After": RETRY_AFTER}
        )
    if isinstance(error, RequestInDoubt):
        return ProblemError(
            504,
            "Outcome unknown",
            f"{error}. A retry may call the service twice",
            problem_type=IN_DOUBT,
            message_id=error.message_id,
        )
    if isinstance(error, SendInDoubt):
        return ProblemError(
            504,
            "Outcome unknown",
            f"{error}. A retry with the same Idempotency-Key is answered this again and "
            "sends nothing; a retry without one, or with a new key, may deliver it twice "
            "(give it the same amqp-id, so that consumers can tell)",
            problem_type=IN_DOUBT,
            message_id=error.message_id,
        )
    if isinstance(error, RequestTimeout):
        return ProblemError(504, "No answer in time", str(error))
    if isinstance(error, AddressRefused):
        condition = error.condition
        name = condition.name if condition is not None else None
        return ProblemError(status_of(condition), "Address refused", str(error), condition=name)
    if isinstance(error, RequestNotAccepted):
        return outcome_problem(error.address, error.outcome)
    return ProblemError(500, "Internal error", str(error))


_TITLES = {
    400: "Bad request",
    401: "No valid credentials (with authentication on): see WWW-Authenticate",
    403: "Forbidden: the address is outside the credential's grants, the request came "
    "from a foreign Origin, or the broker refused it",
    404: "Not found",
    406: "Not acceptable",
    409: "Conflict",
    413: "Body too large",
    412: "Precondition failed",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many messages",
    500: "Internal error",
    501: "Not implemented by the broker",
    502: "Broker error",
    503: "Broker unavailable or the message was not taken: nothing was sent, retry later",
    504: "No answer from the broker in time, or the message's outcome is unknown "
    "(type /problems/in-doubt)",
}


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app raises a problem+json answer."""

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ProblemError)
        return problem_response(error.problem, error.headers)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        title = _TITLES.get(error.status_code, "Error")
        detail = error.detail if isinstance(error.detail, str) else None
        problem = Problem(title=title, status=error.status_code, detail=detail)
        return problem_response(problem, getattr(error, "headers", None))

    async def on_invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        details = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        return problem_response(Problem(title="Invalid request", status=422, detail=details))

    async def on_mapping_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, MappingError)
        problem = Problem(title=error.title, status=error.status, detail=error.detail)
        return problem_response(problem)

    async def on_amqp_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, GatewayAmqpError)
        answer = amqp_problem(error)
        return problem_response(answer.problem, answer.headers)

    async def on_client_gone(request: Request, error: Exception) -> Response:
        # Nobody is left to answer: not an error of ours, and nothing to log.
        return Response(status_code=400)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(MappingError, on_mapping_error)
    app.add_exception_handler(GatewayAmqpError, on_amqp_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
