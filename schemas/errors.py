"""The one error hierarchy. Each error has a stable problem `type`, a `title` and an HTTP `status`;
the API turns any of them into RFC 9457 problem+json, and workers store them as a failed job's `error`."""

from __future__ import annotations

import re
from typing import Any

from schemas.exports import ExportFormat

PROBLEM_BASE = "https://seqattr.dev/problems/"
"""Prefix of every problem `type` URI."""


class SeqattrError(Exception):
    """Base error: subclasses set `slug`, `title` and `status` as class-level facts."""

    slug = "internal-error"
    title = "Internal error"
    status = 500

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json body (without `instance` unless given)."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class InvalidRequestError(SeqattrError):
    """The request is well-formed JSON but cannot be run as asked (e.g. too many tokens)."""

    slug = "invalid-request"
    title = "Invalid request"
    status = 422


class UnknownModelError(SeqattrError):
    slug = "unknown-model"
    title = "Unknown model"
    status = 404

    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(f"model {model!r} is not served here", available=sorted(available))


class ModelLoadError(SeqattrError):
    """The worker could not load a registered model (missing files, bad config)."""

    slug = "model-load-failed"
    title = "Model could not be loaded"
    status = 500


# Errors of the HTTP layer and the job system. The API turns each into problem+json; the ones a job can end
# with are stored in its record as `error`.


class MalformedBodyError(SeqattrError):
    """The body is not JSON, or not sent as `application/json`."""

    slug = "malformed-body"
    title = "Malformed request body"
    status = 400


class RequestValidationFailed(SeqattrError):
    """The body or parameters do not match the schema; `errors` names each location."""

    slug = "validation-error"
    title = "Invalid request"
    status = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        count = len(errors)
        super().__init__(f"{count} validation error{'s' if count != 1 else ''}", errors=errors)


class RouteNotFoundError(SeqattrError):
    slug = "not-found"
    title = "Not found"
    status = 404


class MethodNotAllowedError(SeqattrError):
    slug = "method-not-allowed"
    title = "Method not allowed"
    status = 405


class BodyTooLargeError(SeqattrError):
    slug = "body-too-large"
    title = "Request body too large"
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds {limit} bytes", max_bytes=limit)


class HTTPProblem(SeqattrError):
    """Any other HTTP error raised by the framework, kept with its own status and title."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class UnauthorizedError(SeqattrError):
    """No API key, or not a configured one (when keys are configured)."""

    slug = "unauthorized"
    title = "Unauthorized"
    status = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": 'Bearer realm="seqattr"'}


class RateLimitedError(SeqattrError):
    """The caller sent more requests than its rate limit allows; `Retry-After` says when to come back."""

    slug = "rate-limited"
    title = "Too many requests"
    status = 429

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(f"more than {limit} requests; retry after {retry_after} s", limit=limit)
        self.headers = {"Retry-After": str(retry_after)}


class QueueFullError(SeqattrError):
    """A model's queue holds as many jobs as it may: the service is overloaded for that model."""

    slug = "queue-full"
    title = "Queue full"
    status = 503

    def __init__(self, model: str, limit: int, retry_after: int) -> None:
        super().__init__(
            f"model {model!r} already has {limit} queued jobs; retry after {retry_after} s",
            max_queued_jobs=limit,
        )
        self.headers = {"Retry-After": str(retry_after)}


class CallbackNotAllowedError(SeqattrError):
    """A submitted `callback_url` whose host the service may not call (`SEQATTR_CALLBACK_ALLOWED_HOSTS`)."""

    slug = "callback-not-allowed"
    title = "Callback URL not allowed"
    status = 422

    def __init__(self, host: str, allowed: list[str]) -> None:
        if allowed:
            detail = f"callback host {host!r} is not in SEQATTR_CALLBACK_ALLOWED_HOSTS: {', '.join(allowed)}"
        else:
            detail = "callbacks are off: SEQATTR_CALLBACK_ALLOWED_HOSTS is empty on this service"
        super().__init__(detail, setting="SEQATTR_CALLBACK_ALLOWED_HOSTS")


class UnknownJobError(SeqattrError):
    slug = "unknown-job"
    title = "Unknown job"
    status = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")


class JobExpiredError(SeqattrError):
    """The job existed but its record and result are past their retention (or were deleted)."""

    slug = "job-expired"
    title = "Job expired"
    status = 410

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is past its retention; its record and result were removed")


class JobNotReadyError(SeqattrError):
    """The result was asked for before the job finished; `job_status` says where it is."""

    slug = "job-not-ready"
    title = "Result not ready"
    status = 409

    def __init__(self, job_id: str, job_status: str) -> None:
        super().__init__(f"job {job_id!r} is {job_status}; poll GET /v1/jobs/{job_id}", job_status=job_status)


class JobFailedError(SeqattrError):
    """The result was asked for but the job failed or was canceled; `error` is the job's own problem."""

    slug = "job-failed"
    title = "Job did not finish"
    status = 409

    def __init__(self, job_id: str, job_status: str, error: dict[str, Any] | None) -> None:
        detail = f"job {job_id!r} is {job_status} and has no result"
        super().__init__(detail, job_status=job_status, error=error)


