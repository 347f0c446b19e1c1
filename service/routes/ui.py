"""`/ui`: the dashboard, static files served by the API itself."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["ui"], include_in_schema=False)
