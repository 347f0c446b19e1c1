"""Export formats of a finished result (`GET /v1/jobs/{id}/result?format=`): names, media types,
the CSV columns and the inseq file's top level (its limits are in `schemas.defaults`, its problems in
`schemas.errors` and `schemas.problems`).

Format names and media types are part of the HTTP contract: the API, the CLI and generated clients share
them from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from schemas.context import ContextAttributionResult
from schemas.results import AttributionResult

CSV_COLUMNS = ("sequence", "side", "position", "token", "step", "generated_token", "score")
"""Header of the CSV export: one row per (sequence, side, position, step) and per step score."""

CSV_STEP_SCORE_SIDE = "step_score"
"""`side` of the CSV rows that hold step scores (`token` is then the step score's id)."""


class ExportFormat(StrEnum):
    """A result's export format: `?format=` takes the value, `Accept` the media type."""

    JSON = "json"
    CSV = "csv"
    INSEQ = "inseq"
    TEXT = "text"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_MEDIA_TYPES = {
    ExportFormat.JSON: "application/json",
    ExportFormat.CSV: "text/csv",
    ExportFormat.INSEQ: "application/x-inseq+json",
    ExportFormat.TEXT: "text/plain",
}

_DESCRIPTIONS = {
    ExportFormat.JSON: "The result as stored (the `AttributionResult` schema); `precision` rounds scores.",
    ExportFormat.CSV: "Long format, one row per (sequence, side, position, step), step scores as rows with "
    "side `step_score`: `pandas.read_csv` loads it as it is. Granular results are refused (422).",
    ExportFormat.INSEQ: "The reference library's saved-output file (`FeatureAttributionOutput.save`), which "
    "`inseq.FeatureAttributionOutput.load(path)` of Inseq 0.7 reads; null cells become NaN.",
    ExportFormat.TEXT: "Context-attribution (attribute-context) jobs only: the reference library's text "
    "rendering of the result (`ContextAttributionResult.text`).",
}

ATTRIBUTION_FORMATS = (ExportFormat.JSON, ExportFormat.CSV, ExportFormat.INSEQ)
"""The formats of an attribution job's result."""

CONTEXT_FORMATS = (ExportFormat.JSON, ExportFormat.TEXT)
"""The formats of a context-attribution job's result."""

INSEQ_FILE_SCHEMA: dict[str, Any] = {
    "title": "InseqFeatureAttributionOutput",
    "description": "Top level of an Inseq 0.7 saved `FeatureAttributionOutput`: each object carries its "
    "class in `__instance_type__` and its fields in `attributes`; score tensors are base64 safetensors "
    '(`{"attribution": F32 tensor}`).',
    "type": "object",
    "required": ["__instance_type__", "attributes"],
    "properties": {
        "__instance_type__": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 2,
            "maxItems": 2,
            "description": '["inseq.data.attribution", "FeatureAttributionOutput"]',
        },
        "attributes": {
            "type": "object",
            "required": ["info", "sequence_attributions", "step_attributions"],
            "properties": {
                "info": {
                    "type": "object",
                    "description": "How the result was computed: model_name, model_class, "
                    "attribution_method, input_texts, generated_texts, step_scores, attribute_target, "
                    "attr_pos_start/end, ...",
                },
                "sequence_attributions": {
                    "type": "array",
                    "description": "One `*FeatureAttributionSequenceOutput` object per input: source, target "
                    "(tokens), source_attributions, target_attributions, step_scores, sequence_scores, "
                    "attr_pos_start, attr_pos_end.",
                    "items": {"type": "object"},
                },
                "step_attributions": {"type": "null"},
            },
        },
    },
}
"""JSON schema of the inseq export's top level, published in the OpenAPI document."""


CSV_EXAMPLE = (
    "sequence,side,position,token,step,generated_token,score\n"
    "0,target,0,George,11,Ġto,0.1119\n"
    "0,target,11,Ġto,11,Ġto,\n"
    "0,step_score,,probability,11,Ġto,0.4312\n"
)


def export_content(context: bool = False) -> dict[str, Any]:
    """The OpenAPI entry of a 200 that answers a result in the export formats, each with its schema.

    Args:
        context: whether context-attribution results are answered too (`ContextAttributionResult` as JSON,
            their text rendering as `text/plain`).
    """
    formats = ExportFormat if context else ATTRIBUTION_FORMATS
    content: dict[str, Any] = {
        ExportFormat.JSON.media_type: {},
        ExportFormat.CSV.media_type: {
            "schema": {"type": "string", "description": "CSV with header " + ",".join(CSV_COLUMNS)},
            "example": CSV_EXAMPLE,
        },
        ExportFormat.INSEQ.media_type: {"schema": INSEQ_FILE_SCHEMA},
    }
    description = "The result in the asked format: " + ", ".join(
        f"`{fmt.media_type}` (format={fmt.value})" for fmt in formats
    )
    if not context:
        return {"model": AttributionResult, "description": description + ".", "content": content}
    content[ExportFormat.TEXT.media_type] = {
        "schema": {"type": "string", "description": "The text rendering of a context-attribution result."}
    }
    return {
        # Each kind's JSON result is its own type: attribution jobs answer `AttributionResult`,
        # attribute-context jobs `ContextAttributionResult` (json and text only).
        "model": AttributionResult | ContextAttributionResult,
        "description": description + "; csv and inseq for attribution jobs, text for context-attribution "
        "jobs (any other pairing is a 422).",
        "content": content,
    }
