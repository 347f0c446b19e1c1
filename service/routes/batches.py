"""`/v1/batches`: submit a batch (inline items or an uploaded JSONL/CSV file), read, list, cancel, results."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from schemas.attribution import AttributionRequest, CallbackUrl
from schemas.batches import Batch, BatchPage, BatchRequest, BatchTemplate, default_chunk_size, template_of
from schemas.defaults import (
    EXPORT_CHUNK_BYTES,
    LIST_DEFAULT_LIMIT,
    LIST_MAX_LIMIT,
    MAX_INPUTS_PER_REQUEST,
)
from schemas.errors import InvalidRequestError, MalformedBodyError, RequestValidationFailed
from schemas.problems import (
    ValidationProblem,
    problem_responses,
    submit_responses,
)
from service import batches
from service.callbacks import check_submitted_callback
from service.deps import JobStoreDep, RegistryDep, SettingsDep
from service.rate_limit import RateLimitedCallerDep

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_CHUNK_SIZE = TypeAdapter(Annotated[int, Field(ge=1, le=MAX_INPUTS_PER_REQUEST)])
_CALLBACK_URL: TypeAdapter[str] = TypeAdapter(CallbackUrl)
"""A form's `chunk_size` (text), checked as the JSON body's."""

BatchId = Annotated[str, Path(description="The batch id from `POST /v1/batches`.")]


def _body_schema() -> dict[str, Any]:
    """`BatchRequest`'s JSON schema for the document: the route reads its body itself (JSON or a form), so
    FastAPI adds no body model to the components. Models it shares with `AttributionRequest` (a component of
    `POST /v1/attributions`) are referenced there; the others are written in place."""
    schema = BatchRequest.model_json_schema()
    defs = schema.pop("$defs", {})
    shared = set(AttributionRequest.model_json_schema().get("$defs", {}))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            name = str(node.get("$ref", "")).removeprefix("#/$defs/")
            if name in shared:
                return {**node, "$ref": f"#/components/schemas/{name}"}
            if name in defs:
                return walk(defs[name])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    return cast(dict[str, Any], walk(schema))


def _validation_failed(exc: ValidationError, *loc: str) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": (*loc, *e["loc"])} for e in exc.errors(include_input=False)])


Parsed = tuple[dict[str, Any], list[Any], int | None, tuple[str, ...], str | None]
"""A batch body: template, items, chunk size, where template errors are located, callback URL."""


async def _parse(request: Request) -> Parsed:
    """The parts of a JSON or multipart batch body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        input_field = form.get("input_field")
        if not isinstance(upload, UploadFile) or not isinstance(input_field, str) or not input_field:
            raise RequestValidationFailed(
                [
                    {
                        "loc": ["body", "file"],
                        "msg": "a file and an input_field are required",
                        "type": "missing",
                    }
                ]
            )
        generated_field = form.get("generated_field")
        raw_template = form.get("request") or "{}"
        try:
            template = BatchTemplate.model_validate_json(str(raw_template), strict=True)
        except ValidationError as exc:
            raise _validation_failed(exc, "body", "request") from None
        items = batches.parse_file(
            await upload.read(),
            upload.filename or "",
            input_field,
            generated_field if isinstance(generated_field, str) and generated_field else None,
        )
        raw_size = form.get("chunk_size")
        try:
            chunk_size = _CHUNK_SIZE.validate_python(raw_size) if raw_size else None
        except ValidationError as exc:
            raise _validation_failed(exc, "body", "chunk_size") from None
        raw_callback = form.get("callback_url")
        callback = None
        if isinstance(raw_callback, str) and raw_callback:
            try:
                callback = _CALLBACK_URL.validate_python(raw_callback)
            except ValidationError as exc:
                raise _validation_failed(exc, "body", "callback_url") from None
        return template_of(template), items, chunk_size, ("body", "request"), callback
    if not content_type.startswith("application/json"):
        raise MalformedBodyError("send the batch as application/json or multipart/form-data")
    body = await request.body()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"the body is not valid JSON: {exc}") from None
    try:
        # Strict: a JSON body's types are as documented (no "1" for 1, no 0 for false).
        batch = BatchRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise _validation_failed(exc, "body") from None
    return template_of(batch), list(batch.items), batch.chunk_size, ("body",), batch.callback_url


