"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from gateway.problems import ProblemError, problem_responses
from gateway.state import GatewayDep

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: the AMQP side is connected",
    responses=problem_responses(503),
)
async def readyz(state: GatewayDep) -> Health:
    if not state.amqp.connected:
        raise ProblemError(503, "Broker unavailable", "the AMQP connection is not open")
    return Health(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
        **problem_responses(401),
    },
)
async def metrics(request: Request, state: GatewayDep) -> Response:
    """Open to all, unless --protect-metrics: then any valid credential may read it."""
    if state.settings.protect_metrics:
        await state.auth.authenticate(request)
    state.metrics.amqp_connected.set(1 if state.amqp.connected else 0)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
