"""Perturbation methods: occlusion, LIME, ReAGent and value zeroing.

Each perturbed copy is a copy of the whole sequence (cut after the chunk's last step), so one forward of it
scores every step of the chunk at once (`workers.engine.perturb`); copies are batched through the model.
The reference library instead runs one forward per copy and per step.
"""

from __future__ import annotations

import secrets

import torch

from schemas.errors import InvalidRequestError
from schemas.methods import LimeArgs, OcclusionArgs, ReagentArgs, ValueZeroingArgs
from workers.engine.model_io import SequenceIO
from workers.engine.perturb import (
    copies_per_forward,
    ids_logits,
    length_chunks,
    prefix,
    score_copies,
    weighted_ridge,
    window_average,
    window_starts,
)
from workers.engine.reagent import ProbeTask, reagent_probe
from workers.engine.value_zeroing import Metric, layer_distances
from workers.engine.value_zeroing_runs import (
    MIN_SCORE,
    decoder_only_run,
    decoder_run,
    ones,
    pad_target,
    stack_of,
    zeroed_heads,
)
from workers.engine.value_zeroing_runs import (
    copies_per_forward as zeroed_copies_per_forward,
)
from workers.methods.base import AttributionMethod, attributed_inputs, mask_after_step, raw_scores
from workers.types import RawScores, ScoreFn


def _generator(seed: int | None) -> torch.Generator:
    """A CPU generator of its own (the global RNG is never touched); draws are moved to the model's device,
    so a seed gives the same numbers on any device."""
    return torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))


REAGENT_EXPECTED_ROUNDS = 100
"""Probing rounds counted by ReAGent's cost estimate (`max_probe_steps` is an upper bound rarely reached)."""


# ---------------------------------------------------------------------------------------------------------
# Occlusion