@router.post(
    "",
    name="create_batch",
    status_code=202,
    response_model=Batch,
    summary="Submit a batch: a request template and many items, run as chunk jobs on every worker",
    description="The body is a `BatchRequest` as JSON, or `multipart/form-data` with a JSONL or CSV `file`, "
    "the `input_field` (and `generated_field`) naming its columns, and the template as a JSON `request` "
    "field. A bad line of the file is a 422 whose `line` names it. The form's fields: `file` (JSONL, or CSV "
    "when its name ends in .csv), `input_field`, "
    "`generated_field` (optional), `request` (the template as JSON, optional), `chunk_size` (optional).",
    # Only the JSON body is declared: for an operation with two body media types, openapi-python-client
    # 0.29.1 generates a module that does not import (tests/service/test_generated_client.py).
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _body_schema()},
            },
        }
    },
    responses=submit_responses(
        s422="An invalid body (`errors` lists each location), or a bad line in the file.",
        s202="Accepted; follow the batch at the `Location` header.",
    ),
)
async def create_batch(
    request: Request,
    caller: RateLimitedCallerDep,
    store: JobStoreDep,
    registry: RegistryDep,
    settings: SettingsDep,
) -> Response:
    template, items, chunk_size, loc, callback_url = await _parse(request)
    check_submitted_callback(callback_url, settings)
    batch = await run_in_threadpool(
        batches.submit_batch,
        store,
        registry,
        template,
        items,
        chunk_size or default_chunk_size(template),
        caller,
        settings.max_queued_jobs,
        loc,
        callback_url,
    )
    return Response(
        batch.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": batch.links.self},
    )


@router.get(
    "",
    name="list_batches",
    response_model=BatchPage,
    summary="Recent batches, newest first",
    responses=problem_responses(401, 429, 503, s422=ValidationProblem),
)
def list_batches(
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    limit: Annotated[int, Query(ge=1, le=LIST_MAX_LIMIT)] = LIST_DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> BatchPage:
    return batches.list_batches(store, limit, cursor, caller)


@router.get(
    "/{batch_id}",
    name="get_batch",
    response_model=Batch,
    summary="A batch's progress: items by state, throughput, time left",
    responses=problem_responses(401, 429, 404, 503, s422=ValidationProblem),
)
def get_batch(batch_id: BatchId, store: JobStoreDep, caller: RateLimitedCallerDep) -> Batch:
    return batches.get_batch(store, batch_id, caller)


@router.get(
    "/{batch_id}/results",
    name="get_batch_results",
    summary="The batch's item results, in input order, as JSONL or long CSV, while it runs and after",
    description="JSONL: one `{index, status, result | error}` line per item; `result` is the chunk job's "
    "result with that item's sequence only. `partial=prefix` stops at the first item still queued or "
    "running; `partial=all` skips those. CSV: the long format of `GET /v1/jobs/{id}/result?format=csv` with "
    "the item index as `sequence`; failed items have no rows.",
    response_class=Response,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}, "description": "The item results."},
        **problem_responses(401, 429, 404, 503, s422=ValidationProblem),
    },
)
def get_batch_results(
    batch_id: BatchId,
    store: JobStoreDep,
    caller: RateLimitedCallerDep,
    format: Annotated[Literal["jsonl", "csv"], Query(description="JSON lines, or long CSV.")] = "jsonl",
    partial: Annotated[
        Literal["prefix", "all"],
        Query(description="While running: the finished prefix so far, or every ended item."),
    ] = "prefix",
) -> Response:
    if format == "csv":
        template = batches.get_batch(store, batch_id, caller).template
        if template.get("aggregation", {}).get("granular"):
            raise InvalidRequestError("the batch's results are granular: ask for format=jsonl")
    items = batches.item_results(store, batch_id, caller, partial)
    if format == "csv":
        return StreamingResponse(batches.render_csv(items, EXPORT_CHUNK_BYTES), media_type="text/csv")
    return StreamingResponse(batches.render_jsonl(items), media_type="application/x-ndjson")


@router.delete(
    "/{batch_id}",
    name="delete_batch",
    status_code=202,
    response_model=Batch,
    summary="Cancel a batch's chunks that have not started, or delete an ended batch",
    responses={
        202: {"description": "The batch was running; its queued chunks are canceled."},
        204: {"description": "The batch had ended; it and its chunk jobs are deleted."},
        **problem_responses(401, 429, 404, 503, s422=ValidationProblem),
    },
)
def delete_batch(batch_id: BatchId, store: JobStoreDep, caller: RateLimitedCallerDep) -> Batch | Response:
    batch = batches.delete_batch(store, batch_id, caller)
    return batch if batch is not None else Response(status_code=204)
