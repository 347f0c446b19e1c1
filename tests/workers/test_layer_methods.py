"""DeepLIFT and the layer methods (layer integrated gradients, layer gradient x activation, layer DeepLIFT).

- The rescale rule (`workers.engine.deeplift`) against captum's `DeepLift` on a small network with every
  supported nonlinearity, through the engine's batched (vmap) backward.
- Parity with the reference library (Inseq 0.7.1) where it works: `deeplift` on every tiny model, layer
  gradient x activation on the embedding layer and on blocks.
- Where the reference fails, against a direct, slow computation: captum's own layer classes run one step at
  a time on a wrapper that returns the step's target probability from token ids. The reference fails on T5
  and BART's embedding layer (it hooks `shared`, which transformers 5 no longer calls: "Forward hook did not
  obtain any outputs"), and its layer integrated gradients and layer DeepLIFT ignore their baselines (see
  `test_reference_layer_methods_ignore_their_baselines`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr import LayerDeepLift as CaptumLayerDeepLift
from captum.attr import LayerGradientXActivation as CaptumLayerGradientXActivation
from captum.attr import LayerIntegratedGradients as CaptumLayerIntegratedGradients
from torch import nn

from schemas.errors import InvalidRequestError
from tests.workers.parity import (
    CAUSAL,
    MODELS,
    N_STEPS,
    SEQ2SEQ,
    assert_scores_equal,
    assert_sequence_matches,
    engine_request,
    expected_sequences,
    inseq_attribute,
    matrix,
    parity_inputs,
)
from workers.engine.deeplift import Rescale

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LAYER_METHODS = ["layer_integrated_gradients", "layer_gradient_x_activation", "layer_deeplift"]
BLOCK = {"tiny-gpt2": "transformer.h.0", "tiny-llama": "model.layers.0"}
"""A non-embedding layer of each decoder-only model."""


# ---------------------------------------------------------------------------------------------------------
# The rescale rule against captum


class _Net(nn.Module):
    """Linear layers, each followed by one supported nonlinearity (as in a transformer's feed-forward: each
    activation module has its own input tensor)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        linears = [nn.Linear(6, 6) for _ in range(7)]
        self.linears = nn.ModuleList(linears)
        self.acts = nn.ModuleList(
            [nn.ReLU(inplace=True), nn.Tanh(), nn.Sigmoid(), nn.ELU(), nn.LeakyReLU(0.1), nn.Softplus()]
        )
        with torch.no_grad():  # unit 0 of the first layer reads input 2 only (equal for input and baseline)
            linears[0].weight[0] = 0.0
            linears[0].weight[0, 2] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, act in zip(self.linears, self.acts, strict=False):
            x = act(linear(x))
        return self.linears[-1](x)


def test_rescale_rule_matches_captum_deeplift_in_a_batched_backward() -> None:
    net = _Net().eval()
    x, b = torch.randn(1, 6), torch.randn(1, 6)
    b[0, 2] = x[0, 2]  # an equal coordinate: the module's own gradient applies there
    targets = [0, 2, 5]
    want = torch.cat([CaptumDeepLift(net).attribute(x, baselines=b, target=t) for t in targets])
    rule = Rescale(net)
    assert len(rule.modules) == 6
    with torch.no_grad(), rule.reference():
        net(b)
    leaf = x.clone().requires_grad_(True)
    with rule.rescaled():
        out = net(leaf)
    # One row per target, as the engine sends one row per step through `is_grads_batched`.
    rows = torch.zeros(len(targets), *out.shape)
    for i, t in enumerate(targets):
        rows[i, 0, t] = 1.0
    (grads,) = torch.autograd.grad(out, leaf, rows, is_grads_batched=True)
    got = grads[:, 0] * (x - b)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    plain = torch.autograd.functional.jacobian(net, x)[0, targets, 0] * (x - b)
    assert (got - plain).abs().max() > 0.1 * plain.abs().max(), "the rule should differ from plain gradients"


def test_rescale_finds_supported_modules_only_where_the_models_have_them(engine_model) -> None:
    counts = {m: len(Rescale(engine_model(m).model).modules) for m in MODELS}
    # T5's feed-forward uses nn.ReLU; GPT-2, Llama and BART use GELU/SiLU modules captum does not rescale.
    assert counts == {"tiny-gpt2": 0, "tiny-llama": 0, "tiny-t5": 4, "tiny-bart": 0}


# ---------------------------------------------------------------------------------------------------------
# Parity with the reference library


@pytest.fixture(scope="module")
def inseq_layer_model(inseq_model: Callable[..., Any]) -> Callable[[str, str, str | None], Any]:
    """`inseq_layer_model(model_id, method, target_layer)`: an Inseq model attributing to that layer."""

    def get(model_id: str, method: str, layer: str | None) -> Any:
        return inseq_model(model_id, method, **({} if layer is None else {"target_layer": layer}))

    return get


