"""One place that turns every error into an RFC 9457 problem+json response."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.defaults import READYZ_RETRY_AFTER_S
from schemas.errors import (
    HTTPProblem,
    MalformedBodyError,
    MethodNotAllowedError,
    RequestValidationFailed,
    RouteNotFoundError,
    SeqattrError,
    ServiceNotReadyError,
)
from schemas.problems import PROBLEM_MEDIA_TYPE

logger = logging.getLogger(__name__)


def problem_response(
    error: SeqattrError, instance: str | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The problem+json response for an error; `instance` is the request path."""
    merged = {**getattr(error, "headers", {}), **(headers or {})}
    return JSONResponse(
        error.to_problem(instance=instance),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=merged,
    )


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error without its `input` (it may echo a whole text) and with a plainer message."""
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    kind = error.get("type", "value_error")
    msg = str(error.get("msg", ""))
    if kind == "extra_forbidden" and loc:
        msg = f"unknown field {loc[-1]!r}"
    elif kind == "missing" and loc == ["body"]:
        msg = "a JSON body is required"
    msg = msg.removeprefix("Value error, ")
    return {"loc": loc, "msg": msg, "type": kind}


def validation_error(exc: RequestValidationError) -> SeqattrError:
    """400 for a body that is not JSON at all, else 422 naming every invalid location."""
    errors = list(exc.errors())
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            position = error.get("loc", ("body", "?"))[-1]
            return MalformedBodyError(f"the body is not valid JSON: {reason} (at character {position})")
    # FastAPI leaves a body that was not sent as JSON as raw bytes, which then fails as "not an object".
    if isinstance(exc.body, bytes | bytearray) and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return MalformedBodyError("the body must be JSON sent with 'Content-Type: application/json'")
    return RequestValidationFailed([_clean(e) for e in errors])


def _phrase(status: int) -> str:
    """The reason phrase of a status code ("Error" for a code Python does not know)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document gives the request's path (whichever routes serve them)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {verb.upper() for verb in operations}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers: ours, validation, framework HTTP errors, and anything unexpected."""

    @app.exception_handler(SeqattrError)
    async def _seqattr_error(request: Request, exc: SeqattrError) -> JSONResponse:
        if exc.status >= 500:
            logger.error("%s %s: %s", request.method, request.url.path, exc.detail)
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(validation_error(exc), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: SeqattrError
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            error = RouteNotFoundError(f"no resource at {request.url.path}")
        elif exc.status_code == 405:
            error = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}")
            # The framework lists the methods of the first route whose path matches; a resource can be
            # served by several routes (GET and DELETE /v1/jobs/{id}).
            headers["Allow"] = ", ".join(_allowed_methods(request))
        elif exc.status_code == 400:
            # The framework could not read the body at all (e.g. not UTF-8).
            error = MalformedBodyError(f"the body could not be read as JSON text: {exc.detail}")
        else:
            error = HTTPProblem(exc.status_code, _phrase(exc.status_code), str(exc.detail))
        return problem_response(error, request.url.path, headers)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        logger.error("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
        error = ServiceNotReadyError("the job store (Redis) is unreachable", READYZ_RETRY_AFTER_S)
        return problem_response(error, request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        error = SeqattrError("an unexpected error occurred; it has been logged")
        return problem_response(error, request.url.path)
