"""Batches: `POST /v1/batches` (a request template and its items) and the record of `GET /v1/batches/{id}`.

A batch is split into chunks of items; each chunk is an ordinary attribution job whose `inputs` (and
`generated_texts`) are the chunk's items and whose other fields are the template's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from schemas.attribution import AttributionRequest, CallbackUrl, Text
from schemas.defaults import BATCH_CHUNK_ITEMS, DEFAULT_METHOD, MAX_BATCH_ITEMS, MAX_INPUTS_PER_REQUEST
from schemas.errors import RequestValidationFailed
from schemas.methods import METHOD_ARGS

PER_ITEM_FIELDS = (
    "inputs",
    "generated_texts",
    "contrast_sources",
    "contrast_targets",
    "contrast_targets_alignments",
)
"""Fields of `AttributionRequest` holding one value per input: the items give them, not the template."""

NOT_TEMPLATE = (*PER_ITEM_FIELDS, "callback_url")
"""Fields no chunk inherits: per-input lists, and a callback (a batch's callback is the batch's, not each
chunk's)."""

BatchStatus = Literal["queued", "running", "finished", "canceled"]

BatchTemplate: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "BatchTemplate",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="The fields of `POST /v1/attributions` that every chunk of a batch shares.",
    **{
        name: (field.annotation, field)
        for name, field in AttributionRequest.model_fields.items()
        if name not in NOT_TEMPLATE
    },
)


class BatchItem(BaseModel):
    """One example: an input and, optionally, its forced target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Text
    generated: Text | None = Field(None, description="Forced target (as `generated_texts`); null: generate.")


class BatchRequest(BatchTemplate):
    """A batch: the template fields of `POST /v1/attributions` and the items, given inline."""

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)
    callback_url: CallbackUrl | None = Field(
        None,
        description="When the batch ends, the API POSTs its final record here, signed as job callbacks are "
        "(the host must be in SEQATTR_CALLBACK_ALLOWED_HOSTS).",
    )
    chunk_size: int | None = Field(
        None,
        ge=1,
        le=MAX_INPUTS_PER_REQUEST,
        description="Items per chunk job; null: the service's default.",
    )

    @model_validator(mode="after")
    def _generated_all_or_none(self) -> BatchRequest:
        forced = [item.generated is not None for item in self.items]
        if any(forced) and not all(forced):
            raise ValueError("give `generated` for every item or for none")
        return self


def default_chunk_size(template: dict[str, Any]) -> int:
    """Items per chunk when the batch names none: `BATCH_CHUNK_ITEMS` for a method that runs each input once,
    fewer for the methods that run `n_steps` or `n_samples` copies of it (at least one item; 8 for IG's
    default 50 steps would make chunks 50 times longer)."""
    args = template.get("method_args") or {}
    copies = max(int(args.get("n_steps", 1) or 1), int(args.get("n_samples", 1) or 1))
    if copies <= 1 and template.get("method", DEFAULT_METHOD) in METHOD_ARGS:
        defaults = METHOD_ARGS[template.get("method", DEFAULT_METHOD)]().model_dump()
        copies = max(int(defaults.get("n_steps", 1) or 1), int(defaults.get("n_samples", 1) or 1))
    return max(1, BATCH_CHUNK_ITEMS * 8 // max(copies, 8)) if copies > 1 else BATCH_CHUNK_ITEMS


def template_of(request: BaseModel) -> dict[str, Any]:
    """The template fields of a batch request (as sent, before the chunk requests fill defaults)."""
    return request.model_dump(include=set(BatchTemplate.model_fields), exclude_unset=True)


def chunk_requests(
    template: dict[str, Any], items: list[BatchItem], size: int, loc: tuple[str, ...] = ("body",)
) -> list[tuple[int, AttributionRequest]]:
    """The batch's chunks as (index of the first item, attribution request), in item order.

    Raises:
        RequestValidationFailed: the template does not make a valid request (errors located under `loc`).
    """
    chunks = []
    for start in range(0, len(items), size):
        part = items[start : start + size]
        generated = [item.generated for item in part]
        body = {
            **template,
            "inputs": [item.input for item in part],
            "generated_texts": generated if generated[0] is not None else None,
        }
        try:
            chunks.append((start, AttributionRequest.model_validate(body)))
        except ValidationError as exc:
            raise RequestValidationFailed(
                [
                    {
                        "loc": [*loc, *error["loc"]],
                        "msg": error["msg"].removeprefix("Value error, "),
                        "type": error["type"],
                    }
                    for error in exc.errors(include_input=False)
                ]
            ) from None
    return chunks


class BatchCounts(BaseModel):
    """Items by the status of the chunk job that holds them."""

    model_config = ConfigDict(frozen=True)

    queued: int = 0
    started: int = 0
    finished: int = 0
    failed: int = 0
    canceled: int = 0


class BatchLinks(BaseModel):
    model_config = ConfigDict(frozen=True)

    self: str
    results: str


class Batch(BaseModel):
    """A batch as reported by the API; its counts are computed from its chunk jobs when it is read."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: BatchStatus = Field(
        description="`finished` once every chunk has ended, even when some failed (see `counts`)."
    )
    counts: BatchCounts
    done: int = Field(ge=0, description="Items that have ended (finished, failed or canceled).")
    total: int = Field(ge=1)
    chunks: int = Field(ge=1, description="Chunk jobs the items were split into.")
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    throughput: float | None = Field(None, description="Items ended per second since the first chunk began.")
    eta_s: float | None = Field(None, description="Estimated seconds left at that throughput.")
    links: BatchLinks
    template: dict[str, Any] = Field(description="The template of every chunk's request, defaults filled.")


class BatchPage(BaseModel):
    """A page of `GET /v1/batches`, newest first; pass `next_cursor` as `cursor` for the next page."""

    model_config = ConfigDict(frozen=True)

    batches: list[Batch]
    next_cursor: str | None = None