def _layer_args(method: str, layer: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"n_steps": N_STEPS} if method == "layer_integrated_gradients" else {}
    if layer is not None:
        args["target_layer"] = layer
    return args


GXA_CASES = [
    *[(m, layer) for m in CAUSAL for layer in [None, BLOCK[m]]],
    ("tiny-marian", None),
    ("tiny-bart", "model.encoder.layers.0"),
    ("tiny-t5", "encoder.block.0.layer.1"),
]
"""Where the reference's layer gradient x activation works: on T5 and BART it hooks `shared` for the embedding
layer, which transformers 5 no longer calls (Marian's input embedding is the encoder's own)."""


@pytest.mark.parametrize(("model_id", "layer"), GXA_CASES)
@pytest.mark.parametrize("mode", ["forced", "greedy"])
def test_layer_gradient_x_activation_parity(
    run_engine, inseq_layer_model, model_id: str, layer: str | None, mode: str
) -> None:
    method = "layer_gradient_x_activation"
    inputs, targets = parity_inputs(model_id)
    forced = targets if mode == "forced" else None
    model = inseq_layer_model(model_id, method, layer)
    want = expected_sequences(inseq_attribute(lambda *_: model, model_id, method, inputs, forced))
    request = engine_request(
        model_id, method, inputs, generated_texts=forced, method_args=_layer_args(method, layer)
    )
    assert_sequence_matches(run_engine(**request)["sequences"][0], want[0])


@pytest.mark.parametrize("method", ["layer_integrated_gradients", "layer_deeplift"])
def test_reference_layer_methods_ignore_their_baselines(inseq_layer_model, method: str) -> None:
    """Why these two are checked against captum directly: the reference's forward for layer methods runs the
    real token ids it gets as extra arguments, not the ids captum passes (baseline, interpolated), so the
    baseline activations equal the input's and every score is zero."""
    inputs, targets = parity_inputs("tiny-gpt2")
    model = inseq_layer_model("tiny-gpt2", method, None)
    want = expected_sequences(inseq_attribute(lambda *_: model, "tiny-gpt2", method, inputs, targets))[0]
    scores = want["target_attributions"]
    assert np.nan_to_num(scores).max() == 0.0


# ---------------------------------------------------------------------------------------------------------
# Against captum's layer classes, one step at a time


class _StepProbability(nn.Module):
    """The probability of `token` after the prefix: `(prefix_ids, token)` for decoder-only models,
    `(source_ids, target_prefix_ids, token)` for encoder-decoder models (token ids, as the reference's layer
    methods take them)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any) -> torch.Tensor:
        *ids, token = args
        if len(ids) == 1:
            (prefix,) = ids
            logits = self.model(input_ids=prefix, attention_mask=torch.ones_like(prefix)).logits
        else:
            source, prefix = ids
            logits = self.model(
                input_ids=source,
                attention_mask=torch.ones_like(source),
                decoder_input_ids=prefix,
                decoder_attention_mask=torch.ones_like(prefix),
            ).logits
        return logits[:, -1].float().softmax(-1)[:, token]


def _captum_step(
    method: str,
    wrapper: nn.Module,
    layer: nn.Module,
    inputs: tuple,
    baselines: tuple,
    extra: tuple,
    multiply: bool,
) -> torch.Tensor:
    if method == "layer_integrated_gradients":
        attr = CaptumLayerIntegratedGradients(wrapper, layer, multiply_by_inputs=multiply).attribute(
            inputs, baselines, additional_forward_args=extra, n_steps=N_STEPS, method="gausslegendre"
        )
    elif method == "layer_deeplift":
        # Captum hooks the input tensor of every ReLU, also those below the layer, where nothing requires a
        # gradient with frozen weights and token-id inputs: let the weights require one meanwhile.
        params = [q for q in wrapper.parameters() if not q.requires_grad]
        for q in params:
            q.requires_grad_(True)
        try:
            attr = CaptumLayerDeepLift(wrapper, layer, multiply_by_inputs=multiply).attribute(
                inputs, baselines, additional_forward_args=extra
            )
        finally:
            for q in params:
                q.requires_grad_(False)
    else:
        attr = CaptumLayerGradientXActivation(wrapper, layer, multiply_by_inputs=multiply).attribute(
            inputs, additional_forward_args=extra
        )
    return (attr[0] if isinstance(attr, tuple | list) else attr)[0].detach()


def _direct(
    loaded: Any,
    seq: dict[str, Any],
    method: str,
    layer_name: str | None,
    attribute_target: bool = False,
    multiply: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per step, captum's layer method on `_StepProbability` (baseline: UNK ids but EOS, the decoder start
    kept); then the default aggregation: L2 over the hidden size, each column scaled to sum 1."""
    model = loaded.model
    causal = not loaded.is_encoder_decoder
    tok = loaded.tokenizer
    target = torch.tensor([[t["id"] for t in seq["target"]]])
    source = None if causal else torch.tensor([[t["id"] for t in seq["source"]]])

    def base(ids: torch.Tensor) -> torch.Tensor:
        return torch.where(ids == tok.eos_token_id, ids, torch.full_like(ids, tok.unk_token_id))

    if layer_name is None:  # the module that embeds what is attributed (T5/BART: the encoder's own)
        layer = model.get_input_embeddings() if causal else model.get_encoder().get_input_embeddings()
    else:
        layer = dict(model.named_modules())[layer_name]
    on_target = causal or (layer_name is not None and ".encoder." not in f".{layer_name}.")
    wrapper = _StepProbability(model).eval()
    columns = []
    inputs: tuple[Any, ...]
    baselines: tuple[Any, ...]
    extra: tuple[Any, ...]
    for p in range(seq["attr_pos_start"], seq["attr_pos_end"]):
        prefix, token = target[:, :p], int(target[0, p])
        if source is None:
            inputs, baselines, extra = (prefix,), (base(prefix),), (token,)
        elif attribute_target:
            prefix_base = base(prefix)
            prefix_base[:, 0] = prefix[:, 0]
            inputs, baselines, extra = (source, prefix), (base(source), prefix_base), (token,)
        else:
            inputs, baselines, extra = (source,), (base(source),), (prefix, token)
        scores = torch.linalg.vector_norm(
            _captum_step(method, wrapper, layer, inputs, baselines, extra, multiply), dim=-1
        )
        column = torch.full(((target if on_target or source is None else source).shape[1],), float("nan"))
        column[: len(scores)] = scores / scores.abs().sum()
        columns.append(column)
    matrix_ = torch.stack(columns, dim=1).numpy().astype(float)
    return (None, matrix_) if on_target else (matrix_, None)


