"""`export_response`: a result, stored or just computed, as the HTTP response of the asked format, streamed,
after its size has been checked against the limit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from schemas.defaults import EXPORT_CHUNK_BYTES, RESULT_CHUNK_BYTES, SUGGESTED_PRECISION
from schemas.errors import ExportTooLargeError, GranularExportError
from schemas.exports import ExportFormat
from service.exports.common import chunked, is_granular
from service.exports.context_export import refuse_text
from service.exports.csv_export import estimate_csv, render_csv
from service.exports.inseq_export import estimate_inseq, render_inseq
from service.exports.json_export import estimate_json, render_json
from service.job_store import StoredResult

_STORED_BYTES_PER_SCORE = 20
"""A score as orjson stores it at full precision, comma included ('0.22714553773403168,'): how a stored
result's size is turned into a score count when it is too large to be parsed for a better estimate."""

_SMALLEST_BYTES_PER_SCORE = 4
"""The fewest bytes any format spends on a score (json with precision=0: '0.0,')."""

_INSEQ_BYTES_PER_SCORE = 16 / 3
"""A float32 in base64."""

_CSV_ROW_BYTES = 30
"""A CSV row without its score: sequence, side, position, token, step, generated token, separators."""

Candidate = tuple[ExportFormat, int | None]


def _query(fmt: ExportFormat, precision: int | None) -> str:
    return f"format={fmt.value}" + (f"&precision={precision}" if precision is not None else "")


def _candidates(chosen: Candidate, granular: bool) -> list[Candidate]:
    """The other ways to ask for the result that may be smaller than `chosen`."""
    _, precision = chosen
    roundings = (
        {precision, SUGGESTED_PRECISION}
        if precision is None or precision > SUGGESTED_PRECISION
        else {precision}
    )
    out: list[Candidate] = [(ExportFormat.INSEQ, None)]
    for p in sorted(roundings, key=lambda p: -1 if p is None else p):
        out.append((ExportFormat.JSON, p))
        if not granular:
            out.append((ExportFormat.CSV, p))
    return [c for c in out if c != chosen]


def _too_large(
    chosen: Candidate, estimated: int, limit: int, sizes: Mapping[Candidate, int], exact: bool
) -> ExportTooLargeError:
    fitting: list[dict[str, Any]] = [
        {"format": f.value, "precision": p, "query": _query(f, p), "estimated_bytes": n}
        for (f, p), n in sorted(sizes.items(), key=lambda item: item[1])
        if n <= limit
    ]
    fmt, precision = chosen
    label = fmt.value if precision is None else f"{fmt.value} with precision={precision}"
    return ExportTooLargeError(label, estimated, limit, fitting, exact)


def _estimate(result: Mapping[str, Any], candidate: Candidate, request: Mapping[str, Any] | None) -> int:
    fmt, precision = candidate
    if fmt is ExportFormat.CSV:
        return estimate_csv(result, precision)
    if fmt is ExportFormat.INSEQ:
        return estimate_inseq(result, request)
    return estimate_json(result, precision)


def _rough_size(stored_size: int, candidate: Candidate) -> int:
    """A format's size guessed from the stored JSON's size alone (for results too large to parse)."""
    fmt, precision = candidate
    scores = stored_size / _STORED_BYTES_PER_SCORE
    if fmt is ExportFormat.INSEQ:
        return int(scores * _INSEQ_BYTES_PER_SCORE)
    if fmt is ExportFormat.CSV:
        return int(
            scores * (_CSV_ROW_BYTES + (precision + 4 if precision is not None else _STORED_BYTES_PER_SCORE))
        )
    return stored_size if precision is None else int(scores * (precision + 4))


