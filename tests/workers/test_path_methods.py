"""Path methods: discretized integrated gradients (DIG) and sequential integrated gradients (SIG).

Parity with the reference library (Inseq 0.7.1) on the tiny models, decoder-only and encoder-decoder, forced
and greedy targets, `attribute_target` and `attr_pos_start/end`, with the conventions of
`test_engine_parity.py`.

The oracle's own limits, and how each case is checked anyway:
- Inseq's DIG finds vocabulary neighbours with scikit-learn and runs its path searches in joblib threads;
  neither is a dependency here. The oracle runs with only those two replaced (`inseq_dig` below): the
  neighbour graph by a float64 brute-force search written here (scikit-learn's `kneighbors_graph` order:
  nearest first, the token itself left out), the thread pool by a plain loop. The path building and
  integration are Inseq's own code (with scikit-learn and joblib installed, the replaced oracle gave
  bit-identical scores).
  The engine's neighbour search is checked against the same brute force, and against scikit-learn itself
  where it is installed.
- Inseq's SIG asserts that all attributed inputs have the same length, so it fails on encoder-decoder models
  with `attribute_target` (asserted below); there the engine is checked against a direct, slow implementation
  of the method's definition: one forward and backward per (step, token, path point).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from tests.workers.parity import (
    CAUSAL,
    MODELS,
    SEQ2SEQ,
    assert_scores_equal,
    assert_sequence_matches,
    engine_request,
    expected_sequences,
    inseq_attribute,
    matrix,
    parity_inputs,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

DIG = "discretized_integrated_gradients"
SIG = "sequential_integrated_gradients"


# ---------------------------------------------------------------------------------------------------------
# The DIG oracle without scikit-learn and joblib


def brute_force_neighbours(vectors: torch.Tensor, k: int) -> np.ndarray:
    """`[V, k]`: each row's k nearest other rows, nearest first (float64, ties by index)."""
    v = vectors.detach().double().numpy()
    dist = ((v[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


class _NeighbourGraph:
    """What Inseq reads from scikit-learn's sparse kNN graph: `graph[i].tocoo().col`, nearest first."""

    def __init__(self, neighbours: np.ndarray) -> None:
        self.neighbours = neighbours

    def __getitem__(self, row: int) -> Any:
        return SimpleNamespace(tocoo=lambda: SimpleNamespace(col=self.neighbours[row]))


def _knn_graph(
    *_cache_args: Any, vocabulary_embeddings: torch.Tensor, n_neighbors: int = 50, **_: Any
) -> Any:
    return _NeighbourGraph(brute_force_neighbours(vocabulary_embeddings, n_neighbors))


class _SerialParallel:
    """joblib's `Parallel(...)(delayed(f)(*args) for ...)`, run in order."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __call__(self, calls: Any) -> list[Any]:
        return [fn(*args, **kwargs) for fn, args, kwargs in calls]


def _delayed(fn: Any) -> Any:
    return lambda *args, **kwargs: (fn, args, kwargs)


@pytest.fixture(scope="module")
def inseq_dig() -> Iterator[None]:
    """Inseq's DIG with the neighbour search and thread pool replaced (module doc); no disk cache is used."""
    from inseq.attr.feat.ops import monotonic_path_builder as mpb

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mpb.MonotonicPathBuilder, "compute_embeddings_knn", staticmethod(_knn_graph))
        patch.setattr(mpb, "is_joblib_available", lambda: True)
        patch.setattr(mpb, "Parallel", _SerialParallel, raising=False)
        patch.setattr(mpb, "delayed", _delayed, raising=False)
        yield


@pytest.fixture(scope="module")
def inseq_custom(inseq_model: Any, inseq_dig: None) -> Any:  # noqa: ARG001 - patches active
    """`inseq_custom(model_id, method, **load_kwargs)`: an Inseq model with non-default method options, loaded
    while the DIG patches are active."""
    return inseq_model


# ---------------------------------------------------------------------------------------------------------
# Neighbour search


def _vocabularies(engine_model: Any) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    clustered = torch.randn(40, 16).repeat_interleave(5, dim=0) + 1e-3 * torch.randn(200, 16)
    vocabs = {"random": torch.randn(300, 24), "clustered": clustered}
    for model_id in ("tiny-gpt2", "tiny-t5"):
        vocabs[model_id] = engine_model(model_id).model.get_input_embeddings().weight.detach()
    return vocabs


@pytest.mark.parametrize("k", [1, 10, 50])
def test_neighbours_match_brute_force(engine_model, k: int) -> None:
    from workers.engine.dig_paths import nearest_neighbours

    for name, vocab in _vocabularies(engine_model).items():
        got = nearest_neighbours(vocab, k).numpy()
        np.testing.assert_array_equal(got, brute_force_neighbours(vocab, k), err_msg=name)


def test_neighbours_match_scikit_learn(engine_model) -> None:
    neighbors = pytest.importorskip("sklearn.neighbors")
    from workers.engine.dig_paths import nearest_neighbours

    for name, vocab in _vocabularies(engine_model).items():
        graph = neighbors.kneighbors_graph(vocab.numpy(), n_neighbors=50, mode="distance")
        want = np.stack([graph[i].tocoo().col for i in range(vocab.shape[0])])
        np.testing.assert_array_equal(nearest_neighbours(vocab, 50).numpy(), want, err_msg=name)


def test_neighbour_table_cached_per_model(engine_model) -> None:
    from workers.engine.dig_paths import neighbour_table

    model = engine_model("tiny-t5").model
    layer = model.get_encoder().get_input_embeddings()
    first = neighbour_table(model, layer, 7)
    assert neighbour_table(model, layer, 7) is first
    # The decoder's layer is another module over the same weights: same table.
    assert neighbour_table(model, model.get_decoder().get_input_embeddings(), 7) is first
    assert first.neighbours.shape == (layer.weight.shape[0], 7)
    assert neighbour_table(model, layer, 8) is not first
    torch.testing.assert_close(first.vocab, layer.weight.detach())


def test_paths_are_monotonic_and_end_at_the_input(engine_model) -> None:
    """Every point of every path lies, dimension by dimension, between the next point and the baseline, and
    the path runs from the baseline (first point) to the word (last)."""
    from workers.engine.dig_paths import monotonic_path, neighbour_table

    loaded = engine_model("tiny-gpt2")
    table = neighbour_table(loaded.model, loaded.model.get_input_embeddings(), 50)
    ids = torch.tensor([5, 17, 3, 42, 99])  # 3 is </s>, a special token
    base = torch.full_like(ids, 1)
    special = ids == 3
    for strategy in ("greedy", "maxcount"):
        path = monotonic_path(table, ids, base, special, 6, strategy)
        assert path.shape == (6, 5, table.vocab.shape[1])
        torch.testing.assert_close(path[0], table.embed(base), rtol=0, atol=0)
        torch.testing.assert_close(path[-1], table.embed(ids), rtol=0, atol=0)
        b = path[0]
        for k in range(1, 5):
            lo, hi = torch.minimum(path[k + 1], b), torch.maximum(path[k + 1], b)
            assert ((path[k] >= lo) & (path[k] <= hi)).all(), (strategy, k)
        # The special token jumps from its baseline to itself at once.
        torch.testing.assert_close(path[1:, 2], table.vocab[3].expand(5, -1), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# DIG parity


def _run(run_engine, model_id: str, method: str, inputs: list[str], forced: list[str] | None, **fields: Any):
    return run_engine(**engine_request(model_id, method, inputs, generated_texts=forced, **fields))


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("mode", ["forced", "greedy"])
def test_dig_parity(run_engine, inseq_model, inseq_dig, model_id: str, mode: str) -> None:  # noqa: ARG001
    inputs, targets = parity_inputs(model_id)
    forced = targets if mode == "forced" else None
    want = expected_sequences(inseq_attribute(inseq_model, model_id, DIG, inputs, forced))
    got = _run(run_engine, model_id, DIG, inputs, forced)
    assert_sequence_matches(got["sequences"][0], want[0])


@pytest.mark.parametrize("model_id", SEQ2SEQ)
@pytest.mark.parametrize("strategy", ["greedy", "maxcount"])
def test_dig_parity_attribute_target(
    run_engine,
    inseq_model,
    inseq_dig,  # noqa: ARG001
    model_id: str,
    strategy: str,
) -> None:
    inputs, targets = parity_inputs(model_id)
    # Inseq's DIG calls the strategy `method`, a name its `attribute` keeps for the method itself.
    out = inseq_attribute(
        inseq_model,
        model_id,
        DIG,
        inputs,
        targets,
        attribute_target=True,
        attribution_args={"method": strategy},
    )
    want = expected_sequences(out)
    assert want[0]["target_attributions"] is not None
    got = _run(
        run_engine,
        model_id,
        DIG,
        inputs,
        targets,
        attribute_target=True,
        method_args={"n_steps": 8, "strategy": strategy},
    )
    assert_sequence_matches(got["sequences"][0], want[0])


@pytest.mark.parametrize("model_id", CAUSAL)
def test_dig_parity_options(run_engine, inseq_custom, model_id: str) -> None:
    """maxcount, fewer neighbours, another path length, multiplied by (input - baseline)."""
    inputs, targets = parity_inputs(model_id)
    model = inseq_custom(model_id, DIG, multiply_by_inputs=True)
    # `load_model` does not pass `n_neighbors` on to the path builder (Inseq always uses 50): load it again.
    model.attribution_method.method.load_monotonic_path_builder(
        model.model_name,
        vocabulary_embeddings=model.vocabulary_embeddings.detach(),
        special_tokens=model.special_tokens_ids,
        embedding_scaling=model.embed_scale,
        n_neighbors=10,
    )
    assert len(model.attribution_method.method.path_builder.knn_graph[5].tocoo().col) == 10
    out = model.attribute(
        inputs, targets, show_progress=False, attribution_args={"n_steps": 5, "method": "maxcount"}
    )
    args = {"n_steps": 5, "strategy": "maxcount", "n_neighbors": 10, "multiply_by_inputs": True}
    got = _run(run_engine, model_id, DIG, inputs, targets, method_args=args)
    assert_sequence_matches(got["sequences"][0], expected_sequences(out)[0])


# ---------------------------------------------------------------------------------------------------------
# SIG parity


@pytest.mark.parametrize("model_id", MODELS)
@pytest.mark.parametrize("mode", ["forced", "greedy"])
def test_sig_parity(run_engine, inseq_model, model_id: str, mode: str) -> None:
    inputs, targets = parity_inputs(model_id)
    forced = targets if mode == "forced" else None
    want = expected_sequences(inseq_attribute(inseq_model, model_id, SIG, inputs, forced))
    got = _run(run_engine, model_id, SIG, inputs, forced)
    assert_sequence_matches(got["sequences"][0], want[0])


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-bart"])
def test_sig_parity_options(run_engine, inseq_custom, model_id: str) -> None:
    """Another quadrature, not multiplied by (input - baseline)."""
    inputs, targets = parity_inputs(model_id)
    model = inseq_custom(model_id, SIG, multiply_by_inputs=False)
    out = model.attribute(
        inputs, targets, show_progress=False, attribution_args={"n_steps": 5, "method": "riemann_trapezoid"}
    )
    args = {"n_steps": 5, "method": "riemann_trapezoid", "multiply_by_inputs": False}
    got = _run(run_engine, model_id, SIG, inputs, targets, method_args=args)
    assert_sequence_matches(got["sequences"][0], expected_sequences(out)[0])


def _direct_sig(loaded: Any, seq: dict[str, Any], n_steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """SIG by its definition on an encoder-decoder model, source and target prefix attributed: for each step,
    each token of each side and each path point, one forward with only that token moved from its baseline
    and the gradient of the step's target probability at it; weighted sum times (input - baseline), L2 over
    the hidden size, each column scaled to sum 1 over both sides."""
    model = loaded.model
    tok = loaded.tokenizer
    source = torch.tensor([t["id"] for t in seq["source"]])
    target = torch.tensor([t["id"] for t in seq["target"]])
    embed_source = model.get_encoder().get_input_embeddings()
    embed_target = model.get_decoder().get_input_embeddings()

    def baseline(ids: torch.Tensor) -> torch.Tensor:
        return torch.where(ids == tok.eos_token_id, ids, torch.full_like(ids, tok.unk_token_id))

    target_base = baseline(target)
    target_base[0] = target[0]  # the decoder start token
    xs, bs = embed_source(source).detach(), embed_source(baseline(source)).detach()
    xt, bt = embed_target(target).detach(), embed_target(target_base).detach()
    step_sizes, alphas = (f(n_steps) for f in approximation_parameters(method))
    steps = range(seq["attr_pos_start"], seq["attr_pos_end"])
    src_cols, tgt_cols = [], []
    for p in steps:
        sides = {"source": (xs, bs), "target": (xt[:p], bt[:p])}
        scores = {}
        for name, (x, b) in sides.items():
            side_scores = torch.zeros_like(x)
            for j in range(x.shape[0]):
                for alpha, weight in zip(alphas, step_sizes, strict=True):
                    moved = x.clone()
                    moved[j] = b[j] + alpha * (x[j] - b[j])
                    moved.requires_grad_(True)
                    point = {**{k: v[0] for k, v in sides.items()}, name: moved}
                    logits = model(
                        inputs_embeds=point["source"][None], decoder_inputs_embeds=point["target"][None]
                    ).logits[0, -1]
                    (grad,) = torch.autograd.grad(logits.softmax(-1)[target[p]], moved)
                    side_scores[j] += weight * grad[j]
            scores[name] = torch.linalg.vector_norm(side_scores * (x - b), dim=-1)
        total = scores["source"].sum() + scores["target"].sum()
        src_cols.append(scores["source"] / total)
        column = torch.full((len(target),), float("nan"))
        column[:p] = scores["target"] / total
        tgt_cols.append(column)
    return torch.stack(src_cols, 1).numpy(), torch.stack(tgt_cols, 1).numpy()


@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_sig_attribute_target_matches_direct(run_engine, inseq_model, engine_model, model_id: str) -> None:
    inputs, targets = parity_inputs(model_id)
    with pytest.raises(AssertionError, match="same sequential dimension"):
        inseq_attribute(inseq_model, model_id, SIG, inputs, targets, attribute_target=True)
    args = {"n_steps": 4, "method": "gausslegendre"}
    got = _run(run_engine, model_id, SIG, inputs, targets, attribute_target=True, method_args=args)
    seq = got["sequences"][0]
    want_source, want_target = _direct_sig(engine_model(model_id), seq, n_steps=4, method="gausslegendre")
    assert_scores_equal("source_attributions", matrix(seq["source_attributions"]), want_source)
    assert_scores_equal("target_attributions", matrix(seq["target_attributions"]), want_target)


# ---------------------------------------------------------------------------------------------------------
# Attributed positions


@pytest.mark.parametrize("method", [DIG, SIG])
def test_parity_attr_pos_decoder_only(
    run_engine,
    inseq_model,
    engine_model,
    inseq_dig,  # noqa: ARG001
    method: str,
) -> None:
    model_id = "tiny-llama"
    inputs, targets = parity_inputs(model_id)
    prompt = engine_model(model_id).tokenizer(inputs[0]).input_ids
    start, end = len(prompt) + 1, len(prompt) + 3
    out = inseq_attribute(
        inseq_model, model_id, method, inputs, targets, attr_pos_start=start, attr_pos_end=end
    )
    want = expected_sequences(out)[0]
    got = _run(run_engine, model_id, method, inputs, targets, attr_pos_start=start, attr_pos_end=end)
    assert_sequence_matches(got["sequences"][0], want, extra_null_rows=True, check_source=False)


@pytest.mark.parametrize("method", [DIG, SIG])
def test_parity_attr_pos_encoder_decoder(
    run_engine,
    inseq_model,
    inseq_dig,  # noqa: ARG001
    method: str,
) -> None:
    """Engine positions [2, 4) == columns 1..2 of a full Inseq run (Inseq itself would attribute 2..4)."""
    model_id = "tiny-t5"
    inputs, targets = parity_inputs(model_id)
    full = expected_sequences(inseq_attribute(inseq_model, model_id, method, inputs, targets))[0]
    start, end = 2, 4
    cols = slice(start - full["attr_pos_start"], end - full["attr_pos_start"])
    want = {
        **full,
        "attr_pos_start": start,
        "attr_pos_end": end,
        "source_attributions": full["source_attributions"][:, cols],
    }
    got = _run(run_engine, model_id, method, inputs, targets, attr_pos_start=start, attr_pos_end=end)
    assert_sequence_matches(got["sequences"][0], want)


# ---------------------------------------------------------------------------------------------------------
# Chunking


@pytest.mark.parametrize("method", [DIG, SIG])
def test_chunked_steps_give_the_same_scores(run_engine, monkeypatch, method: str) -> None:
    """One step per chunk and one copy per forward (tiny budgets) give the same scores as the default plan."""
    from workers.engine import gradients

    inputs, targets = parity_inputs("tiny-bart")
    fields = {"attribute_target": True, "method_args": {"n_steps": 4}}
    whole = _run(run_engine, "tiny-bart", method, inputs, targets, **fields)["sequences"][0]
    monkeypatch.setattr(gradients, "MAX_BATCHED_SEQUENCES", 1)
    split = _run(run_engine, "tiny-bart", method, inputs, targets, **fields)["sequences"][0]
    for side in ("source_attributions", "target_attributions"):
        assert_scores_equal(side, matrix(split[side]), matrix(whole[side]))
