"""`seqattr attribute`'s options → an `AttributionRequest`, validated here before anything is sent, with
errors named after the options a person typed (`--method-arg n_steps`, not `method_args.n_steps`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.attribution import AttributionRequest
from schemas.errors import RequestValidationFailed

_OPTION_OF_FIELD = {
    "model": "--model",
    "method": "--method",
    "inputs": "--input",
    "generated_texts": "--generated-text",
    "step_scores": "--step-scores",
    "step_scores_args": "--step-score-arg",
    "attributed_fn": "--attributed-fn",
    "attributed_fn_args": "--attributed-fn-arg",
    "contrast_targets": "--contrast-target",
    "method_args": "--method-arg",
    "generation_args": "--max-new-tokens",
}
"""The option that sets each request field (errors are reported under the option's name)."""


@dataclass(frozen=True)
class AttributeOptions:
    """What `seqattr attribute` was asked for; only options given end up in the request body."""

    inputs: list[str]
    model: str | None = None
    method: str | None = None
    generated_texts: list[str] = field(default_factory=list)
    step_scores: list[str] = field(default_factory=list)
    step_scores_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributed_fn: str | None = None
    attributed_fn_args: dict[str, Any] = field(default_factory=dict)
    contrast_targets: list[str] = field(default_factory=list)
    method_args: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body: the fields given, and nothing else (the service fills in its own defaults)."""
        body: dict[str, Any] = {"inputs": list(self.inputs)}
        optional = {
            "model": self.model,
            "method": self.method,
            "generated_texts": list(self.generated_texts) or None,
            "step_scores": list(self.step_scores) or None,
            "step_scores_args": dict(self.step_scores_args) or None,
            "attributed_fn": self.attributed_fn,
            "attributed_fn_args": dict(self.attributed_fn_args) or None,
            "contrast_targets": list(self.contrast_targets) or None,
            "method_args": dict(self.method_args) or None,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        if self.max_new_tokens is not None:
            body["generation_args"] = {"max_new_tokens": self.max_new_tokens}
        return body


def parse_arg(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` → (NAME, VALUE), VALUE read as JSON when it is JSON (`8`, `false`, `[0,1]`), else kept
    as a string.

    Raises:
        ValueError: no `=`, or an empty name.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"{text!r} is not NAME=VALUE (e.g. n_steps=8, abs=false, heads=[0,1])")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def parse_step_score_arg(text: str) -> tuple[str, str, Any]:
    """`ID.NAME=VALUE` → (ID, NAME, VALUE), VALUE read as `parse_arg` reads it.

    Raises:
        ValueError: not of that shape.
    """
    key, value = parse_arg(text)
    score, dot, name = key.partition(".")
    if not dot or not score or not name:
        raise ValueError(f"{text!r} is not ID.NAME=VALUE (e.g. top_p_size.top_p=0.9)")
    return score, name, value


def split_ids(values: list[str]) -> list[str]:
    """Repeated options that may also be comma-separated: `--step-scores a,b --step-scores c`."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _location(loc: tuple[int | str, ...]) -> list[int | str]:
    """The error's location, its first part replaced by the option that sets it."""
    if not loc:
        return []
    head, *rest = loc
    if head == "generation_args" and rest == ["max_new_tokens"]:
        return ["--max-new-tokens"]
    option = _OPTION_OF_FIELD.get(str(head))
    return [option, *rest] if option else list(loc)


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden" and error["loc"]:
        return f"unknown field {error['loc'][-1]!r}"
    return str(error["msg"]).removeprefix("Value error, ")


def validated(options: AttributeOptions) -> AttributionRequest:
    """The request, validated by the shared schema.

    Raises:
        RequestValidationFailed: with one entry per invalid location, as the API's 422 lists them.
    """
    try:
        return AttributionRequest.model_validate(options.body())
    except ValidationError as exc:
        errors = [
            {"loc": _location(error["loc"]), "msg": _message(error), "type": error["type"]}
            for error in exc.errors()
        ]
        raise RequestValidationFailed(errors) from None
