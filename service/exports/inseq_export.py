"""The inseq export: the file `inseq.FeatureAttributionOutput.save(path)` writes with its defaults, so that
`inseq.FeatureAttributionOutput.load(path)` (Inseq 0.7) reads a Seqattr result.

Inseq's file is its JSON encoding of Python objects: each object is `{"__instance_type__": [module, class],
"attributes": {...}}` and each score tensor a base64 string of safetensors bytes (`{"attribution": tensor}`).
No torch here: the safetensors bytes are written by hand (an 8-byte little-endian header length, the JSON
header padded with spaces, then the raw little-endian float32 data), and null cells become NaN.

Layout, as Inseq builds it: `source_attributions` is `[len(source), n_attributed]` (null for decoder-only
models, whose `source` is the target up to `attr_pos_start`), `target_attributions`
`[min(len(target), attr_pos_end), n_attributed]`, each step score `[n_attributed]`; granular cells add their
dimensions at the end.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.exports.common import first_cell, tokens_text, unit_shape

INSEQ_MODULE = "inseq.data.attribution"
TOKEN_TYPE = ["inseq.utils.typing", "TokenWithId"]

COARSE_CLASS = "CoarseFeatureAttributionSequenceOutput"
"""One score per cell (occlusion, every aggregated result): Inseq's default aggregation leaves it alone."""

GRANULAR_CLASS = "GranularFeatureAttributionSequenceOutput"
"""One score per hidden unit: Inseq aggregates it with the L2 norm, then normalises each step."""

MULTIDIMENSIONAL_CLASS = "MultiDimensionalFeatureAttributionSequenceOutput"
"""Scores per layer (and head): Inseq averages those dimensions."""

LAYERWISE_METHODS = frozenset({"value_zeroing"})
"""Methods whose single extra dimension is layers, not hidden units (Inseq's multi-dimensional output)."""

_B64_BLOCK = 3 * 64 * 1024
"""Raw bytes base64-encoded per piece (a multiple of 3, so the pieces join into one valid string)."""

_SAFETENSORS_ALIGN = 24
"""The header is space-padded until the prefix is a multiple of 8 (safetensors) and 3 (base64 pieces)."""


def _dumps(value: Any) -> str:
    # Inseq writes with json's defaults: ASCII only (its loader opens the file in the platform's encoding).
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


@dataclass(frozen=True)
class Tensor:
    """A score tensor to write: the result's nested lists (nulls allowed) and the shape Inseq gives it."""

    values: list[Any]
    shape: tuple[int, ...]
    cell_shape: tuple[int, ...] = ()
    """Shape of a granular matrix's cells: a null cell (all NaN) is filled to it."""

    @property
    def prefix(self) -> bytes:
        header = _dumps(
            {"attribution": {"dtype": "F32", "shape": list(self.shape), "data_offsets": [0, self.nbytes]}}
        ).encode()
        header += b" " * (-(8 + len(header)) % _SAFETENSORS_ALIGN)
        return struct.pack("<Q", len(header)) + header

    @property
    def nbytes(self) -> int:
        return 4 * math.prod(self.shape)

    @property
    def encoded_length(self) -> int:
        """Characters of the quoted base64 string."""
        return 4 * math.ceil((len(self.prefix) + self.nbytes) / 3) + 2

    def array(self, precision: int | None) -> np.ndarray:
        values = self.values
        if self.cell_shape:
            empty = np.full(self.cell_shape, np.nan).tolist()
            values = [[empty if cell is None else cell for cell in row] for row in values]
        data = np.array(values, dtype=np.float64)  # None -> NaN
        if precision is not None:
            data = np.round(data, precision)
        return np.ascontiguousarray(data.reshape(self.shape), dtype="<f4")

    def encoded(self, precision: int | None) -> Iterator[str]:
        yield '"' + base64.b64encode(self.prefix).decode()
        raw = self.array(precision).data.cast("B")
        for start in range(0, len(raw), _B64_BLOCK):
            yield base64.b64encode(raw[start : start + _B64_BLOCK]).decode()
        yield '"'


def _matrix(rows: list[list[Any]], count: int, columns: int, unit: tuple[int, ...]) -> Tensor:
    rows = rows[:count]
    return Tensor(rows, (len(rows), columns, *unit), unit)


def _vector(values: Any) -> Tensor | None:
    """A step or sequence score as a tensor; None for a value that is not a regular array of numbers."""
    try:
        shape = np.shape(np.array(values, dtype=np.float64))
    except (TypeError, ValueError):
        return None
    return Tensor(values, tuple(shape))


def sequence_class(method: str, unit: tuple[int, ...]) -> str:
    """The sequence-output class Inseq uses for these scores, so that `aggregate()` and `show()` on the
    loaded object reduce exactly what is still unreduced (a 2-D result: nothing)."""
    if not unit:
        return COARSE_CLASS
    if len(unit) > 1 or method in LAYERWISE_METHODS:
        return MULTIDIMENSIONAL_CLASS
    return GRANULAR_CLASS


def _token(token: Mapping[str, Any]) -> dict[str, Any]:
    return {"__instance_type__": TOKEN_TYPE, "attributes": {"id": token["id"], "token": token["token"]}}


Piece = str | Tensor


