"""Attention with `heads` / `layers` selection and per-dimension aggregators, against the reference library's
aggregation chain (`aggregate("scores", aggregate_fn=..., select_idx=...)`, heads first, then layers)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.errors import InvalidRequestError
from tests.workers.parity import (
    assert_scores_equal,
    engine_request,
    inseq_attribute,
    matrix,
    parity_inputs,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

CASES: list[tuple[Any, Any, list[str]]] = [
    # (heads, layers, aggregators heads-then-layers)
    (None, None, ["max", "mean"]),
    ({"start": 0, "end": 2}, [0, 1], ["mean", "max"]),
    (1, None, ["sum"]),
    ([0, -1], 0, ["absmax", "min"]),
    (-1, -1, ["mean"]),
    (None, {"start": -1, "end": 2}, ["prod", "mean"]),
]


def _inseq_select(value: Any) -> Any:
    if isinstance(value, dict):
        return (value["start"], value["end"])
    return value


def _inseq_chain(seq: Any, heads: Any, layers: Any, aggregators: list[str]) -> Any:
    head_fn, layer_fn = (aggregators * 2)[:2] if len(aggregators) == 1 else aggregators
    kwargs: dict[str, Any] = {"do_post_aggregation_checks": False}
    if heads is not None:
        kwargs["select_idx"] = _inseq_select(heads)
    out = seq.aggregate("scores", aggregate_fn=head_fn, **kwargs)
    kwargs = {}
    if layers is not None:
        kwargs["select_idx"] = _inseq_select(layers)
    return out.aggregate("scores", aggregate_fn=layer_fn, **kwargs)


@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-t5"])
@pytest.mark.parametrize(("heads", "layers", "aggregators"), CASES)
def test_selection_matches_reference(
    run_engine, inseq_model, model_id: str, heads: Any, layers: Any, aggregators: list[str]
) -> None:
    inputs, targets = parity_inputs(model_id)
    attribute_target = model_id == "tiny-t5"
    out = inseq_attribute(
        inseq_model, model_id, "attention", inputs, targets, attribute_target=attribute_target
    )
    want = _inseq_chain(out.sequence_attributions[0], heads, layers, aggregators)
    got = run_engine(
        **engine_request(
            model_id,
            "attention",
            inputs,
            generated_texts=targets,
            attribute_target=attribute_target,
            method_args={"heads": heads, "layers": layers},
            aggregation={"aggregators": aggregators},
        )
    )["sequences"][0]
    for side in ("source_attributions", "target_attributions"):
        reference = getattr(want, side)
        assert_scores_equal(side, matrix(got[side]), None if reference is None else reference.float().numpy())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"heads": 2}, "heads index out of range"),
        ({"layers": {"start": 1, "end": 9}}, "layers range"),
        ({"heads": [0, 0]}, "must not repeat"),
    ],
)
def test_out_of_range_selection_is_a_request_error(run_engine, args: dict[str, Any], message: str) -> None:
    inputs, targets = parity_inputs("tiny-gpt2")
    with pytest.raises(InvalidRequestError, match=message):
        run_engine(
            **engine_request("tiny-gpt2", "attention", inputs, generated_texts=targets, method_args=args)
        )


def test_aggregator_count_must_match_the_unit_dimensions() -> None:
    from pydantic import ValidationError

    from schemas.attribution import AttributionRequest

    with pytest.raises(ValidationError, match="has 1 unit dimensions"):
        AttributionRequest(inputs=["x"], method="saliency", aggregation={"aggregators": ["sum", "mean"]})
    request = AttributionRequest(
        inputs=["x"], method="attention", aggregation={"aggregators": ["max", "sum"]}
    )
    assert request.aggregation.aggregators == ["max", "sum"]
