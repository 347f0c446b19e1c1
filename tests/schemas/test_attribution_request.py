"""The attribution request schema: defaults filled, errors located where the client can find them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.attribution import AttributionRequest
from schemas.methods import METHOD_ARGS


def _locs(**fields) -> list[tuple]:
    with pytest.raises(ValidationError) as caught:
        AttributionRequest(**fields)
    return [e["loc"] for e in caught.value.errors()]


def test_method_args_are_stored_with_every_default_filled() -> None:
    request = AttributionRequest(inputs=["x"], method="integrated_gradients", method_args={"n_steps": 7})
    assert request.method_args == {"n_steps": 7, "method": "gausslegendre", "multiply_by_inputs": True}
    assert AttributionRequest(inputs=["x"]).method_args == METHOD_ARGS["saliency"]().model_dump()


def test_method_args_errors_are_located_under_method_args() -> None:
    assert _locs(inputs=["x"], method_args={"n_steps": 3}) == [("method_args", "n_steps")]
    assert _locs(inputs=["x"], method="integrated_gradients", method_args={"n_steps": 0}) == [
        ("method_args", "n_steps")
    ]


def test_unknown_method_is_reported_once_with_the_available_ids() -> None:
    with pytest.raises(ValidationError) as caught:
        AttributionRequest(inputs=["x"], method="nope", method_args={"n_steps": 3})
    (error,) = caught.value.errors()
    assert error["loc"] == ("method",)
    assert "available: attention, input_x_gradient, integrated_gradients, saliency" in error["msg"]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"inputs": []}, ("inputs",)),
        ({"inputs": ["x"], "generated_texts": ["a", "b"]}, ()),
        ({"inputs": ["x"], "attr_pos_start": 5, "attr_pos_end": 5}, ()),
        ({"inputs": ["x"], "step_scores": ["probability", "probability"]}, ("step_scores",)),
        ({"inputs": ["x"], "step_scores": ["nope"]}, ("step_scores",)),
        ({"inputs": ["x"], "attributed_fn": "nope"}, ("attributed_fn",)),
        ({"inputs": ["x"], "generation_args": {"max_new_tokens": 0}}, ("generation_args", "max_new_tokens")),
        ({"inputs": ["x"], "contrast_targets": ["y"]}, ()),
    ],
)
def test_invalid_requests_are_refused(fields: dict, loc: tuple) -> None:
    assert _locs(**fields)[0] == loc
