"""The one error hierarchy. Each error has a stable problem `type`, a `title` and an HTTP `status`;
the API turns any of them into RFC 9457 problem+json, and workers store them as a failed job's `error`."""

from __future__ import annotations

from typing import Any

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
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
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
