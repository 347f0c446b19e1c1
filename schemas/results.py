"""The attribution result: `GET /v1/jobs/{id}/result`.

The result is defined once, here, as typed dicts: workers build exactly these (mypy checks every key) and
store them with orjson, with no model objects in between; `RESULT_ADAPTER` validates a result and gives the
JSON schema that the OpenAPI document publishes, so the document cannot drift from what workers write.
Extra keys are allowed in the published schema, so later versions can add fields without breaking clients.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

Cell = float | list[Any] | None
"""One matrix cell: a score, a list of unreduced scores (granular output), or null where undefined."""


class Token(TypedDict):
    id: int
    token: Annotated[
        str, Field(description="The vocabulary entry, as the reference library shows it ('Ġto').")
    ]
    text: Annotated[str, Field(description="The token decoded on its own (e.g. ' to').")]


class ResultModelInfo(TypedDict):
    id: str
    architecture: Annotated[str, Field(description="The model's class, e.g. 'LlamaForCausalLM'.")]
    is_encoder_decoder: bool


class SequenceAttribution(TypedDict):
    """Scores for one input: rows are source/target positions, columns are attributed steps."""

    source: Annotated[list[Token], Field(description="Encoder input; for decoder-only models, the prompt.")]
    target: Annotated[
        list[Token], Field(description="Decoder side; for decoder-only models, prompt + generated.")
    ]
    attr_pos_start: Annotated[int, Field(description="First attributed target position.")]
    attr_pos_end: Annotated[int, Field(description="One past the last attributed target position.")]
    source_attributions: Annotated[
        list[list[Cell]] | None,
        Field(description="[len(source)][n_attributed]; null for decoder-only models."),
    ]
    target_attributions: Annotated[
        list[list[Cell]] | None,
        Field(
            description="[len(target)][n_attributed]; null where the target is not attributed; "
            "cells at or after the attributed position are null."
        ),
    ]
    step_scores: Annotated[
        dict[str, list[float | None]], Field(description="[n_attributed] per requested step score.")
    ]
    sequence_scores: Annotated[dict[str, Any], Field(description="Extra per-sequence scores of the method.")]
    contrast_source: Annotated[
        list[Token] | None, Field(description="The contrastive source (contrast_sources), else null.")
    ]
    contrast_target: Annotated[
        list[Token] | None, Field(description="The contrastive target (contrast_targets), else null.")
    ]
    contrast_positions: Annotated[
        list[int] | None,
        Field(description="[n_attributed]: the contrast target position each step is compared with."),
    ]


class ResultInfo(TypedDict):
    """How the result was computed: the arguments that ran (defaults filled in) and the versions."""

    exec_time_s: float
    generation_args: dict[str, Any]
    method_args: dict[str, Any]
    aggregation: dict[str, Any]
    attribute_target: bool
    include_eos_baseline: bool
    forced_targets: Annotated[bool, Field(description="Whether the targets were given, not generated.")]
    attributed_fn_args: dict[str, Any]
    step_scores_args: dict[str, dict[str, Any]]
    versions: dict[str, str]
    warnings: Annotated[list[str], Field(description="What the caller should know, e.g. a null step score.")]


class AttributionResult(TypedDict):
    id: str
    model: ResultModelInfo
    method: str
    attributed_fn: str
    sequences: list[SequenceAttribution]
    info: ResultInfo


RESULT_ADAPTER: TypeAdapter[AttributionResult] = TypeAdapter(AttributionResult)
"""Validates a result (tests, clients) and gives its JSON schema."""
