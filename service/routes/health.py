"""`GET /healthz` (the process is up) and `GET /readyz` (it can take jobs)."""

from __future__ import annotations

from fastapi import APIRouter

from schemas.health import Health, Readiness
from schemas.problems import problem_responses
from service.deps import JobStoreDep
from service.health import check_ready

router = APIRouter(tags=["health"])


@router.get("/healthz", name="healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    return Health()


@router.get(
    "/readyz", name="readyz", response_model=Readiness, summary="Readiness", responses=problem_responses(503)
)
def readyz(store: JobStoreDep) -> Readiness:
    return check_ready(store)