DIRECT_CASES = [
    *[(m, layer) for m in ["tiny-gpt2", "tiny-llama"] for layer in [None, BLOCK[m]]],
    *[("tiny-t5", layer) for layer in [None, "encoder.block.0.layer.1", "decoder.block.0.layer.2"]],
    *[("tiny-bart", layer) for layer in [None, "model.encoder.layers.0", "model.decoder.layers.0"]],
]
"""T5's layers are feed-forward sublayers (a tensor output, captum hooks them as is) with a ReLU above them,
so that layer DeepLIFT's rescale rule matters."""


@pytest.mark.parametrize("method", LAYER_METHODS)
@pytest.mark.parametrize(("model_id", "layer"), DIRECT_CASES)
def test_layer_methods_match_captum_per_step(
    run_engine, engine_model, model_id: str, layer: str | None, method: str
) -> None:
    inputs, targets = parity_inputs(model_id)
    request = engine_request(
        model_id, method, inputs, generated_texts=targets, method_args=_layer_args(method, layer)
    )
    got = run_engine(**request)["sequences"][0]
    source, target = _direct(engine_model(model_id), got, method, layer)
    assert_scores_equal("source_attributions", matrix(got["source_attributions"]), source)
    assert_scores_equal("target_attributions", matrix(got["target_attributions"]), target)


@pytest.mark.parametrize(
    ("model_id", "layer", "method", "fields"),
    [
        ("tiny-gpt2", "transformer.h.0", "layer_integrated_gradients", {"mode": "greedy"}),
        ("tiny-t5", "decoder.block.0.layer.2", "layer_deeplift", {"mode": "greedy"}),
        ("tiny-llama", "model.layers.0.mlp", "layer_deeplift", {"attr_pos_start": 7, "attr_pos_end": 9}),
        (
            "tiny-bart",
            "model.decoder.layers.0",
            "layer_integrated_gradients",
            {"attr_pos_start": 2, "attr_pos_end": 4},
        ),
        ("tiny-t5", "decoder.block.0.layer.2", "layer_integrated_gradients", {"attribute_target": True}),
        ("tiny-t5", "decoder.block.0.layer.2", "layer_deeplift", {"attribute_target": True}),
        ("tiny-bart", "model.decoder.layers.0", "layer_deeplift", {"attribute_target": True}),
        ("tiny-gpt2", "transformer.h.0.mlp", "layer_integrated_gradients", {"multiply_by_inputs": False}),
        ("tiny-t5", "encoder.block.0.layer.1", "layer_deeplift", {"multiply_by_inputs": False}),
        ("tiny-llama", "model.layers.0", "layer_gradient_x_activation", {"multiply_by_inputs": False}),
    ],
)
def test_layer_methods_match_captum_per_step_options(
    run_engine, engine_model, model_id: str, layer: str, method: str, fields: dict[str, Any]
) -> None:
    """Greedy targets, a span of steps, `attribute_target` (the attributed inputs, source and target, both go
    to their baseline for the baseline activations) and `multiply_by_inputs=False`."""
    fields = dict(fields)
    inputs, targets = parity_inputs(model_id)
    forced = None if fields.pop("mode", "forced") == "greedy" else targets
    multiply = fields.pop("multiply_by_inputs", True)
    args = {**_layer_args(method, layer), "multiply_by_inputs": multiply}
    request = engine_request(model_id, method, inputs, generated_texts=forced, method_args=args, **fields)
    got = run_engine(**request)["sequences"][0]
    attribute_target = fields.get("attribute_target", False)
    source, target = _direct(engine_model(model_id), got, method, layer, attribute_target, multiply)
    assert_scores_equal("source_attributions", matrix(got["source_attributions"]), source)
    assert_scores_equal("target_attributions", matrix(got["target_attributions"]), target)