def _check_stored(stored: StoredResult, chosen: Candidate, max_bytes: int) -> bool:
    """Whether the stored bytes can go out as they are (the JSON asked for, within the limit). Refuses at
    once a stored result so large that no format of it could fit: it is then never parsed."""
    if chosen == (ExportFormat.JSON, None) and stored.size <= max_bytes:
        return True
    if stored.size / _STORED_BYTES_PER_SCORE * _SMALLEST_BYTES_PER_SCORE > max_bytes:
        sizes = {c: _rough_size(stored.size, c) for c in _candidates(chosen, granular=True)}
        exact = chosen == (ExportFormat.JSON, None)
        raise _too_large(chosen, _rough_size(stored.size, chosen), max_bytes, sizes, exact)
    return False


def _body(result: Mapping[str, Any], chosen: Candidate, request: Mapping[str, Any] | None) -> Iterator[bytes]:
    fmt, precision = chosen
    if fmt is ExportFormat.CSV:
        return render_csv(result, precision, EXPORT_CHUNK_BYTES)
    if fmt is ExportFormat.INSEQ:
        return chunked(render_inseq(result, request, precision), EXPORT_CHUNK_BYTES)
    return chunked(render_json(result, precision), EXPORT_CHUNK_BYTES)


_SUFFIXES = {ExportFormat.JSON: ".json", ExportFormat.CSV: ".csv", ExportFormat.INSEQ: ".inseq.json"}


def export_response(
    source: Mapping[str, Any] | StoredResult,
    fmt: ExportFormat,
    *,
    max_bytes: int,
    precision: int | None = None,
    request: Mapping[str, Any] | None = None,
) -> StreamingResponse:
    """The result in format `fmt`, streamed; raises the problem to answer instead.

    Args:
        source: a result dict (`schemas.results.AttributionResult`), or a job's stored result, whose bytes
            stream straight from Redis as JSON and are read (and parsed) only for the other formats.
        fmt: the format (`ExportOptionsDep` resolves it from `?format=` and `Accept`).
        max_bytes: the most bytes the export may take (`SEQATTR_MAX_EXPORT_BYTES`).
        precision: round every score to this many decimals.
        request: the job's validated request, for what the inseq file's `info` records (input texts...).

    Raises:
        ExportTooLargeError: 413, naming the smaller formats.
        GranularExportError: 422, a granular result asked for as CSV.
        InvalidRequestError: 422, the text format (context-attribution results only).
        JobExpiredError: 410, the stored result disappeared before it was read.
    """
    refuse_text(fmt)
    chosen: Candidate = (fmt, precision)
    headers = {"Vary": "Accept"}
    stored_size: int | None = None
    if isinstance(source, StoredResult):
        name = source.job_id
        if _check_stored(source, chosen, max_bytes):
            headers["Content-Length"] = str(source.size)
            return StreamingResponse(
                source.chunks(RESULT_CHUNK_BYTES), media_type=fmt.media_type, headers=headers
            )
        # Converted (or over the limit as it is, and parsed to say what would fit).
        result: Mapping[str, Any] = orjson.loads(source.read())
        stored_size = source.size
    else:
        result = source
        name = str(result.get("id", "result"))
    granular = is_granular(result)
    if fmt is ExportFormat.CSV and granular:
        raise GranularExportError(fmt, name)

    def estimate(candidate: Candidate) -> int:
        if candidate == (ExportFormat.JSON, None) and stored_size is not None:
            return stored_size
        return _estimate(result, candidate, request)

    estimated = estimate(chosen)
    if estimated > max_bytes:
        sizes = {c: estimate(c) for c in _candidates(chosen, granular)}
        exact = fmt is ExportFormat.INSEQ or (stored_size is not None and chosen == (ExportFormat.JSON, None))
        raise _too_large(chosen, estimated, max_bytes, sizes, exact)
    if fmt is not ExportFormat.JSON:
        headers["Content-Disposition"] = f'attachment; filename="{name}{_SUFFIXES[fmt]}"'
    return StreamingResponse(_body(result, chosen, request), media_type=fmt.media_type, headers=headers)
