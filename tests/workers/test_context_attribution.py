"""PECoRe context attribution (`workers.engine.context_attribution`) against the reference library's
`attribute_context_with_model` (Inseq 0.7.1, the oracle) on tiny models: CTI scores, the selected tokens,
the contextual and contextless outputs, the contrast tokens, CCI scores and cues."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from schemas.context import ContextAttributionRequest

ATOL = 1e-3

CASES: dict[str, dict[str, Any]] = {
    "gpt2-forced": {
        "model": "tiny-gpt2",
        "input_context_text": "George was sick yesterday.",
        "input_current_text": "His colleagues asked him to come",
        "output_current_text": "to work. The cat sat on the mat.",
        "context_sensitivity_std_threshold": 0.0,
    },
    "gpt2-generated": {
        "model": "tiny-gpt2",
        "input_context_text": "George was sick yesterday.",
        "input_current_text": "His colleagues asked him to come",
        "generation_args": {"max_new_tokens": 6},
        "context_sensitivity_std_threshold": 0.5,
    },
    "gpt2-output-context": {
        "model": "tiny-gpt2",
        "input_context_text": "George was sick yesterday.",
        "input_current_text": "His colleagues asked him to come",
        "output_context_text": "to work.",
        "output_current_text": "The cat sat on the mat.",
        "context_sensitivity_topk": 2,
        "attribution_topk": 3,
    },
    "t5-forced": {
        "model": "tiny-t5",
        "input_context_text": "George was sick yesterday.",
        "input_current_text": "The weather is nice today.",
        "output_current_text": "It will rain tomorrow morning.",
        "context_sensitivity_std_threshold": 0.0,
    },
    "bart-generated": {
        "model": "tiny-bart",
        "input_context_text": "George was sick yesterday.",
        "input_current_text": "The weather is nice today.",
        "generation_args": {"max_new_tokens": 6},
        "context_sensitivity_topk": 2,
    },
}


def _reference(inseq_model: Callable[..., Any], tiny_models: dict[str, Any], fields: dict[str, Any]) -> Any:
    from inseq.commands.attribute_context.attribute_context import attribute_context_with_model
    from inseq.commands.attribute_context.attribute_context_args import AttributeContextArgs

    fields = dict(fields)
    model_id = fields.pop("model")
    method = fields.pop("attribution_method", "saliency")
    generation = fields.pop("generation_args", {"max_new_tokens": 20})
    args = AttributeContextArgs(
        model_name_or_path=str(tiny_models[model_id]),
        attribution_method=method,
        attributed_fn=fields.pop("attributed_fn", "contrast_prob_diff"),
        generation_kwargs={**generation, "do_sample": False},
        handle_output_context_strategy="auto",
        show_viz=False,
        save_path=None,
        **fields,
    )
    model = inseq_model(model_id, method)
    return attribute_context_with_model(args, model), model


def _reference_text(ref: Any, model: Any) -> str:
    """The reference's rich-markup rendering as plain text: `{token}(score)` for a context-sensitive token,
    `[token](score)` for a cue."""
    from inseq.commands.attribute_context.attribute_context_helpers import get_scores_threshold
    from inseq.commands.attribute_context.attribute_context_viz_helpers import (
        get_formatted_attribute_context_results,
        get_formatted_procedure_details,
    )

    out = copy.deepcopy(ref)  # the reference's rendering extends the score lists in place
    threshold = get_scores_threshold(out.cti_scores, out.info.context_sensitivity_std_threshold)
    marked = get_formatted_procedure_details(out.info) + "\n\n"
    marked += get_formatted_attribute_context_results(model, out.info, out, threshold)
    score = r"([^\[]*)\((-?[\d.]+)\)"
    plain = re.sub(rf"\[bold dodger_blue1\]{score}\[/bold dodger_blue1\]", r"{\1}(\2)", marked)
    plain = re.sub(rf"\[bold green\]{score}\[/bold green\]", r"[\1](\2)", plain)
    return re.sub(r"\[/?bold[^\]]*\]", "", plain).lstrip("\n")


def _close(ours: list[float] | None, ref: list[float] | None) -> None:
    if ref is None:
        assert ours is None
        return
    assert ours is not None and len(ours) == len(ref)
    assert ours == pytest.approx(list(ref), abs=ATOL)


@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_reference(
    case: str,
    engine_model: Callable[[str], Any],
    inseq_model: Callable[..., Any],
    tiny_models: dict[str, Any],
    torch_single_thread: None,  # noqa: ARG001 (the fixture sets one torch thread)
) -> None:
    from workers.engine.context_attribution import run_context_attribution

    fields = CASES[case]
    progress: list[tuple[int, int]] = []
    request = ContextAttributionRequest(**fields)
    ours = run_context_attribution(
        request, engine_model(request.model), lambda d, t: progress.append((d, t)), result_id="ctx"
    )
    ref, model = _reference(inseq_model, tiny_models, fields)
    assert ours["output_current"] == ref.output_current
    assert ours["output_context"] == ref.output_context
    assert ours["input_context_tokens"] == ref.input_context_tokens
    assert ours["output_context_tokens"] == ref.output_context_tokens
    assert ours["output_current_tokens"] == ref.output_current_tokens
    _close(ours["cti_scores"], ref.cti_scores)
    assert len(ref.cci_scores) >= 1
    assert [c["cti_idx"] for c in ours["cci_scores"]] == [c.cti_idx for c in ref.cci_scores]
    assert ours["cti_selected"] == [c.cti_idx for c in ref.cci_scores]
    for mine, theirs in zip(ours["cci_scores"], ref.cci_scores, strict=True):
        assert mine["cti_token"] == theirs.cti_token
        assert mine["cti_score"] == pytest.approx(theirs.cti_score, abs=ATOL)
        assert mine["contextual_output"] == theirs.contextual_output
        assert mine["contextless_output"] == theirs.contextless_output
        assert mine["contrast_token"] == theirs.contrast_token
        _close(mine["input_context_scores"], theirs.input_context_scores)
        _close(mine["output_context_scores"], theirs.output_context_scores)
    # CTI steps (encoder-decoders also score the closing EOS), then one per CCI attribution.
    cti_steps = len(ours["output_current_tokens"]) + (request.model != "tiny-gpt2")
    assert progress[0] == (0, cti_steps)
    assert progress[-1] == (cti_steps + len(ref.cci_scores),) * 2
    assert ours["text"] == _reference_text(ref, model)
    print(ours["text"])


EXAMPLE = {
    "input_context_text": "George was sick yesterday.",
    "input_current_text": "His colleagues asked him to come",
}


@pytest.fixture(scope="module")
def smollm2() -> Any:
    from schemas.defaults import DEFAULT_MODEL
    from schemas.models import load_registry
    from workers.model_loading import load_model
    from workers.settings import WorkerSettings

    # The converted-weights cache `make serve` uses: the GGUF conversion happens once per machine.
    return load_model(load_registry()[DEFAULT_MODEL], WorkerSettings().model_cache_dir)


@pytest.mark.slow
def test_default_model_finds_the_context_sensitive_tokens_of_the_issue(smollm2: Any) -> None:
    import torch

    from workers.engine.context_attribution import run_context_attribution

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, 2 threads make each forward several times slower
    try:
        generated = run_context_attribution(
            ContextAttributionRequest(**EXAMPLE), smollm2, lambda _d, _t: None, result_id="slow"
        )
        forced = run_context_attribution(
            ContextAttributionRequest(
                **EXAMPLE, output_current_text="to the hospital. He said he was too sick to go"
            ),
            smollm2,
            lambda _d, _t: None,
            result_id="slow",
        )
    finally:
        torch.set_num_threads(threads)
    # The whitespace separator makes the model continue after "come ": " 24" is 'Ġ', '2', '4'.
    assert generated["output_current"].startswith("24 hours later to help with the recovery")
    assert generated["output_current_tokens"][:3] == ["Ġ", "2", "4"]
    assert 1 in generated["cti_selected"]
    assert generated["cci_scores"][0]["cti_token"] == "2"
    tokens = forced["output_current_tokens"]
    second_sick = [i for i, t in enumerate(tokens) if t == "Ġsick"]
    assert len(second_sick) == 1 and second_sick[0] in forced["cti_selected"]
    item = next(c for c in forced["cci_scores"] if c["cti_idx"] == second_sick[0])
    assert item["input_context_scores"] is not None and len(item["input_context_scores"]) == 5
    assert "Generated output (CTI >" in forced["text"] and "{ sick}(" in forced["text"]
