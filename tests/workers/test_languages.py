"""Multilingual translation models: `source_lang` / `target_lang` set the tokenizer's languages for one job
(and are restored after it) and start generation with the target language's code; unknown codes, and
models without languages, are refused with the valid codes. Checked against the reference library too,
loaded as its multilingual tutorial does (tokenizer languages, forced first token)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.errors import InvalidRequestError
from tests.tiny_multilingual import MODEL_ID, SOURCE_LANG, TARGET_LANG
from tests.workers.parity import assert_sequence_matches, expected_sequences

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SOURCE = "The cat sat on the mat."
TARGET = "Le chat est noir."


def _tokens(seq: dict[str, Any], side: str) -> list[str]:
    return [t["token"] for t in seq[side]]


def test_languages_set_the_codes_and_the_first_generated_token(run_engine, engine_model) -> None:
    result = run_engine(
        model=MODEL_ID,
        inputs=[SOURCE],
        source_lang="de",
        target_lang="fr",
        generation_args={"max_new_tokens": 4},
    )
    [seq] = result["sequences"]
    assert _tokens(seq, "source")[0] == "__de__" and _tokens(seq, "source")[-1] == "</s>"
    assert _tokens(seq, "target")[:2] == ["</s>", "__fr__"]  # decoder start, then the forced language
    tokenizer = engine_model(MODEL_ID).tokenizer
    assert (tokenizer.src_lang, tokenizer.tgt_lang) == (SOURCE_LANG, TARGET_LANG)  # restored after the job
    forced = run_engine(model=MODEL_ID, inputs=[SOURCE], generated_texts=[TARGET], target_lang="de")
    assert _tokens(forced["sequences"][0], "target")[:2] == ["</s>", "__de__"]


def test_unknown_codes_and_models_without_languages_are_refused(run_engine) -> None:
    with pytest.raises(InvalidRequestError, match="target_lang 'xx' is not a language") as caught:
        run_engine(model=MODEL_ID, inputs=[SOURCE], target_lang="xx")
    assert "fr" in caught.value.extensions["available"]
    with pytest.raises(InvalidRequestError, match="has no source/target languages"):
        run_engine(model="tiny-t5", inputs=[SOURCE], source_lang="en")


def test_parity_with_the_reference_tutorial(tiny_models, run_engine) -> None:
    import inseq

    model = inseq.load_model(
        str(tiny_models[MODEL_ID]),
        "saliency",
        tokenizer_kwargs={"src_lang": "en", "tgt_lang": "fr"},
        model_kwargs={"attn_implementation": "eager"},
    )
    out = model.attribute(SOURCE, TARGET, step_scores=["probability"], show_progress=False)
    got = run_engine(
        model=MODEL_ID,
        inputs=[SOURCE],
        generated_texts=[TARGET],
        source_lang="en",
        target_lang="fr",
        step_scores=["probability"],
    )
    assert_sequence_matches(got["sequences"][0], expected_sequences(out)[0], step_scores=["probability"])
