"""Tiny, seeded, random-init transformers models (and trained tokenizers) for tests; nothing is downloaded.

`build_tiny_models(root)` writes one `save_pretrained` folder per model id (weights + tokenizer + generation
config) and returns id -> folder; `write_registry(root, models)` writes a model registry TOML for them
(the format of `schemas/models.py`). Building everything takes about a second on CPU.

Token conventions mimic the real families:
- tiny-gpt2: no special tokens added when encoding (like GPT-2); bos/eos/unk/pad are still defined.
- tiny-llama: `<s>` prepended (like Llama).
- tiny-t5 / tiny-marian: `</s>` appended; decoder starts with `<pad>` (like T5/Marian).
- tiny-bart: `<s> ... </s>`; decoder starts with `</s>`, then `<s>` is forced (like BART).

The tokenizer is word level with SentencePiece-style "▁" spaces (punctuation stays attached to its word):
decoding is the exact inverse of encoding for single-spaced texts made of CORPUS words, and generated ids
survive decode + encode (as the reference library does with greedy generations). Unknown words become
<unk>, which decoding with skip_special_tokens drops: test inputs should use CORPUS words.
"""

from __future__ import annotations

from pathlib import Path

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
VOCAB_SIZE = 400
"""Upper bound for the word-level vocabulary (4 specials + every space-separated word of CORPUS)."""

CAUSAL = ("tiny-gpt2", "tiny-llama")
SEQ2SEQ = ("tiny-t5", "tiny-bart", "tiny-marian")
MULTILINGUAL = ("tiny-m2m100",)
"""Translation models with source/target languages (see tests/tiny_multilingual.py)."""
IS_ENCODER_DECODER = {**dict.fromkeys(CAUSAL, False), **dict.fromkeys(SEQ2SEQ + MULTILINGUAL, True)}

REGISTRY_OMITS_KIND = "tiny-marian"
"""The registry entry that leaves `is_encoder_decoder` out, so the loader reads it from the model's config."""

CORPUS = [
    "Hello world, this is a test.",
    "The quick brown fox jumps over the lazy dog.",
    "George was sick yesterday.",
    "His colleagues asked him to come to work.",
    "The cat sat on the mat.",
    "A dog barked at the mailman.",
    "She reads a book every evening.",
    "We went to the park on Sunday.",
    "The weather is nice today.",
    "It will rain tomorrow morning.",
    "My friend likes green apples.",
    "They played football after school.",
    "The teacher wrote on the board.",
    "I drink coffee in the morning.",
    "The train arrives at noon.",
    "He opened the door and smiled.",
    "Birds sing in the tall trees.",
    "The children laughed at the clown.",
    "Please close the window.",
    "Where is the nearest station?",
    "The movie was long but good.",
    "Our house has a red roof.",
    "The river flows to the sea.",
    "Music makes people happy.",
    "The doctor said he should rest.",
    "A small boat crossed the lake.",
    "Hello, how are you today?",
    "I am fine, thank you.",
    "The computer is on the desk.",
    "Translate this sentence into French.",
    "Summarize the following text.",
    "The answer is yes.",
    "Apples and oranges are fruits.",
    "The sun rises in the east.",
    "Winter is cold and summer is hot.",
    "She gave him a present for his birthday.",
    "Das Haus ist klein.",
    "Le chat est noir.",
    "Numbers like one, two and three are easy.",
    "Can you help me find my keys?",
    "The old man walked slowly home.",
    "Yesterday we cooked pasta with tomato sauce.",
    "The library closes at eight in the evening.",
    "Please send the report before Friday.",
    "Every student must bring a pencil!",
    "The garden is full of flowers and bees.",
    "Why did the chicken cross the road?",
    "Good night and sweet dreams.",
]


