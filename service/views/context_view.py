"""The HTML view of a context-attribution (PECoRe) result: one self-contained page (the views' inline
style sheet and Content-Security-Policy, no script, no fetch) in the manner of the reference library's
visualisation.

The generated output's tokens are coloured by their CTI score, the context-sensitive ones (those past the
threshold) outlined with their score; under it, for each of them, the input (and output) context tokens
coloured by their CCI score, the cues (past the attribution threshold) outlined with theirs. Every token
span carries its exact score in `data-score` and its place in `data-index`, so programs and browser tests
can read the page back; every string from the result is escaped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from service.views.colors import ColorScale, format_score, level_class
from service.views.html_view import PAGE_STYLE, page_head

CONTEXT_HTML_BYTES_PER_TOKEN = 96
"""About what one token span takes in the page (for the size check made before rendering)."""

_SPACE_MARKS = ("Ġ", "▁", "Ċ")
"""Tokenizer marks of a leading space (byte-level BPE, sentencepiece) or a newline, shown as whitespace."""


def _shown(token: str) -> str:
    for mark in _SPACE_MARKS:
        token = token.replace(mark, "\n" if mark == "Ċ" else " ")
    return token


def _tokens(
    tokens: Sequence[str], scores: Sequence[float | None] | None, marked: Sequence[int], what: str
) -> str:
    """A line of token spans coloured by `scores`; the `marked` ones outlined with their score."""
    values = list(scores or [])
    scale = ColorScale.fit(values)
    chosen = set(marked)
    spans = []
    for i, token in enumerate(tokens):
        score = values[i] if i < len(values) else None
        classes = ["tok"]
        attrs = f' data-index="{i}"'
        title = f"{what} {i}: {token!r}"
        if score is not None:
            classes.append(level_class(scale.level(score)))
            attrs += f' data-score="{score!r}"'
            title += f", score {format_score(score)}"
        label = escape(_shown(token))
        if i in chosen:
            classes.append("sel")
            if score is not None:
                label += f'<span class="score">({escape(format_score(score))})</span>'
        spans.append(
            f'<span class="{" ".join(classes)}"{attrs} title="{escape(title, quote=True)}">{label}</span>'
        )
    return f'<p class="tokens {escape(what, quote=True)}">{"".join(spans)}</p>'


def _meta(result: Mapping[str, Any], request: Mapping[str, Any], finished_at: datetime | None) -> str:
    model = result.get("model") or {}
    items = [
        ("Job", result.get("id", "")),
        ("Model", f"{model.get('id', '')} ({model.get('architecture', '')})".strip()),
        ("CTI metric", request.get("context_sensitivity_metric", "")),
        ("CTI threshold", format_score(float(result.get("cti_threshold", 0.0)))),
        ("Attribution method", request.get("attribution_method", "")),
        ("Attributed function", request.get("attributed_fn", "")),
    ]
    if finished_at is not None:
        items.append(("Finished", finished_at.isoformat(timespec="seconds")))
    body = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(str(v))}</dd></div>" for k, v in items)
    return f'<dl class="meta">{body}</dl>'


def _texts(result: Mapping[str, Any], request: Mapping[str, Any]) -> str:
    rows = [
        ("Input context", result.get("input_context")),
        ("Input current", request.get("input_current_text")),
        ("Output context", result.get("output_context")),
        ("Output current", result.get("output_current")),
    ]
    return (
        '<div class="texts">'
        + "".join(
            f'<p><span class="label">{label}</span>{escape(str(text))}</p>' for label, text in rows if text
        )
        + "</div>"
    )


def _cci(item: Mapping[str, Any], rank: int, result: Mapping[str, Any]) -> Iterator[str]:
    token = str(item.get("cti_token", ""))
    yield (
        f'<section class="cci" data-cti-idx="{int(item.get("cti_idx", 0))}">'
        f"<h2>#{rank}. {escape(repr(_shown(token)))} (CTI {escape(format_score(float(item['cti_score'])))})"
        f" · cues past {escape(format_score(float(item.get('cci_threshold', 0.0))))}</h2>"
    )
    contrast = item.get("contrast_token")
    outputs = f"with the context: {escape(repr(str(item.get('contextual_output', ''))))}"
    if contrast is not None:
        outputs += f"; without it: {escape(repr(str(contrast)))}"
    yield f'<p class="outputs">{outputs}</p>'
    for name, side in (("input_context", "Input context"), ("output_context", "Output context")):
        tokens = result.get(f"{name}_tokens")
        scores = item.get(f"{name}_scores")
        if tokens and scores is not None:
            yield f"<h3>{side} (CCI)</h3>"
            yield _tokens(tokens, scores, item.get(f"{name}_cues") or [], name.replace("_", "-"))
    yield "</section>"


def render_context_html(
    result: Mapping[str, Any], request: Mapping[str, Any], finished_at: datetime | None = None
) -> str:
    """The page of a context-attribution result (`schemas.context.ContextAttributionResult`).

    Args:
        result: the result.
        request: the job's validated request (the metric, method and texts it was asked with).
        finished_at: when the job ended, shown in the header.
    """
    model = (result.get("model") or {}).get("id", "")
    title = f"Seqattr · context attribution on {model}"
    selected = list(result.get("cti_selected") or [])
    threshold = escape(format_score(float(result.get("cti_threshold", 0.0))))
    parts = [
        page_head(title),
        _meta(result, request, finished_at),
        "</header><main>",
        _texts(result, request),
        f"<h2>Generated output (CTI past {threshold})</h2>",
        _tokens(
            result.get("output_current_tokens") or [], result.get("cti_scores"), selected, "output-current"
        ),
    ]
    items = result.get("cci_scores") or []
    if not items:
        parts.append('<p class="note">No generated token is context-sensitive past the threshold.</p>')
    for rank, item in enumerate(items, start=1):
        parts.extend(_cci(item, rank, result))
    parts.append("</main></body></html>")
    return "".join(parts)


def estimated_context_size(result: Mapping[str, Any]) -> int:
    """About how many bytes the page of `result` takes, without rendering it."""
    context = len(result.get("input_context_tokens") or ()) + len(result.get("output_context_tokens") or ())
    tokens = len(result.get("output_current_tokens") or ()) + context * len(result.get("cci_scores") or ())
    return tokens * CONTEXT_HTML_BYTES_PER_TOKEN + len(PAGE_STYLE) + 4096
