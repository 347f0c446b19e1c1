"""Validation of `ContextAttributionRequest` (`POST /v1/attribute-context`)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.context import ContextAttributionRequest

BASE: dict[str, Any] = {
    "input_context_text": "George was sick yesterday.",
    "input_current_text": "His colleagues asked him to come",
}


def _error(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        ContextAttributionRequest(**{**BASE, **fields})
    return str(info.value)


def test_defaults_are_the_issue_s() -> None:
    request = ContextAttributionRequest(**BASE)
    assert request.context_sensitivity_metric == "kl_divergence"
    assert request.attribution_method == "saliency"
    assert request.attributed_fn == "contrast_prob_diff"
    assert request.handle_output_context_strategy == "auto"
    assert request.decoder_input_output_separator == " "
    assert request.context_sensitivity_std_threshold == request.attribution_std_threshold == 1.0


def test_manual_strategy_is_refused_with_the_reason() -> None:
    message = _error(handle_output_context_strategy="manual")
    assert "asks a person at the terminal" in message and "'auto'" in message


@pytest.mark.parametrize(
    "field",
    [
        "input_template",
        "output_template",
        "contextless_input_current_text",
        "contextless_output_current_text",
    ],
)
def test_templates_without_current_are_refused(field: str) -> None:
    assert f"{field} must contain the {{current}} placeholder" in _error(**{field: "{context} only"})


def test_input_template_with_context_needs_an_input_context() -> None:
    message = _error(input_context_text=None, input_template="{context} {current}")
    assert "input_context_text" in message


def test_output_context_must_come_before_current() -> None:
    assert "before {current}" in _error(output_template="{current} {context}", output_context_text="x")


def test_pre_strategy_needs_the_output_context() -> None:
    assert "needs output_context_text" in _error(
        handle_output_context_strategy="pre", output_template="{context} {current}"
    )


def test_cti_metric_must_be_contrastive_and_cci_fn_attributable() -> None:
    assert "must be a contrastive step function" in _error(context_sensitivity_metric="probability")
    assert "is not an attributable step function" in _error(attributed_fn="no_such_fn")


def test_method_args_are_validated_by_the_method() -> None:
    assert "n_steps" in _error(attribution_method="integrated_gradients", method_args={"n_steps": "many"})
    request = ContextAttributionRequest(**BASE, attribution_method="integrated_gradients")
    assert "n_steps" in request.method_args
