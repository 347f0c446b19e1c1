"""Embedding inputs and running the model from embeddings, for either model kind.

Everything the methods need from a model goes through `SequenceIO`, so methods never care whether the
model is decoder-only or encoder-decoder. Inputs are a tuple of embedding tensors `[batch, length, hidden]`:
`(target,)` for decoder-only models, `(source, target)` for encoder-decoder models.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from workers.engine.sequences import EncodedSequence
from workers.types import LoadedModel


@dataclass
class ForwardOutput:
    """Logits at the requested decoder positions and, when asked for, attention weights."""

    logits: torch.Tensor  # [batch, n_positions, vocab]
    head_rows: list[int]  # for each position, the row of the LM head's input that produced its logits
    decoder_attentions: tuple[torch.Tensor, ...] | None = None  # per layer [batch, heads, tgt, tgt]
    cross_attentions: tuple[torch.Tensor, ...] | None = None  # per layer [batch, heads, tgt, src]


@contextmanager
def dropout_active(model: torch.nn.Module) -> Iterator[None]:
    """The model in training mode (dropout on) for the block, back to its mode afterwards in any case."""
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        model.train(was_training)


def config_int(config: object, *names: str, default: int) -> int:
    """The first of `names` the model config sets (configs name the same size differently)."""
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return default


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


class SequenceIO:
    """Embeds one encoded sequence and runs forwards on (perturbed or interpolated) copies of it."""

    def __init__(self, loaded: LoadedModel, sequence: EncodedSequence, include_eos_baseline: bool = False):
        self.loaded = loaded
        self.model = loaded.model
        self.sequence = sequence
        self.is_encoder_decoder = loaded.is_encoder_decoder
        device = loaded.device
        self.target_ids = torch.tensor([sequence.target_ids], device=device)
        self.source_ids = torch.tensor([sequence.source_ids], device=device)
        self.include_eos_baseline = include_eos_baseline
        self._logits_to_keep = not self.is_encoder_decoder and _accepts_logits_to_keep(self.model)

    # -- embeddings -------------------------------------------------------------------------------------
    def embed_layer(self, as_target: bool) -> torch.nn.Module:
        if self.is_encoder_decoder and as_target:
            return self.model.get_decoder().get_input_embeddings()
        if self.is_encoder_decoder:
            return self.model.get_encoder().get_input_embeddings()
        return self.model.get_input_embeddings()

    def embed(self, ids: torch.Tensor, as_target: bool) -> torch.Tensor:
        return self.embed_layer(as_target)(ids)

    def input_embeds(self) -> tuple[torch.Tensor, ...]:
        target = self.embed(self.target_ids, as_target=True)
        if self.is_encoder_decoder:
            return (self.embed(self.source_ids, as_target=False), target)
        return (target,)

    def baseline_ids(self, ids: torch.Tensor) -> torch.Tensor:
        tok = self.loaded.tokenizer
        unk = tok.unk_token_id if tok.unk_token_id is not None else (tok.pad_token_id or 0)
        baseline = torch.full_like(ids, unk)
        eos = tok.eos_token_id
        if not self.include_eos_baseline and eos is not None:
            baseline = torch.where(ids == eos, ids, baseline)
        return baseline

    def baseline_embeds(self) -> tuple[torch.Tensor, ...]:
        """UNK embeddings everywhere but EOS (kept unless `include_eos_baseline`); the decoder start stays."""
        target_base = self.baseline_ids(self.target_ids)
        if self.is_encoder_decoder:
            target_base[:, 0] = self.target_ids[:, 0]
            return (
                self.embed(self.baseline_ids(self.source_ids), as_target=False),
                self.embed(target_base, as_target=True),
            )
        return (self.embed(target_base, as_target=True),)

    # -- forward ----------------------------------------------------------------------------------------
    def forward(
        self, embeds: tuple[torch.Tensor, ...], positions: list[int], output_attentions: bool = False
    ) -> ForwardOutput:
        """Logits predicting `target_ids[p]` for each p in `positions` (read at decoder position p - 1).

        Causal masking makes position p - 1 of a full-sequence forward equal to a forward over the prefix
        `[:p]`, so one forward serves every step.
        """
        index = torch.tensor([p - 1 for p in positions], device=self.loaded.device)
        batch = embeds[0].shape[0]
        if self.is_encoder_decoder:
            source, target = embeds
            out = self.model(
                inputs_embeds=source,
                attention_mask=torch.ones(source.shape[:2], dtype=torch.long, device=source.device),
                decoder_inputs_embeds=target,
                decoder_attention_mask=torch.ones(target.shape[:2], dtype=torch.long, device=target.device),
                output_attentions=output_attentions,
                use_cache=False,
            )
            # Step functions (softmax, logs, differences) run in float32 whatever the model's dtype.
            logits = out.logits[:, index].float()
            return ForwardOutput(logits, index.tolist(), out.decoder_attentions, out.cross_attentions)
        (target,) = embeds
        kwargs = {"logits_to_keep": index} if self._logits_to_keep and not output_attentions else {}
        out = self.model(
            inputs_embeds=target,
            attention_mask=torch.ones((batch, target.shape[1]), dtype=torch.long, device=target.device),
            output_attentions=output_attentions,
            use_cache=False,
            **kwargs,
        )
        if kwargs:  # the head only saw the kept positions, in order
            return ForwardOutput(out.logits.float(), list(range(len(positions))), None, None)
        return ForwardOutput(
            out.logits[:, index].float(), index.tolist(), out.attentions if output_attentions else None
        )

    def step_targets(self, positions: list[int]) -> torch.Tensor:
        return self.target_ids[0, positions]
