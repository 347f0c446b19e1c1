"""`/ui`: the dashboard, static files served by the API itself (no build step, nothing fetched elsewhere).

The page itself is public (it holds no data); everything it shows comes from `/v1` calls, which need the API
key when keys are configured.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi import Path as PathParam
from starlette.exceptions import HTTPException

from service.views.html_view import CONTENT_SECURITY_POLICY as VIEW_POLICY

router = APIRouter(tags=["ui"], include_in_schema=False)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
"""The dashboard's files (shipped as package data)."""

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""The file kinds served, by suffix; anything else under `service/ui/` stays private."""

CACHE_CONTROL = "no-cache"
"""Browsers keep the files but revalidate them (cheap, by ETag), so a new release shows at once."""


def _view_sources(directive: str) -> str:
    """What the heatmap view's own policy allows for `directive`: its inline style and script, by hash.

    The dashboard shows the view in a sandboxed `<iframe srcdoc>`, and a srcdoc document inherits this page's
    policy: allowing exactly the view's hashes keeps the dashboard free of 'unsafe-inline'.
    """
    for part in VIEW_POLICY.split(";"):
        name, _, sources = part.strip().partition(" ")
        if name == directive:
            return " ".join(source for source in sources.split() if source.startswith("'sha256-"))
    return ""


CONTENT_SECURITY_POLICY = (
    f"default-src 'self'; script-src 'self' {_view_sources('script-src')}; "
    f"style-src 'self' {_view_sources('style-src')}; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Content-Security-Policy of the dashboard's HTML: nothing is loaded from, or sent to, another origin."""


@dataclass(frozen=True)
class Asset:
    """One served file: its bytes, media type and strong ETag."""

    body: bytes
    media_type: str
    etag: str


@cache
def _asset(name: str) -> Asset | None:
    """The file `name` of the dashboard folder, read once; None when there is no such servable file."""
    path = UI_DIR / name
    # Only plain names listed in the folder: no path can leave it.
    if "/" in name or "\\" in name or path.suffix not in MEDIA_TYPES or not path.is_file():
        return None
    body = path.read_bytes()
    return Asset(body, MEDIA_TYPES[path.suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _serve(name: str, if_none_match: str | None) -> Response:
    asset = _asset(name)
    if asset is None:
        raise HTTPException(404)
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": asset.etag, "X-Content-Type-Options": "nosniff"}
    if asset.media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["Referrer-Policy"] = "no-referrer"
    if if_none_match is not None and asset.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


IfNoneMatch = Annotated[str | None, Header()]


@router.api_route("/ui", methods=["GET", "HEAD"], name="ui")
def dashboard(if_none_match: IfNoneMatch = None) -> Response:
    return _serve("index.html", if_none_match)


@router.api_route("/ui/{name}", methods=["GET", "HEAD"], name="ui_asset")
def dashboard_asset(
    name: Annotated[str, PathParam(max_length=100)], if_none_match: IfNoneMatch = None
) -> Response:
    return _serve(name, if_none_match)