class IdempotencyKeyReusedError(SeqattrError):
    slug = "idempotency-key-reused"
    title = "Idempotency key reused"
    status = 422

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used for job {job_id!r} with a different body", job_id=job_id
        )


class ServiceNotReadyError(SeqattrError):
    """Redis is unreachable or no worker is alive; clients should retry after `retry_after` seconds."""

    slug = "not-ready"
    title = "Service not ready"
    status = 503

    def __init__(self, detail: str, retry_after: int, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers = {"Retry-After": str(retry_after)}


class OutOfMemoryError(SeqattrError):
    """The job needed more memory than the worker has (CPU or GPU); the worker freed it and goes on."""

    slug = "out-of-memory"
    title = "Out of memory"
    status = 507

    def __init__(self, what: str) -> None:
        super().__init__(
            f"the job ran out of memory ({what}); send fewer inputs or shorter texts, fewer method steps, or "
            "a smaller aggregation (granular output holds every hidden unit)"
        )


class NonFiniteScoresError(SeqattrError):
    """The engine produced NaN or infinite scores where scores are defined (numeric overflow)."""

    slug = "non-finite-scores"
    title = "Scores are not finite"
    status = 500


class CostLimitError(SeqattrError):
    """The job would cost more than the worker allows; `cost` and `limit` are in token-steps."""

    slug = "cost-limit"
    title = "Job too costly"
    status = 422

    def __init__(self, cost: int, limit: int) -> None:
        super().__init__(
            f"the job would cost {cost} token-steps (attributed steps x sequence length x method copies, "
            f"summed over inputs); at most {limit} are allowed: send fewer or shorter inputs, or fewer steps",
            cost=cost,
            limit=limit,
        )


class JobTimeoutError(SeqattrError):
    slug = "job-timeout"
    title = "Job timed out"
    status = 500

    def __init__(self, timeout_s: float | None) -> None:
        super().__init__(f"the job ran longer than its limit of {timeout_s} s and was stopped")


class WorkerLostError(SeqattrError):
    """The worker running the job stopped sending heartbeats (killed, out of memory, host lost)."""

    slug = "worker-lost"
    title = "Worker lost"
    status = 500

    def __init__(self) -> None:
        super().__init__("the worker running this job stopped before the job ended; submit it again")


class AggregationError(SeqattrError):
    """An aggregation step does not fit the scores it is given (a span past the end, no unit dimension left,
    a paired job of another shape)."""

    slug = "invalid-aggregation"
    title = "Invalid aggregation"
    status = 422


class ScoresNotKeptError(SeqattrError):
    """A re-aggregation needs scores the job did not keep; `keep_with` names the request field that keeps
    them."""

    slug = "scores-not-kept"
    title = "Scores not kept"
    status = 409

    def __init__(self, detail: str, keep_with: str) -> None:
        super().__init__(detail, keep_with=keep_with)


class NotAcceptableError(SeqattrError):
    """`Accept` names no media type a result is served as."""

    slug = "not-acceptable"
    title = "Not acceptable"
    status = 406

    def __init__(self, accept: str) -> None:
        available = [fmt.media_type for fmt in ExportFormat]
        names = "|".join(fmt.value for fmt in ExportFormat)
        super().__init__(
            f"no format of the result matches Accept: {accept[:200]!r}; ask for one of "
            f"{', '.join(available)} (or use ?format={names})",
            available=available,
        )


class GranularExportError(SeqattrError):
    """A granular result (a list of unreduced scores per cell) has no place in a one-score-per-row format."""

    slug = "granular-export"
    title = "Granular result not exportable in this format"
    status = 422

    def __init__(self, fmt: ExportFormat, job_id: str) -> None:
        super().__init__(
            f"the result is granular (each cell is a list of unreduced scores) and {fmt.value} holds one "
            "score per row: use format=json or format=inseq, or reduce it first with "
            f"POST /v1/jobs/{job_id}/aggregate",
            format=fmt.value,
        )


class ExportTooLargeError(SeqattrError):
    """The export in the chosen format would be larger than the service allows."""

    slug = "export-too-large"
    title = "Export too large"
    status = 413

    def __init__(
        self, fmt: str, estimated: int, limit: int, alternatives: list[dict[str, Any]], exact: bool
    ) -> None:
        size = f"{_mb(estimated)}" if exact else f"about {_mb(estimated)}"
        detail = f"the result as {fmt} is {size}, over the limit of {_mb(limit)} (SEQATTR_MAX_EXPORT_BYTES)"
        if alternatives:
            options = "; ".join(f"{a['query']}: about {_mb(a['estimated_bytes'])}" for a in alternatives)
            detail += f"; smaller: {options}"
        else:
            detail += "; no format fits: ask for fewer inputs or a smaller aggregation"
        super().__init__(
            detail, format=fmt, estimated_bytes=estimated, max_bytes=limit, alternatives=alternatives
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


class UnknownBatchError(SeqattrError):
    slug = "unknown-batch"
    title = "Unknown batch"
    status = 404

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch with id {batch_id!r}")


class BatchFileError(SeqattrError):
    """An uploaded batch file (JSONL or CSV) has a line that is not an item; `line` is its 1-based number."""

    slug = "invalid-batch-file"
    title = "Invalid batch file"
    status = 422

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}", line=line)
