"""`GET /v1/models`, `/v1/methods`, `/v1/step-functions`, `/v1/aggregators`: what can be asked for."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from schemas.catalogue import AggregatorList, MethodList, ModelList, StepFunctionList
from schemas.problems import problem_responses
from service import catalogue
from service.deps import RegistryDep
from service.rate_limit import enforce_rate_limit

router = APIRouter(
    prefix="/v1",
    tags=["catalogue"],
    dependencies=[Depends(enforce_rate_limit)],
    responses=problem_responses(401, 429),
)


@router.get("/models", name="list_models", response_model=ModelList, summary="Served models")
def list_models(registry: RegistryDep) -> ModelList:
    return catalogue.list_models(registry)


@router.get("/methods", name="list_methods", response_model=MethodList, summary="Attribution methods")
def list_methods() -> MethodList:
    return catalogue.list_methods()


@router.get(
    "/step-functions", name="list_step_functions", response_model=StepFunctionList, summary="Step functions"
)
def list_step_functions() -> StepFunctionList:
    return catalogue.list_step_functions()


@router.get(
    "/aggregators", name="list_aggregators", response_model=AggregatorList, summary="Score reductions"
)
def list_aggregators() -> AggregatorList:
    return catalogue.list_aggregators()
