"""`GET /metrics`: Prometheus text format, for the whole service (see `service.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.problems import problem_responses
from service.auth import get_caller

router = APIRouter(tags=["health"], dependencies=[Depends(get_caller)])


@router.get(
    "/metrics",
    name="metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."},
        **problem_responses(401),
    },
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
