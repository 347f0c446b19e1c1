"""A context-attribution job's result: its JSON as stored, or its text rendering; no other format."""

from __future__ import annotations

import orjson
from fastapi.responses import Response, StreamingResponse

from schemas.defaults import RESULT_CHUNK_BYTES
from schemas.errors import ExportTooLargeError, InvalidRequestError
from schemas.exports import ATTRIBUTION_FORMATS, CONTEXT_FORMATS, ExportFormat
from service.job_store import StoredResult


def context_export_response(stored: StoredResult, fmt: ExportFormat, *, max_bytes: int) -> Response:
    """The stored `ContextAttributionResult` as JSON (streamed as stored), or its `text` rendering.

    Raises:
        InvalidRequestError: 422, a format of attribution results only (csv, inseq).
        ExportTooLargeError: 413, a stored result over `max_bytes`.
    """
    if fmt not in CONTEXT_FORMATS:
        raise InvalidRequestError(
            f"job {stored.job_id} is an attribute-context job: its result is served as "
            f"{' or '.join(f.value for f in CONTEXT_FORMATS)}, not {fmt.value}",
            available=[f.value for f in CONTEXT_FORMATS],
        )
    if stored.size > max_bytes:
        # The text is shorter than the JSON it is kept in: this is an upper bound for it.
        raise ExportTooLargeError(fmt.value, stored.size, max_bytes, [], exact=fmt is ExportFormat.JSON)
    headers = {"Vary": "Accept"}
    if fmt is ExportFormat.JSON:
        headers["Content-Length"] = str(stored.size)
        return StreamingResponse(
            stored.chunks(RESULT_CHUNK_BYTES), media_type=fmt.media_type, headers=headers
        )
    text = str(orjson.loads(stored.read())["text"])
    return Response(text, media_type="text/plain; charset=utf-8", headers=headers)


def refuse_text(fmt: ExportFormat) -> None:
    """422 for the text format asked of an attribution result (it renders context-attribution results)."""
    if fmt not in ATTRIBUTION_FORMATS:
        raise InvalidRequestError(
            f"format {fmt.value} renders context-attribution results; an attribution result is served as "
            f"{', '.join(f.value for f in ATTRIBUTION_FORMATS)}",
            available=[f.value for f in ATTRIBUTION_FORMATS],
        )
