"""What the view endpoints do: read a finished job's result and render it as a page or an image.

They answer the same problems as `GET /v1/jobs/{id}/result` for a job without a result (409, 404, 410), and
refuse with 413 a result whose page would be larger than `SEQATTR_MAX_EXPORT_BYTES`.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.errors import ExportTooLargeError, InvalidRequestError
from schemas.jobs import Job
from service.job_operations import get_result
from service.job_store import JobStore
from service.views.context_view import estimated_context_size, render_context_html
from service.views.heatmap import sequence_heatmap
from service.views.heatmap_image import ImageFormat, render_image
from service.views.html_view import estimated_size, render_html


def finished_result(
    store: JobStore, job_id: str, owner: str | None, max_bytes: int, fmt: str
) -> tuple[Job, dict[str, Any]]:
    """A finished job and its parsed result; a stored result over `max_bytes` is refused unread."""
    job, stored = get_result(store, job_id, owner)
    if stored.size > max_bytes:
        raise ExportTooLargeError(fmt, stored.size, max_bytes, [], exact=False)
    return job, orjson.loads(stored.read())


def job_page(store: JobStore, job_id: str, owner: str | None, max_bytes: int) -> str:
    """The HTML view of a finished job's result: a heatmap page, or a context-attribution page."""
    job, result = finished_result(store, job_id, owner, max_bytes, "html")
    context = job.kind == "attribute-context"
    estimated = estimated_context_size(result) if context else estimated_size(result)
    if estimated > max_bytes:
        raise ExportTooLargeError("html", estimated, max_bytes, [], exact=False)
    if context:
        return render_context_html(result, job.request, finished_at=job.ended_at)
    return render_html(result, finished_at=job.ended_at)


def image_title(result: dict[str, Any], sequence: int) -> str:
    model = (result.get("model") or {}).get("id", "")
    return f"{result.get('method', '')} on {model}, {result.get('attributed_fn', '')} · sequence {sequence}"


def job_image(
    store: JobStore, job_id: str, owner: str | None, sequence: int, fmt: ImageFormat, max_bytes: int
) -> bytes:
    """One sequence of a finished job's result as a PNG or SVG heatmap; 422 for a sequence it lacks."""
    job, result = finished_result(store, job_id, owner, max_bytes, fmt)
    if job.kind != "attribution":
        raise InvalidRequestError(
            f"job {job_id} is an {job.kind} job: heatmap images show attribution jobs; its view is "
            f"{job.links.view}",
            kind=job.kind,
        )
    sequences = result.get("sequences", [])
    if not 0 <= sequence < len(sequences):
        raise InvalidRequestError(
            f"sequence {sequence} is out of range: the result has {len(sequences)} "
            f"sequence{'s' if len(sequences) != 1 else ''} (0 to {len(sequences) - 1})",
            sequences=len(sequences),
        )
    return render_image(sequence_heatmap(sequences[sequence], sequence), fmt, image_title(result, sequence))