class Occlusion(AttributionMethod):
    """Occlusion (Zeiler and Fergus, 2014) as captum's `Occlusion` under the reference library: a window of
    `sliding_window` tokens (their whole embedding) is replaced by the baseline, moving by `stride`; a token's
    score is |mean over the windows covering it of (original output - occluded output)|.

    One copy per window, shared by every step: the window at `a` occludes the same tokens of every step's
    prefix that contains them, and each step uses the windows captum would lay over its own prefix (the first
    few of the longest one's). So the cost is one forward per window, batched, not one per window and step.
    """

    id = "occlusion"
    args: OcclusionArgs

    def cost(self, n_steps: int, length: int) -> int:  # noqa: ARG002 - one forward per window
        return -(-length // self.args.stride) * length

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:  # noqa: ARG002
        return [positions]  # every step from the same copies: one chunk is always the cheapest

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        window, stride = self.args.sliding_window, self.args.stride
        if stride > window:
            raise InvalidRequestError(
                f"occlusion: stride ({stride}) must not exceed sliding_window ({window}): tokens between "
                "windows would get no score"
            )
        inputs = prefix(io.input_embeds(), positions)
        baselines = prefix(io.baseline_embeds(), positions)
        last = len(inputs) - 1
        # Per occluded input: each step's input length (its prefix on the target side) and the windows.
        plans: list[tuple[int, list[int], list[int]]] = []
        for k, want in enumerate(attributed_inputs(io, attribute_target)):
            if want:
                lengths = list(positions) if k == last else [inputs[k].shape[1]] * len(positions)
                plans.append((k, lengths, window_starts(max(lengths), window, stride)))
        copies: list[tuple[int, int]] = [(-1, 0)]  # copy 0: nothing occluded (the original output)
        copies += [(k, start) for k, _, starts in plans for start in starts]

        def make_copies(lo: int, hi: int) -> tuple[torch.Tensor, ...]:
            batch = []
            for k, (x, base) in enumerate(zip(inputs, baselines, strict=True)):
                rows = [(row, start) for row, (ck, start) in enumerate(copies[lo:hi]) if ck == k]
                if not rows:
                    batch.append(x)
                    continue
                occluded = x.expand(hi - lo, -1, -1).clone()
                for row, start in rows:
                    occluded[row, start : start + window] = base[0, start : start + window]
                batch.append(occluded)
            return tuple(batch)

        scores = score_copies(io, len(copies), make_copies, positions, attributed_fn)
        diffs = scores[:1] - scores[1:]
        per_input: list[torch.Tensor | None] = [None] * len(inputs)
        offset = 0
        for k, lengths, starts in plans:
            part = diffs[offset : offset + len(starts)]
            offset += len(starts)
            per_input[k] = window_average(part, starts, lengths, window, stride, inputs[k].shape[1]).abs()
        return raw_scores(io, per_input, positions)


# ---------------------------------------------------------------------------------------------------------
# LIME


class Lime(AttributionMethod):
    """LIME (Ribeiro et al., 2016) as the reference library's `Lime`: `n_samples` copies with each token
    replaced with probability `mask_prob`, a Ridge regression (alpha 1, intercept) of the attributed output on
    the copies' embeddings, each copy weighted by the number of embedding values it shares with the input.

    The coefficients have one value per token and hidden unit (unit dims `["hidden"]`, L2 norm by default).
    A token's hidden values move together (x or baseline), so the regression on `length x hidden` features
    equals one on a feature per token (kept or not, scaled by |x - baseline|), expanded back along
    x - baseline: same numbers, a system of `length` (or `n_samples`) unknowns instead of `length x hidden`.

    Replaced tokens get the baseline (UNK) embedding; the reference fills them with the UNK token's *id* as a
    number in every hidden unit, which is no embedding at all. The copies are shared by every step of the
    chunk, and the masks are drawn over the whole sequence from `seed`, so the scores do not depend on how
    steps are chunked. Encoder-decoder `attribute_target` is supported (source and target prefix tokens are
    the features; the reference refuses it).
    """

    id = "lime"
    args: LimeArgs

    def cost(self, n_steps: int, length: int) -> int:  # noqa: ARG002 - the copies serve every step
        return self.args.n_samples * length

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:  # noqa: ARG002
        return [positions]

    def attribute(
        self, io: SequenceIO, positions: list[int], attributed_fn: ScoreFn, attribute_target: bool
    ) -> RawScores:
        full = io.input_embeds()
        generator = _generator(self.args.seed)
        n = self.args.n_samples
        # Keep masks over the whole sequence (then cut), so a seed gives the same draws whatever the chunk.
        keeps = [
            (torch.rand((n, x.shape[1]), generator=generator) >= self.args.mask_prob).to(x.device)
            if want
            else None
            for x, want in zip(full, attributed_inputs(io, attribute_target), strict=True)
        ]
        inputs = prefix(full, positions)
        baselines = prefix(io.baseline_embeds(), positions)
        keeps = [None if k is None else k[:, : x.shape[1]] for k, x in zip(keeps, inputs, strict=True)]

        def make_copies(lo: int, hi: int) -> tuple[torch.Tensor, ...]:
            return tuple(
                x if keep is None else torch.where(keep[lo:hi, :, None], x, base)
                for x, base, keep in zip(inputs, baselines, keeps, strict=True)
            )

        outputs = score_copies(io, n, make_copies, positions, attributed_fn)  # [n, n_steps]
        last = len(inputs) - 1
        # Features: every attributed token of every input; a step reads its source and its target prefix.
        deltas, kept, equal, reads = [], [], [], []
        for k, (x, base, keep) in enumerate(zip(inputs, baselines, keeps, strict=True)):
            if keep is None:
                continue
            delta = (x - base)[0].double()  # [length, hidden]
            deltas.append(delta)
            kept.append(keep)
            # Similarity (the reference's kernel): embedding values equal to the input's, per token.
            same = (x == base)[0].sum(dim=-1)
            equal.append(torch.where(keep, x.shape[-1], same[None]).double())
            if k == last:  # the target prefix of each step
                rows = torch.arange(x.shape[1], device=x.device)[None, :]
                reads.append(rows < torch.tensor(positions, device=x.device)[:, None])
            else:
                reads.append(torch.ones((len(positions), x.shape[1]), dtype=torch.bool, device=x.device))
        delta = torch.cat(deltas)
        norm = torch.linalg.vector_norm(delta, dim=-1)  # [features]
        read = torch.cat(reads, dim=1).double()  # [n_steps, features]
        features = torch.cat(kept, dim=1).double() * norm  # [n, features]
        similarity = torch.cat(equal, dim=1) @ read.T  # [n, n_steps]
        coef = weighted_ridge(features[None] * read[:, None], outputs.T, similarity.T)  # [n_steps, features]
        direction = delta / norm.clamp_min(1e-300)[:, None]  # a token equal to its baseline gets 0
        granular = (coef.T[:, :, None] * direction[:, None, :]).float()  # [features, n_steps, hidden]
        per_input: list[torch.Tensor | None] = [None] * len(inputs)
        offset = 0
        for k, keep in enumerate(keeps):
            if keep is not None:
                per_input[k] = granular[offset : offset + keep.shape[1]]
                offset += keep.shape[1]
        return raw_scores(io, per_input, positions)


# ---------------------------------------------------------------------------------------------------------
# ReAGent


class Reagent(AttributionMethod):
    """ReAGent (Zhao and Shan, 2024): see `workers.engine.reagent.reagent_probe`.

    Replacement tokens are proposed by the job's own model: for a target-side token, its next-token
    distribution after the token's (original) prefix, without the token itself and special tokens; where the
    model predicts nothing (source tokens, the first target token), uniformly among the other non-special
    tokens. The reference samples tokens with the same part-of-speech tag instead (an NLTK tagger over the
    vocabulary). Like the reference, the scores read the target's probability, whatever the attributed
    function.
    """

    id = "reagent"
    args: ReagentArgs

    def cost(self, n_steps: int, length: int) -> int:
        # Two forwards per probe and round; probes usually stop within tens of rounds, so the estimate
        # counts at most REAGENT_EXPECTED_ROUNDS of the `max_probe_steps` allowed.
        rounds = min(self.args.max_probe_steps, REAGENT_EXPECTED_ROUNDS)
        return n_steps * self.args.num_probes * rounds * 2 * length

    def plan(self, io: SequenceIO, positions: list[int]) -> list[list[int]]:  # noqa: ARG002
        return [positions]

    def attribute(
        self,
        io: SequenceIO,
        positions: list[int],
        attributed_fn: ScoreFn,  # noqa: ARG002 - the reference always reads the target probability
        attribute_target: bool,
    ) -> RawScores:
        if self.args.replacing_model is not None:
            raise InvalidRequestError(
                "reagent: replacing_model is not supported yet; leave it null to propose replacements with "
                "the job's own model"
            )
        last = max(positions)
        target = io.target_ids[:, :last]
        source = io.source_ids if io.is_encoder_decoder else None
        logits = ids_logits(io, (target,) if source is None else (source, target))
        original = logits[0].float()  # [last, vocab]: the unperturbed prediction at every target position
        task = self._task(io, positions, original, attribute_target)
        n_source = 0 if source is None else source.shape[1]
        attributes_source = source is not None
        attributes_target = source is None or attribute_target
        rows_per_forward = copies_per_forward(io, 1)
        lengths = torch.tensor(positions)  # the decoder prefix each step reads

        def predict(ids: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
            parts = []
            row_lengths = lengths[steps.cpu()]
            # Each row runs on its own step's prefix only: rows of close lengths share a forward.
            for lo, hi in length_chunks(row_lengths.tolist(), rows_per_forward):
                chunk, n = ids[lo:hi], int(row_lengths[lo:hi].max())
                src = chunk[:, :n_source] if attributes_source else None
                if attributes_target:
                    tgt = chunk[:, n_source : n_source + n]
                else:
                    tgt = target[:, :n].expand(hi - lo, -1)
                reads = row_lengths[lo:hi] - 1  # each row's logits at its step's last prefix position
                parts.append(ids_logits(io, (tgt,) if src is None else (src, tgt), reads))
            return torch.cat(parts)

        scores = reagent_probe(task, predict, self.args, _generator(self.args.seed)).T  # [features, n_steps]
        per_input: list[torch.Tensor | None] = [None, None] if source is not None else [None]
        if attributes_source:
            per_input[0] = scores[:n_source]
        if attributes_target:
            per_input[-1] = scores[n_source:]
        return raw_scores(io, per_input, positions)

    def _task(
        self, io: SequenceIO, positions: list[int], original: torch.Tensor, attribute_target: bool
    ) -> ProbeTask:
        device = io.loaded.device
        last = max(positions)
        target_ids = io.target_ids[0, :last]
        vocab = original.shape[-1]
        allowed = torch.zeros(vocab, dtype=torch.bool, device=device)
        allowed[: min(vocab, len(io.loaded.tokenizer))] = True
        special = [i for i in io.loaded.tokenizer.all_special_ids if i < vocab]
        allowed[special] = False
        # Target-side proposals: the model's next-token distribution after each token's prefix.
        predicted = torch.softmax(original, dim=-1)
        uniform = allowed.float()[None]
        target_proposal = torch.cat([uniform, predicted[:-1] * allowed]) if last > 1 else uniform
        parts = [(target_ids, target_proposal)]
        reads = [torch.arange(last, device=device)[None, :] < torch.tensor(positions, device=device)[:, None]]
        if io.is_encoder_decoder:
            source_ids = io.source_ids[0]
            source_part = (source_ids, uniform.expand(len(source_ids), -1))
            source_reads = torch.ones((len(positions), len(source_ids)), dtype=torch.bool, device=device)
            if attribute_target:
                parts, reads = [source_part, *parts], [source_reads, *reads]
            else:
                parts, reads = [source_part], [source_reads]
        ids = torch.cat([p[0] for p in parts])
        rows = torch.arange(len(ids), device=device)
        proposal = torch.cat([p[1] for p in parts]).clone()
        proposal[rows, ids] = 0.0  # a replacement is another token
        fallback = uniform.expand(len(ids), -1).clone()  # where the model gives no other token any mass
        fallback[rows, ids] = 0.0
        proposal = torch.where(proposal.sum(dim=-1, keepdim=True) > 0, proposal, fallback)
        stays = proposal.sum(dim=-1) <= 0  # no other token allowed at all: the token stays
        proposal[stays, ids[stays]] = 1.0
        proposal = proposal / proposal.sum(dim=-1, keepdim=True)
        step_index = torch.tensor([p - 1 for p in positions], device=device)
        targets = io.target_ids[0, positions]
        p_original = predicted[step_index].gather(1, targets[:, None])[:, 0]
        return ProbeTask(ids, torch.cat(reads, dim=1), targets, p_original, proposal)


# ---------------------------------------------------------------------------------------------------------
# Value zeroing


def normalised(distances: torch.Tensor, positions: list[int] | None) -> torch.Tensor:
    """`[tokens, n_steps, layers]` distances → scores: below `MIN_SCORE` set to 0, tokens at or after the step
    NaN (with `positions`, for self-attention over the target), then each (step, layer) scaled to sum 1 over
    the tokens (an all-zero one stays zero), as the reference normalises each generated position."""
    scores = torch.where(distances < MIN_SCORE, torch.zeros_like(distances), distances)
    if positions is not None:
        scores = mask_after_step(scores, positions)
    total = scores.nansum(dim=0, keepdim=True)
    return scores / torch.where(total == 0, torch.ones_like(total), total)


class ValueZeroing(AttributionMethod):
    """Value zeroing (Mohebbi et al., 2023): for token t and layer l, the distance between layer l's output
    and its output when t's value vectors are zeroed in layer l's attention, read at the position predicting
    each step. Decoder-only: target scores from the self-attention; encoder-decoder: source scores from the
    cross-attention, target scores (with `attribute_target`) from the decoder self-attention.

    Output-agnostic (`attributed_fn` does not change the scores), and a final-step method as in the reference:
    the forward in which token t is zeroed gives t's scores for every step, so the cost is one batched
    forward row per attributed token, whatever the number of steps.
    """

    id = "value_zeroing"
    args: ValueZeroingArgs

    def cost(self, n_steps: int, length: int) -> int:  # noqa: ARG002 - one forward per zeroed token
        return length * length

    def attribute(
        self,
        io: SequenceIO,
        positions: list[int],
        attributed_fn: ScoreFn,  # noqa: ARG002 - value zeroing does not depend on the output
        attribute_target: bool,
    ) -> RawScores:
        metric: Metric = self.args.similarity_metric
        prefix = max(positions)  # later target tokens reach no attributed step (causal decoder)
        rows = [p - 1 for p in positions]
        model = io.model
        name = io.loaded.architecture
        config = model.config
        device = io.loaded.device
        with torch.inference_mode():
            embeds = io.input_embeds()
            target = embeds[-1][:, :prefix]
            if not io.is_encoder_decoder:
                stack = stack_of(model.base_model, config, "self", name)
                heads = zeroed_heads(
                    self.args.decoder_zeroed_units_indices, stack, "decoder_zeroed_units_indices"
                )
                run = decoder_only_run(model.base_model, target)
                dist = layer_distances(
                    stack,
                    run,
                    list(range(prefix)),
                    rows,
                    heads,
                    metric,
                    zeroed_copies_per_forward(io, prefix, 0),
                ).to(device)
                return RawScores(source=None, target=normalised(pad_target(dist, io), positions))
            encoder, decoder = model.get_encoder(), model.get_decoder()
            source = embeds[0]
            memory = encoder(
                inputs_embeds=source, attention_mask=ones(1, source.shape[1], source.device)
            ).last_hidden_state
            run = decoder_run(decoder, target, memory)
            per_forward = zeroed_copies_per_forward(io, prefix, memory.shape[1])
            cross = stack_of(decoder, config, "cross", name)
            heads = zeroed_heads(self.args.cross_zeroed_units_indices, cross, "cross_zeroed_units_indices")
            dist = layer_distances(cross, run, list(range(memory.shape[1])), rows, heads, metric, per_forward)
            source_scores = normalised(dist.to(device), None)
            target_scores = None
            if attribute_target:
                own = stack_of(decoder, config, "self", name)
                heads = zeroed_heads(
                    self.args.decoder_zeroed_units_indices, own, "decoder_zeroed_units_indices"
                )
                dist = layer_distances(own, run, list(range(prefix)), rows, heads, metric, per_forward)
                dist = dist.to(device)  # no layer zeroed: CPU zeros
                target_scores = normalised(pad_target(dist, io), positions)
        return RawScores(source=source_scores, target=target_scores)
