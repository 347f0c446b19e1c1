"""The text rendering of a context-attribution result, as the reference's viz helpers print it (rich markup
replaced by brackets: `{token}(score)` for a context-sensitive token, `[token](score)` for a cue)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.context import CCIScores


@dataclass(frozen=True)
class RenderInputs:
    """What the rendering shows, besides the CCI items."""

    metric: str
    method: str
    attributed_fn: str
    cti_std: float | None
    cti_topk: int | None
    cci_std: float | None
    cci_topk: int | None
    input_context: str | None
    input_current: str
    output_context: str | None
    output_current: str
    output_current_tokens: list[str]
    """Readable tokens of the output current text alone (the reference's view tokens)."""
    input_context_tokens: list[str] | None
    output_context_tokens: list[str] | None
    cti_threshold: float


def _comment(std: float | None, topk: int | None) -> str:
    parts = []
    if std:
        parts.append(f"std λ={std:.2f}")
    if topk:
        parts.append(f"top {topk}")
    return ", ".join(parts) or "all"


def _context_line(
    kind: str, tokens: list[str], scores: list[float], cues: list[int], threshold: float
) -> str:
    shown = list(tokens)
    for i in cues:
        shown[i] = f"[{tokens[i]}]({scores[i]:.3f})"
    return f"\n{kind} context (CCI > {threshold:.3f}):\t{''.join(shown)}"


def render_text(view: RenderInputs, items: list[CCIScores]) -> str:
    """The procedure details, then one block per context-sensitive token."""
    text = (
        f"Context with contextual cues ({_comment(view.cci_std, view.cci_topk)}) followed by output sentence "
        f"with context-sensitive target spans ({_comment(view.cti_std, view.cti_topk)})\n"
        f'(CTI = "{view.metric}", CCI = "{view.method}" w/ "{view.attributed_fn}" target)\n'
    )
    if view.input_context is not None:
        text += f"\nInput context:\t{view.input_context}"
    text += f"\nInput current: {view.input_current}"
    if view.output_context is not None:
        text += f"\nOutput context:\t{view.output_context}"
    text += f"\nOutput current:\t{view.output_current}\n\n"
    for number, item in enumerate(items, start=1):
        tokens = list(view.output_current_tokens)
        idx = item["cti_idx"]
        if idx < len(tokens):
            tokens[idx] = f"{{{tokens[idx]}}}({item['cti_score']:.3f})"
        text += f"#{number}.\nGenerated output (CTI > {view.cti_threshold:.3f}):\t{''.join(tokens)}"
        threshold = item["cci_threshold"]
        if view.input_context_tokens is not None and item["input_context_scores"] is not None:
            text += _context_line(
                "Input",
                view.input_context_tokens,
                item["input_context_scores"],
                item["input_context_cues"],
                threshold,
            )
        if view.output_context_tokens is not None and item["output_context_scores"] is not None:
            text += _context_line(
                "Output",
                view.output_context_tokens,
                item["output_context_scores"],
                item["output_context_cues"],
                threshold,
            )
        text += "\n"
    return text
