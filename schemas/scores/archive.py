"""The scores a worker keeps beside each result, so `POST /v1/jobs/{id}/aggregate` can re-aggregate without a
model: an `.npz` file (numpy's zip of arrays, read with `allow_pickle=False`) holding

- `base`: the scores after the request's unit reduction and before its token-level `steps` (float32), with
  the tokens, positions and step scores as JSON metadata;
- `raw`: the unreduced scores when kept (`aggregation.keep_granular`, or always for methods without unit
  dimensions, whose raw scores are no larger than the base), as float16 scaled by their largest magnitude
  (so small gradients do not underflow) or as float32.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from schemas.scores.sequence import SequenceScores

ARCHIVE_VERSION = 1

RawStatus = Literal["kept", "base", "not_requested", "over_budget"]
"""Whether unreduced scores are there: kept beside the base, the base itself (granular results), not asked
for, or asked for but larger than the worker's budget."""

RawPrecision = Literal["float16", "float32"]


@dataclass(frozen=True)
class ScoreArchive:
    header: dict[str, Any]
    """The result's fields other than `sequences`: id, model, method, attributed_fn, info."""
    base: list[SequenceScores]
    raw: list[SequenceScores] | None
    raw_status: RawStatus

    @property
    def unreduced(self) -> list[SequenceScores] | None:
        """The scores before any unit reduction, when there are some."""
        if self.raw_status == "base":
            return self.base
        return self.raw


_SIDES = ("source", "target")


def raw_nbytes(raw: list[SequenceScores], precision: RawPrecision) -> int:
    """What the unreduced scores take in the archive."""
    itemsize = 2 if precision == "float16" else 4
    return sum(
        a.size * itemsize for seq in raw for a in (seq.source_scores, seq.target_scores) if a is not None
    )


def _compact(scores: np.ndarray, precision: RawPrecision) -> tuple[np.ndarray, float]:
    if precision == "float32":
        return scores.astype(np.float32), 1.0
    largest = float(np.nanmax(np.abs(scores), initial=0.0))
    scale = largest if np.isfinite(largest) and largest > 0 else 1.0
    return (scores / scale).astype(np.float16), scale


def pack(
    header: dict[str, Any],
    base: list[SequenceScores],
    raw: list[SequenceScores] | None,
    raw_status: RawStatus,
    precision: RawPrecision = "float16",
) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    sequences = []
    for i, seq in enumerate(base):
        scales = {}
        for side in _SIDES:
            scores = getattr(seq, f"{side}_scores")
            if scores is not None:
                arrays[f"{i}.base.{side}"] = scores.astype(np.float32)
            kept = None if raw is None else getattr(raw[i], f"{side}_scores")
            if kept is not None:
                arrays[f"{i}.raw.{side}"], scales[side] = _compact(kept, precision)
        for name, values in seq.step_scores.items():
            arrays[f"{i}.step.{name}"] = values.astype(np.float32)
        sequences.append(
            {
                "source": seq.source,
                "target": seq.target,
                "attr_pos_start": seq.attr_pos_start,
                "attr_pos_end": seq.attr_pos_end,
                "step_names": list(seq.step_scores),
                "contrast_source": seq.contrast_source,
                "contrast_target": seq.contrast_target,
                "contrast_positions": seq.contrast_positions,
                "raw_scales": scales,
            }
        )
    meta = {"version": ARCHIVE_VERSION, "header": header, "raw_status": raw_status, "sequences": sequences}
    arrays["meta"] = np.frombuffer(orjson.dumps(meta), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def unpack(data: bytes) -> ScoreArchive:
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        meta = orjson.loads(stored["meta"].tobytes())
        if meta["version"] != ARCHIVE_VERSION:
            raise ValueError(f"score archive version {meta['version']} is not {ARCHIVE_VERSION}")
        base: list[SequenceScores] = []
        raw: list[SequenceScores] = []
        for i, info in enumerate(meta["sequences"]):
            seq = SequenceScores(
                source=info["source"],
                target=info["target"],
                attr_pos_start=info["attr_pos_start"],
                attr_pos_end=info["attr_pos_end"],
                source_scores=_read(stored, f"{i}.base.source"),
                target_scores=_read(stored, f"{i}.base.target"),
                step_scores={
                    name: stored[f"{i}.step.{name}"].astype(np.float32) for name in info["step_names"]
                },
                contrast_source=info["contrast_source"],
                contrast_target=info["contrast_target"],
                contrast_positions=info["contrast_positions"],
            )
            base.append(seq)
            if meta["raw_status"] == "kept":
                scales = info["raw_scales"]
                raw.append(
                    seq.replace(
                        source_scores=_read(stored, f"{i}.raw.source", scales.get("source", 1.0)),
                        target_scores=_read(stored, f"{i}.raw.target", scales.get("target", 1.0)),
                    )
                )
    return ScoreArchive(
        header=meta["header"],
        base=base,
        raw=raw if meta["raw_status"] == "kept" else None,
        raw_status=meta["raw_status"],
    )


def _read(stored: Any, name: str, scale: float = 1.0) -> np.ndarray | None:
    if name not in stored.files:
        return None
    return stored[name].astype(np.float32) * scale