def _tokenizer_object(model_id: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    # Word level with SentencePiece-style spaces: every token is "▁" + a space-free word (punctuation stays
    # attached: "▁mat."), anything unseen is <unk>. Decoding joins tokens with spaces, so it is the exact
    # inverse of encoding (the reference library checks that a decoder-only generation starts with its
    # prompt text), and decoding then encoding any generated ids gives them back.
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.WordLevelTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID]
    specials = [(BOS, BOS_ID), (EOS, EOS_ID)]
    if model_id == "tiny-llama":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=specials
        )
    elif model_id in ("tiny-t5", "tiny-marian"):
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=specials
        )
    elif model_id == "tiny-bart":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} {EOS} $B {EOS}", special_tokens=specials
        )
    # tiny-gpt2: like GPT-2, encoding adds nothing
    return tok


def make_tokenizer(model_id: str):
    """A `PreTrainedTokenizerFast` with bos/eos/unk/pad for `model_id`'s conventions."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer_object(model_id),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=128,
        clean_up_tokenization_spaces=False,
    )


# BART and Marian share one architecture; only their special-token conventions differ.
_BART_LIKE = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 128,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "init_std": 0.2,
}


def _model(model_id: str, vocab_size: int):
    import transformers as tf

    ids = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    if model_id == "tiny-gpt2":
        config = tf.GPT2Config(
            vocab_size=vocab_size,
            n_positions=128,
            n_embd=32,
            n_layer=2,
            n_head=2,
            initializer_range=0.2,
            **ids,
        )
        return tf.GPT2LMHeadModel(config)
    if model_id == "tiny-llama":
        config = tf.LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            initializer_range=0.2,
            tie_word_embeddings=False,
            **ids,
        )
        return tf.LlamaForCausalLM(config)
    if model_id == "tiny-t5":
        config = tf.T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            dropout_rate=0.0,
            initializer_factor=1.0,
            decoder_start_token_id=PAD_ID,
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
        )
        return tf.T5ForConditionalGeneration(config)
    if model_id == "tiny-bart":
        config = tf.BartConfig(
            vocab_size=vocab_size,
            **_BART_LIKE,
            decoder_start_token_id=EOS_ID,
            forced_eos_token_id=None,
            **ids,
        )
        return tf.BartForConditionalGeneration(config)
    if model_id == "tiny-marian":
        config = tf.MarianConfig(
            vocab_size=vocab_size,
            decoder_vocab_size=vocab_size,
            **_BART_LIKE,
            decoder_start_token_id=PAD_ID,
            forced_eos_token_id=None,
            **ids,
        )
        return tf.MarianMTModel(config)
    raise ValueError(f"unknown tiny model {model_id!r}")


def build_tiny_model(model_id: str, folder: Path, seed: int = 0) -> Path:
    """Build one tiny model (seeded) and `save_pretrained` it with its tokenizer into `folder`."""
    import torch
    from transformers import GenerationConfig

    if model_id in MULTILINGUAL:
        from tests.tiny_multilingual import build_tiny_m2m100

        return build_tiny_m2m100(folder, CORPUS, seed)

    tokenizer = make_tokenizer(model_id)
    torch.manual_seed(seed)
    model = _model(model_id, len(tokenizer)).float().eval()
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
        # Like facebook/bart-*: generations start with </s> <s>, as decoding and re-encoding gives them.
        forced_bos_token_id=BOS_ID if model_id == "tiny-bart" else None,
        do_sample=False,
        max_new_tokens=20,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_models(
    root: Path, model_ids: tuple[str, ...] = CAUSAL + SEQ2SEQ + MULTILINGUAL
) -> dict[str, Path]:
    """Build every tiny model under `root/<id>`; returns id -> folder."""
    root = Path(root)
    return {mid: build_tiny_model(mid, root / mid, seed=i) for i, mid in enumerate(model_ids)}


def write_registry(root: Path, models: dict[str, Path]) -> Path:
    """Write `root/models.toml` with one `[models.<id>]` table per model (absolute paths)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["# Tiny random-init test models (tests/tiny_models.py)."]
    for model_id, folder in models.items():
        lines += [
            "",
            f"[models.{model_id}]",
            f'path = "{Path(folder).resolve().as_posix()}"',
            f'description = "tiny random-init {model_id.removeprefix("tiny-")} for tests"',
        ]
        if model_id != REGISTRY_OMITS_KIND:
            lines.append(f"is_encoder_decoder = {str(IS_ENCODER_DECODER[model_id]).lower()}")
    path = root / "models.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
