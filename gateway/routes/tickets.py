"""``POST /auth/tickets``: a single-use ticket for a browser to open a stream with.

``new WebSocket()`` and ``EventSource`` cannot send an ``X-API-Key`` or
``Authorization`` header, and a long-lived key in a URL would end up in logs. So a page
asks for a ticket with its key or token in a header, and opens its stream at once with
``?ticket=``: the ticket stands for the same credential, opens one stream, and expires
after 30 s (`gateway.auth.TICKET_LIFETIME`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.auth import SECURED
from gateway.problems import problem_responses
from gateway.state import GatewayDep

router = APIRouter(tags=["authentication"])


class Ticket(BaseModel):
    ticket: str = Field(description="add it to a stream's URL as ?ticket=; it works once")
    expires_in: float = Field(description="seconds it stays valid")
    name: str = Field(description="whom it stands for: the key's or the token's name")


@router.post(
    "/auth/tickets",
    status_code=201,
    summary="Get a single-use ticket to open a WebSocket or SSE stream with",
    response_model=Ticket,
    responses=problem_responses(401, 403),
    openapi_extra={"security": SECURED},
)
async def issue_ticket(request: Request, state: GatewayDep) -> Ticket:
    credential = await state.auth.authenticate(request)
    ticket, lifetime = state.auth.tickets.issue(credential, time.time())
    return Ticket(ticket=ticket, expires_in=round(lifetime, 3), name=credential.name)