# ---------------------------------------------------------------------------------------------------------
# The embedding layer, target attribution and DeepLIFT's rule in the models


@pytest.mark.parametrize(
    ("method", "same_as"),
    [
        ("layer_integrated_gradients", "integrated_gradients"),
        ("layer_gradient_x_activation", "input_x_gradient"),
        ("layer_deeplift", "deeplift"),
    ],
)
@pytest.mark.parametrize("model_id", SEQ2SEQ)
def test_embedding_layer_with_attribute_target_is_the_gradient_method(
    run_engine, model_id: str, method: str, same_as: str
) -> None:
    """The reference refuses `attribute_target` for layer methods; here the embedding layer attributes both
    the source and the target prefix, exactly as the gradient method on the embeddings does."""
    inputs, targets = parity_inputs(model_id)
    layer = run_engine(
        **engine_request(model_id, method, inputs, generated_texts=targets, attribute_target=True)
    )
    plain = run_engine(
        **engine_request(model_id, same_as, inputs, generated_texts=targets, attribute_target=True)
    )
    for side in ("source_attributions", "target_attributions"):
        assert layer["sequences"][0][side] is not None
        assert layer["sequences"][0][side] == plain["sequences"][0][side]


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
def test_deeplift_is_the_plain_gradient_only_without_rescaled_modules(run_engine, model_id: str) -> None:
    """DeepLIFT's multipliers (`multiply_by_inputs=False`) are the plain gradient (saliency, same L2 norm)
    without any module to rescale (GPT-2), not with T5's ReLUs."""
    inputs, targets = parity_inputs(model_id)
    deeplift = run_engine(
        **engine_request(
            model_id, "deeplift", inputs, generated_texts=targets, method_args={"multiply_by_inputs": False}
        )
    )
    plain = run_engine(**engine_request(model_id, "saliency", inputs, generated_texts=targets))
    side = "target_attributions" if model_id == "tiny-gpt2" else "source_attributions"
    a, b = matrix(deeplift["sequences"][0][side]), matrix(plain["sequences"][0][side])
    assert a is not None and b is not None
    diff = np.nanmax(np.abs(a - b))
    assert diff < 1e-5 if model_id == "tiny-gpt2" else diff > 1e-3


# ---------------------------------------------------------------------------------------------------------
# Layer names


@pytest.mark.parametrize(
    ("model_id", "layer", "shown"),
    [
        ("tiny-gpt2", "transformer.h.7", ["transformer.wte", "transformer.h.0", "transformer.h.1.mlp"]),
        ("tiny-t5", "encoder.blocks.0", ["shared", "encoder.block.0", "decoder.block.1.layer.2"]),
        ("tiny-llama", "lm_head", ["model.embed_tokens", "model.layers.0"]),
    ],
)
def test_unknown_layer_is_an_invalid_request_listing_valid_names(
    run_engine, model_id: str, layer: str, shown: list[str]
) -> None:
    inputs, targets = parity_inputs(model_id)
    request = engine_request(
        model_id,
        "layer_gradient_x_activation",
        inputs,
        generated_texts=targets,
        method_args={"target_layer": layer},
    )
    with pytest.raises(InvalidRequestError) as caught:
        run_engine(**request)
    assert repr(layer) in caught.value.detail
    valid = caught.value.extensions["valid_layers"]
    assert set(shown) <= set(valid)
    assert layer not in valid


def test_layer_without_per_token_output_is_an_invalid_request(run_engine) -> None:
    """Llama's rotary embedding outputs (cos, sin) shared by the batch: not per sequence and token."""
    inputs, targets = parity_inputs("tiny-llama")
    request = engine_request(
        "tiny-llama",
        "layer_integrated_gradients",
        inputs,
        generated_texts=targets,
        method_args={"target_layer": "model.rotary_emb", "n_steps": 2},
    )
    with pytest.raises(InvalidRequestError, match="not one vector per sequence and target token"):
        run_engine(**request)
