"""Holding results to their schema: `schemas.results` publishes its typed dicts open to extra keys (so later
versions can add fields), while the workers must write exactly the declared keys."""

from __future__ import annotations

from typing import Any

from schemas.results import (
    RESULT_ADAPTER,
    AttributionResult,
    ResultInfo,
    ResultModelInfo,
    SequenceAttribution,
    Token,
)


def _extra(path: str, data: dict[str, Any], declared: type) -> list[str]:
    return [f"{path}/{key}" for key in data.keys() - declared.__annotations__.keys()]


def undeclared_keys(result: dict[str, Any]) -> list[str]:
    """Paths of the keys a result has that its typed dicts do not declare."""
    found = _extra("", result, AttributionResult)
    found += _extra("/model", result["model"], ResultModelInfo)
    found += _extra("/info", result["info"], ResultInfo)
    for i, seq in enumerate(result["sequences"]):
        found += _extra(f"/sequences/{i}", seq, SequenceAttribution)
        for token in [*seq["source"], *seq["target"]]:
            found += _extra(f"/sequences/{i}/token", token, Token)
    return sorted(set(found))


def assert_valid_result(result: dict[str, Any]) -> None:
    """The result validates against `AttributionResult` and has no undeclared key."""
    RESULT_ADAPTER.validate_python(result)
    assert undeclared_keys(result) == []
