"""`/v1/jobs/{id}/view` and `/v1/jobs/{id}/heatmap.png|svg`: a finished job's result for people to look at."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/jobs", tags=["views"])
