"""A tiny M2M100-style multilingual translation model, built offline: a word-level SentencePiece model trained
on the test corpus, the real `M2M100Tokenizer` (language codes `__en__`, `__fr__`, ...) and a seeded,
random-init `M2M100ForConditionalGeneration`. Generation in a language starts with its code, forced as the
first token (`forced_bos_token_id`), as the reference library's multilingual tutorial does."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

MODEL_ID = "tiny-m2m100"
SOURCE_LANG, TARGET_LANG = "en", "fr"


def make_m2m100_tokenizer(corpus: list[str]):
    """An `M2M100Tokenizer` whose vocabulary is every word of `corpus` (plus <s>, <pad>, </s>, <unk>)."""
    import sentencepiece as spm
    from transformers import M2M100Tokenizer

    with tempfile.TemporaryDirectory(prefix="tiny-m2m100-") as tmp:
        folder = Path(tmp)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus),
            model_prefix=str(folder / "spm"),
            model_type="word",
            vocab_size=1000,
            hard_vocab_limit=False,
            character_coverage=1.0,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            minloglevel=2,
        )
        processor = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for i in range(processor.get_piece_size()):
            vocab.setdefault(processor.id_to_piece(i), len(vocab))
        (folder / "vocab.json").write_text(json.dumps(vocab))
        return M2M100Tokenizer(
            vocab_file=str(folder / "vocab.json"),
            spm_file=str(folder / "spm.model"),
            src_lang=SOURCE_LANG,
            tgt_lang=TARGET_LANG,
            model_max_length=128,
        )


def build_tiny_m2m100(folder: Path, corpus: list[str], seed: int = 0) -> Path:
    """Build the tiny M2M100 (seeded) and `save_pretrained` it with its tokenizer into `folder`."""
    import torch
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration

    tokenizer = make_m2m100_tokenizer(corpus)
    # Language codes come after the words (and are not all in get_vocab()).
    vocab_size = max(*tokenizer.get_vocab().values(), *tokenizer.lang_token_to_id.values()) + 1
    ids = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 2}
    config = M2M100Config(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        init_std=0.2,
        **ids,
    )
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(config).float().eval()
    model.generation_config = GenerationConfig(**ids, do_sample=False, max_new_tokens=20)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
