"""The attribution request schema: defaults filled, errors located where the client can find them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.attribution import AttributionRequest
from schemas.methods import METHOD_ARGS, METHOD_SPECS


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
    assert "available: " + ", ".join(sorted(METHOD_SPECS)) in error["msg"]


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


def test_step_function_arguments_are_stored_with_defaults_for_every_score() -> None:
    request = AttributionRequest(
        inputs=["x"],
        attributed_fn="probability",
        attributed_fn_args={"logprob": True},
        step_scores=["kl_divergence", "entropy"],
        step_scores_args={"kl_divergence": {"top_k": 3}},
        contrast_targets=["y"],
    )
    assert request.attributed_fn_args == {"logprob": True}
    assert request.step_scores_args == {
        "kl_divergence": {"contrast_force_inputs": False, "top_k": 3, "top_p": 1.0, "min_tokens_to_keep": 1},
        "entropy": {},
    }


@pytest.mark.parametrize(
    ("fields", "loc", "message"),
    [
        ({"attributed_fn_args": {"nope": 1}}, ("attributed_fn_args", "nope"), "Extra inputs"),
        (
            {
                "step_scores": ["kl_divergence"],
                "contrast_targets": ["y"],
                "step_scores_args": {"kl_divergence": {"top_p": 2}},
            },
            ("step_scores_args", "kl_divergence", "top_p"),
            "less than or equal to 1",
        ),
        ({"step_scores": ["top_p_size"]}, ("step_scores_args", "top_p_size", "top_p"), "required"),
        ({"step_scores_args": {"entropy": {}}}, ("step_scores_args",), "not in step_scores"),
        ({"attributed_fn": "top_p_size"}, ("attributed_fn",), "cannot be attributed"),
        ({"attributed_fn": "contrast_prob_diff"}, (), "give contrast_targets"),
        ({"contrast_targets": ["y"]}, (), "read only by contrastive step functions"),
        ({"attributed_fn": "pcxmi", "contrast_targets": ["y", "z"]}, (), "contrast_targets has 2 items"),
        (
            {"attributed_fn": "pcxmi", "contrast_targets": ["y"], "contrast_targets_alignments": [[[0, -1]]]},
            ("contrast_targets_alignments", 0, 0, 1),
            "greater than or equal to 0",
        ),
        ({"step_scores": ["pcxmi"], "contrast_targets_alignments": [[[0, 1]]]}, (), "needs contrast_targets"),
        ({"attributed_fn": "kl_divergence", "contrast_targets": ["y"]}, (), "contrast_force_inputs"),
        ({"generate_from_target_prefix": True}, (), "needs generated_texts"),
    ],
)
def test_step_function_and_contrast_errors(fields: dict, loc: tuple, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AttributionRequest(inputs=["x"], **fields)
    error = caught.value.errors()[0]
    assert error["loc"] == loc and message in error["msg"], error


def test_kl_divergence_is_attributable_on_forced_contrastive_inputs() -> None:
    request = AttributionRequest(
        inputs=["x"],
        attributed_fn="kl_divergence",
        attributed_fn_args={"contrast_force_inputs": True},
        contrast_targets=["y"],
    )
    assert request.attributed_fn_args["contrast_force_inputs"] is True
