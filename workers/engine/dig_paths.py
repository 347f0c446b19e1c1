"""Monotonic paths of discretized integrated gradients (DIG, Sanyal and Ren, 2021), the reference's way.

Each token travels from its baseline to its own embedding through real word embeddings ("anchors"): from the
word, the next anchor is picked among the nearest vocabulary neighbours of the previous anchor (`greedy`: the
one closest to its monotonized version; `maxcount`: the one with most dimensions already between the previous
anchor and the baseline), then monotonized (the dimensions where it does not lie between the previous point
and the baseline are set to the previous point moved 1/n_steps toward the baseline). Special tokens do not
travel: their path is the baseline, then the token itself.

The neighbour table over the whole vocabulary is the expensive part (a vocabulary x vocabulary distance
matrix): it is computed once per model, embedding matrix and neighbour count and kept in memory for the life
of the model (the reference caches it on disk with scikit-learn). The path search then runs for every token
of a sequence at once, one vectorized step per anchor, once per sequence.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import torch

from workers.engine.model_io import SequenceIO

Strategy = Literal["greedy", "maxcount"]

DISTANCE_CHUNK_BYTES = 256 * 2**20
"""Memory for one block of the vocabulary distance matrix (rows x vocabulary, float64)."""


@dataclass(frozen=True)
class NeighbourTable:
    """A vocabulary's embeddings and each token's nearest neighbours (nearest first, itself excluded)."""

    vocab: torch.Tensor  # [V, hidden], what the embedding layer outputs for each id (in its dtype)
    neighbours: torch.Tensor  # [V, k], int64

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The embeddings of `ids`, in float32 (paths are built in float32 whatever the model's dtype)."""
        return self.vocab[ids].float()


_TABLES: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[object, ...], NeighbourTable]] = (
    weakref.WeakKeyDictionary()
)
"""Per model (dropped with it), per embedding weight (the encoder's and decoder's layers often share one),
layer kind and scale, dtype, device (a model cast or moved in place keeps its objects) and neighbour count."""