def _sequence(
    seq: Mapping[str, Any], decoder_only: bool, method: str, unit: tuple[int, ...]
) -> Iterator[Piece]:
    target = seq["target"]
    start = seq["attr_pos_start"]
    end = min(seq["attr_pos_end"], len(target))
    # Inseq's decoder-only source is the target before the first attributed position.
    source = target[:start] if decoder_only else seq["source"]
    source_matrix = seq.get("source_attributions")
    target_matrix = seq.get("target_attributions")
    columns = max(
        (len(m[0]) for m in (source_matrix, target_matrix) if m),
        default=max((len(v) for v in (seq.get("step_scores") or {}).values()), default=0),
    )
    cls = sequence_class(method, unit)
    attributes: dict[str, Any] = {}
    if cls == MULTIDIMENSIONAL_CLASS:
        # Not in Inseq's own files, but read back by its loader: the loaded object then averages the extra
        # dimensions as Inseq's attention and value-zeroing outputs do, instead of leaving them unreduced.
        attributes["_num_dimensions"] = len(unit)
    attributes.update(attr_pos_end=end, attr_pos_start=start)
    head = (
        _dumps({"__instance_type__": [INSEQ_MODULE, cls]})[:-1] + ',"attributes":' + _dumps(attributes)[:-1]
    )
    yield head
    yield ',"sequence_scores":'
    yield from _tensor_dict(seq.get("sequence_scores") or {})
    yield ',"source":' + _dumps([_token(t) for t in source])
    yield ',"source_attributions":'
    yield "null" if source_matrix is None else _matrix(source_matrix, len(source_matrix), columns, unit)
    yield ',"step_scores":'
    yield from _tensor_dict(seq.get("step_scores") or {})
    yield ',"target":' + _dumps([_token(t) for t in target])
    yield ',"target_attributions":'
    yield "null" if target_matrix is None else _matrix(target_matrix, end, columns, unit)
    yield "}}"


def _tensor_dict(scores: Mapping[str, Any]) -> Iterator[Piece]:
    yield "{"
    tensors = {name: t for name, value in sorted(scores.items()) if (t := _vector(value)) is not None}
    for i, (name, tensor) in enumerate(tensors.items()):
        yield ("," if i else "") + _dumps(name) + ":"
        yield tensor
    yield "}"


def inseq_info(result: Mapping[str, Any], request: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `info` Inseq writes (`model.attribute`'s arguments and outputs), from a result and its request."""
    info = result.get("info") or {}
    request = request or {}
    sequences = result.get("sequences") or []
    generated = request.get("generated_texts") or [tokens_text(s["target"]).strip() for s in sequences]
    step_scores = request.get("step_scores")
    if step_scores is None:
        step_scores = list((sequences[0].get("step_scores") or {}) if sequences else [])
    return {
        "attr_pos_end": max((s["attr_pos_end"] for s in sequences), default=None),
        "attr_pos_start": min((s["attr_pos_start"] for s in sequences), default=None),
        "attribute_target": info.get("attribute_target", request.get("attribute_target", False)),
        "attributed_fn": f"{result.get('attributed_fn', 'probability')}_fn",
        "attributed_fn_args": info.get("attributed_fn_args", request.get("attributed_fn_args", {})),
        "attribution_args": info.get("method_args", request.get("method_args", {})),
        "attribution_method": result.get("method"),
        "constrained_decoding": info.get("forced_targets", bool(request.get("generated_texts"))),
        "exec_time": info.get("exec_time_s"),
        "generate_from_target_prefix": False,
        "generated_texts": generated,
        "generation_args": info.get("generation_args", request.get("generation_args", {})),
        "include_eos_baseline": info.get("include_eos_baseline", request.get("include_eos_baseline", False)),
        "input_texts": request.get("inputs") or [tokens_text(s["source"]).strip() for s in sequences],
        "model_class": (result.get("model") or {}).get("architecture"),
        "model_name": (result.get("model") or {}).get("id"),
        "output_step_attributions": False,
        "step_scores": step_scores,
        "step_scores_args": info.get("step_scores_args", {}),
        "tokenizer_class": None,
        "tokenizer_name": None,
    }


def _pieces(result: Mapping[str, Any], request: Mapping[str, Any] | None) -> Iterator[Piece]:
    decoder_only = not (result.get("model") or {}).get("is_encoder_decoder", False)
    method = str(result.get("method", ""))
    unit = unit_shape(first_cell(result))
    yield '{"__instance_type__":["inseq.data.attribution","FeatureAttributionOutput"],"attributes":{"info":'
    yield _dumps(inseq_info(result, request))
    yield ',"sequence_attributions":['
    for i, seq in enumerate(result.get("sequences") or []):
        if i:
            yield ","
        yield from _sequence(seq, decoder_only, method, unit)
    yield '],"step_attributions":null}}'


def render_inseq(
    result: Mapping[str, Any], request: Mapping[str, Any] | None, precision: int | None
) -> Iterator[str]:
    """The file's text in pieces; each score tensor is built and encoded only when its turn comes."""
    for piece in _pieces(result, request):
        if isinstance(piece, Tensor):
            yield from piece.encoded(precision)
        else:
            yield piece


def estimate_inseq(result: Mapping[str, Any], request: Mapping[str, Any] | None) -> int:
    """Bytes `render_inseq` writes (exact: tensors are measured from their shapes, not encoded)."""
    return sum(
        piece.encoded_length if isinstance(piece, Tensor) else len(piece)
        for piece in _pieces(result, request)
    )
