"""Which export format a request asks for: `?format=` wins; else the best match of `Accept` (q-values and
wildcards as RFC 9110 reads them); no `Accept`, or `*/*`, gives JSON; an `Accept` nothing matches is a 406."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from schemas.defaults import MAX_EXPORT_PRECISION
from schemas.errors import NotAcceptableError
from schemas.exports import ExportFormat

_PREFERENCE = list(ExportFormat)
"""Order among formats an `Accept` likes equally (`*/*`, `application/*`): JSON first."""


@dataclass(frozen=True)
class ExportOptions:
    """The format and rounding a result is asked for in."""

    format: ExportFormat
    precision: int | None


def _ranges(accept: str) -> list[tuple[str, float]]:
    """(media range, q) of each entry, lower-cased; a malformed q counts as 0."""
    out = []
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        out.append((media.lower(), q))
    return out


def _specificity(media_range: str, media_type: str) -> int | None:
    """3 for the exact type, 2 for `type/*`, 1 for `*/*`, None when the range does not cover it."""
    if media_range == media_type:
        return 3
    if media_range == "*/*":
        return 1
    kind, _, sub = media_range.partition("/")
    if sub == "*" and media_type.startswith(kind + "/"):
        return 2
    return None


def negotiate(accept: str | None) -> ExportFormat:
    """The format `Accept` prefers; JSON when it is absent or empty; NotAcceptableError (406) when it rules
    every format out."""
    if accept is None or not accept.strip():
        return ExportFormat.JSON
    ranges = _ranges(accept)
    best: tuple[float, int, int, ExportFormat] | None = None
    for rank, fmt in enumerate(_PREFERENCE):
        # The most specific range that covers a format decides its q ("text/csv;q=0, */*" refuses CSV).
        matches = [(spec, q) for media, q in ranges if (spec := _specificity(media, fmt.media_type))]
        if not matches:
            continue
        spec, q = max(matches, key=lambda m: m[0])
        if q <= 0:
            continue
        candidate = (q, spec, -rank, fmt)
        if best is None or candidate[:3] > best[:3]:
            best = candidate
    if best is None:
        raise NotAcceptableError(accept)
    return best[3]


_FORMAT_HELP = "Export format; wins over `Accept`. " + " ".join(
    f"`{fmt.value}` (`{fmt.media_type}`): {fmt.description}" for fmt in ExportFormat
)


async def export_options(
    request: Request,
    fmt: Annotated[ExportFormat | None, Query(alias="format", description=_FORMAT_HELP)] = None,
    precision: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_EXPORT_PRECISION,
            description="Round every score to this many decimals (json, csv and inseq): smaller exports.",
        ),
    ] = None,
) -> ExportOptions:
    """The export asked for: `?format=`, else negotiated from `Accept`."""
    chosen = fmt if fmt is not None else negotiate(request.headers.get("accept"))
    return ExportOptions(chosen, precision)


ExportOptionsDep = Annotated[ExportOptions, Depends(export_options)]
"""Route parameter: the export format and precision of the request (406 for an `Accept` nothing matches)."""