def nearest_neighbours(vocab: torch.Tensor, k: int) -> torch.Tensor:
    """`[V, k]` indices of each row's k nearest other rows by Euclidean distance, nearest first.

    The order is scikit-learn's `kneighbors_graph(vocab, k)` (the reference's): like its brute-force search,
    squared distances come from `|a|^2 - 2 a.b + |b|^2` in float64 (float32 data upcast), block by block;
    exact ties are broken by the lower index.
    """
    n = vocab.shape[0]
    k = min(k, n - 1)
    data = vocab.double()
    norms = data.pow(2).sum(dim=1)
    rows = max(1, DISTANCE_CHUNK_BYTES // (8 * n))
    parts = []
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        block = norms[lo:hi, None] - 2 * data[lo:hi] @ data.T + norms[None, :]
        own = torch.arange(lo, hi, device=vocab.device)
        block[own - lo, own] = float("inf")  # a token is not its own neighbour
        nearest = block.topk(k, dim=1, largest=False).indices.sort(dim=1).values
        # By distance, equal distances in index order (`nearest` is sorted by index, the sort is stable).
        order = block.gather(1, nearest).sort(dim=1, stable=True).indices
        parts.append(nearest.gather(1, order))
    return torch.cat(parts)


def neighbour_table(model: torch.nn.Module, layer: torch.nn.Module, n_neighbors: int) -> NeighbourTable:
    """The table of one of `model`'s embedding layers, computed on first use and cached while the model
    lives."""
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    per_model = _TABLES.setdefault(model, {})
    scale = getattr(layer, "embed_scale", None)
    key = (weight.data_ptr(), type(layer), str(scale), weight.dtype, weight.device, n_neighbors)
    if key not in per_model:
        with torch.no_grad():  # not inference_mode: path points made from it later enter autograd graphs
            ids = torch.arange(weight.shape[0], device=weight.device)
            vocab = layer(ids).detach()
            per_model[key] = NeighbourTable(vocab, nearest_neighbours(vocab, n_neighbors))
    return per_model[key]


def _monotonic_dims(anchor: torch.Tensor, baseline: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Where `anchor` lies between `point` and `baseline` (inclusive; equal when they are equal)."""
    return (
        (baseline > point) & (baseline >= anchor) & (anchor >= point)
        | (baseline < point) & (baseline <= anchor) & (anchor <= point)
        | (baseline == point) & (baseline == anchor)
    )


def _monotonize(
    anchor: torch.Tensor, baseline: torch.Tensor, point: torch.Tensor, n_steps: int
) -> torch.Tensor:
    """The anchor with its non-monotonic dimensions set to `point` moved 1/n_steps toward `baseline` (the
    reference's arithmetic, operation by operation, so the numbers are the same)."""
    pulled = point - (1.0 / n_steps) * (point - baseline)
    return torch.where(_monotonic_dims(anchor, baseline, point), anchor, pulled)


def _scores(
    table: NeighbourTable,
    candidates: torch.Tensor,
    baseline: torch.Tensor,
    current: torch.Tensor,
    n_steps: int,
    strategy: Strategy,
) -> torch.Tensor:
    """`[tokens, k]`: lower is better (the reference sorts its candidates by this, ties kept in neighbour
    order, which `argmin` does too: it returns the first minimum)."""
    anchor = table.embed(candidates)
    base = table.embed(baseline)[:, None]
    point = table.embed(current)[:, None]
    if strategy == "greedy":
        return (anchor - _monotonize(anchor, base, point, n_steps)).pow(2).sum(-1).sqrt()
    return 10000.0 - _monotonic_dims(anchor, base, point).sum(-1).float()


def word_paths(
    table: NeighbourTable,
    ids: torch.Tensor,
    baseline_ids: torch.Tensor,
    special: torch.Tensor,
    n_steps: int,
    strategy: Strategy,
) -> torch.Tensor:
    """`[tokens, n_steps - 1]` anchor ids of each token's path, from the word toward the baseline.

    Args:
        table: the vocabulary's neighbour table.
        ids: `[tokens]` the words.
        baseline_ids: `[tokens]` their baselines.
        special: `[tokens]` True where the word is a special token (it keeps itself as every anchor).
        n_steps: points on the path (at least 2).
        strategy: how the next anchor is picked.
    """
    path = [ids]
    current = ids
    for _ in range(n_steps - 2):
        candidates = table.neighbours[current]
        taken = torch.stack(path, dim=1)
        # Words already on the path and the baseline itself are not candidates.
        excluded = (candidates[:, :, None] == taken[:, None, :]).any(-1) | (
            candidates == baseline_ids[:, None]
        )
        scores = _scores(table, candidates, baseline_ids, current, n_steps, strategy)
        best = scores.masked_fill(excluded, float("inf")).argmin(dim=1)
        chosen = candidates.gather(1, best[:, None]).squeeze(1)
        # No candidate left, or the baseline already reached: the path stays on the baseline.
        chosen = torch.where(excluded.all(dim=1) | (current == baseline_ids), baseline_ids, chosen)
        current = torch.where(special, ids, chosen)
        path.append(current)
    return torch.stack(path, dim=1)


def monotonic_path(
    table: NeighbourTable,
    ids: torch.Tensor,
    baseline_ids: torch.Tensor,
    special: torch.Tensor,
    n_steps: int,
    strategy: Strategy,
) -> torch.Tensor:
    """`[n_steps, tokens, hidden]` (float32) path points: index 0 is the baseline, the last is the input."""
    n_steps = max(2, n_steps)  # the reference's path has at least the baseline and the word
    anchors = word_paths(table, ids, baseline_ids, special, n_steps, strategy)
    base = table.embed(baseline_ids)
    points = [table.embed(anchors[:, 0])]
    for j in range(1, anchors.shape[1]):
        points.append(_monotonize(table.embed(anchors[:, j]), base, points[-1], n_steps))
    points.append(base)
    return torch.stack(points[::-1])


_PATHS: weakref.WeakKeyDictionary[SequenceIO, dict[tuple[object, ...], list[torch.Tensor | None]]] = (
    weakref.WeakKeyDictionary()
)
"""Per sequence (dropped with it), per settings: the paths of its whole inputs, shared by its chunks."""


def input_paths(
    io: SequenceIO,
    positions: list[int],
    wanted: tuple[bool, ...],
    n_steps: int,
    strategy: Strategy,
    n_neighbors: int,
) -> list[torch.Tensor | None]:
    """Per model input (`(target,)` or `(source, target)`), the DIG path of its tokens, `[n_steps, length,
    hidden]` float32, the target cut after the chunk's last step; None for inputs not attributed.

    A token's path depends on that token and its baseline only, so the paths of the whole sequence are built
    once and every chunk takes its prefix."""
    key = (wanted, n_steps, strategy, n_neighbors)
    per_sequence = _PATHS.setdefault(io, {})
    if key not in per_sequence:
        per_sequence[key] = _sequence_paths(io, wanted, n_steps, strategy, n_neighbors)
    paths = list(per_sequence[key])
    if paths[-1] is not None:
        paths[-1] = paths[-1][:, : max(positions)]
    return paths


def _sequence_paths(
    io: SequenceIO, wanted: tuple[bool, ...], n_steps: int, strategy: Strategy, n_neighbors: int
) -> list[torch.Tensor | None]:
    sides: list[tuple[torch.Tensor, bool]] = [(io.target_ids[0], True)]
    if io.is_encoder_decoder:
        sides.insert(0, (io.source_ids[0], False))
    special_ids = torch.tensor(io.loaded.tokenizer.all_special_ids, device=io.loaded.device, dtype=torch.long)
    paths: list[torch.Tensor | None] = []
    for (ids, as_target), want in zip(sides, wanted, strict=True):
        if not want:
            paths.append(None)
            continue
        baseline = io.baseline_ids(ids[None])[0]
        if io.is_encoder_decoder and as_target:
            baseline[0] = ids[0]  # the decoder start token is its own baseline, as in `baseline_embeds`
        table = neighbour_table(io.model, io.embed_layer(as_target), n_neighbors)
        special = torch.isin(ids, special_ids)
        paths.append(monotonic_path(table, ids, baseline, special, n_steps, strategy))
    return paths
