"""The tiny test models load offline, encode with their family's special tokens, and generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.models import read_registry_file
from tests.tiny_models import BOS_ID, EOS_ID, IS_ENCODER_DECODER, PAD_ID, REGISTRY_OMITS_KIND, UNK_ID


def test_registry_lists_every_model(tiny_models: dict[str, Path], tiny_registry: Path) -> None:
    entries = read_registry_file(tiny_registry)
    assert set(entries) == set(tiny_models)
    for model_id, entry in entries.items():
        assert Path(entry.path) == tiny_models[model_id].resolve()
        expected = None if model_id == REGISTRY_OMITS_KIND else IS_ENCODER_DECODER[model_id]
        assert entry.is_encoder_decoder is expected


@pytest.mark.parametrize(
    ("model_id", "prefix", "suffix"),
    [
        ("tiny-gpt2", [], []),
        ("tiny-llama", [BOS_ID], []),
        ("tiny-t5", [], [EOS_ID]),
        ("tiny-bart", [BOS_ID], [EOS_ID]),
        ("tiny-marian", [], [EOS_ID]),
    ],
)
def test_tokenizer_and_generation(
    tiny_models: dict[str, Path], model_id: str, prefix: list, suffix: list
) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models[model_id])
    specials = (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id)
    assert specials == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    ids = tok("The cat sat on the zebra!").input_ids
    assert ids[: len(prefix)] == prefix and ids[len(ids) - len(suffix) :] == suffix
    assert UNK_ID in ids
    text = "Hello, how are you today? I am fine, thank you."
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text
    causal = not IS_ENCODER_DECODER[model_id]
    model = (AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM).from_pretrained(tiny_models[model_id])
    assert model.dtype.is_floating_point and str(model.dtype) == "torch.float32"
    enc = tok(["The cat sat on the mat."], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    new = out[0, enc.input_ids.shape[1] :] if causal else out[0, 1:]
    assert len(new) >= 1
    if not causal:
        assert out[0, 0].item() == model.generation_config.decoder_start_token_id
    if model_id == "tiny-bart":
        assert new[0].item() == BOS_ID
    # Decoding generated ids and encoding the text again is lossless.
    text = tok.decode(new, skip_special_tokens=True)
    kept = [i for i in new.tolist() if i not in (PAD_ID, BOS_ID, EOS_ID, UNK_ID)]
    assert tok(text, add_special_tokens=False).input_ids == kept
