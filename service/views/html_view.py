"""The HTML view of a result: one self-contained page (inline CSS and JS, no fetch of any kind) with a
heatmap table per sequence.

Every token and every other string from the result is escaped. The page's own Content-Security-Policy
allows only its one style sheet and its one script (by hash), so it can load nothing, and an inline script
that escaping ever missed would not run.

Cells carry their exact score in `data-score` (`<td class="cell p12" data-score="0.1119">`; null cells are
`<td class="cell na">`) so programs and browser tests can read the page back.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from html import escape
from typing import Any

from service.views.colors import (
    BLUE,
    LEVELS,
    RED,
    STEP_NEGATIVE,
    STEP_POSITIVE,
    ColorScale,
    format_score,
    level_class,
    level_css,
)
from service.views.heatmap import Column, SequenceHeatmap, result_heatmaps

LABEL_CHARS = 24
"""Characters of a token shown in a header; the whole token is in its tooltip."""

HTML_BYTES_PER_CELL = 64
"""About what one heatmap cell takes in the page (for the size check made before rendering)."""

PAGE_STYLE = (
    """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#fff}
header{padding:12px 20px;border-bottom:1px solid #ddd;background:#fafafa}
h1{font-size:18px;margin:0 0 6px}
h2{font-size:16px;margin:0 0 8px}
dl.meta{display:flex;flex-wrap:wrap;gap:4px 20px;margin:0}
dl.meta div{display:flex;gap:6px}
dl.meta dt{color:#666}
dl.meta dd{margin:0;font-weight:600}
.note{margin:8px 0 0;color:#6b4e00}
main{padding:12px 20px}
section.sequence{margin:0 0 28px}
.texts p{margin:2px 0;white-space:pre-wrap;word-break:break-word}
.texts .label{display:inline-block;min-width:10em;margin-right:8px;color:#666;white-space:normal}
.texts .muted{color:#888}
.texts mark{background:#fff1b8}
.legend{display:flex;align-items:center;gap:8px;margin:8px 0;font-size:12px;color:#444}
.legend .bar{display:flex;border:1px solid #ccc}
.legend .bar span{display:block;width:9px;height:12px}
.scroll{overflow:auto;max-height:80vh;max-width:100%;border:1px solid #ddd}
table.heatmap{border-collapse:separate;border-spacing:0;font-size:11px}
table.heatmap th{background:#fff;font-weight:500;white-space:pre;
font-family:ui-monospace,Menlo,Consolas,monospace}
table.heatmap thead th{position:sticky;top:0;z-index:2;border-bottom:1px solid #ccc;vertical-align:bottom}
table.heatmap thead th.col{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;padding:4px 2px}
table.heatmap thead th.corner{left:0;z-index:3;text-align:right;padding:4px 6px;color:#666;
font-family:inherit}
table.heatmap tbody th,table.heatmap tfoot th{position:sticky;left:0;z-index:1;text-align:right;
padding:1px 6px;border-right:1px solid #ccc}
table.heatmap th.diff{background:#fff1b8;color:#7a3d00;font-weight:700}
table.heatmap tr.group th{font-family:inherit;text-align:left;color:#666;font-style:italic;
border-top:1px solid #ddd}
table.heatmap tr.group td{border-top:1px solid #ddd}
table.heatmap tfoot tr:first-child>*{border-top:2px solid #999}
table.heatmap td{min-width:2.6em;padding:1px 3px;text-align:center;font-variant-numeric:tabular-nums;
border-right:1px solid #fff;border-bottom:1px solid #fff}
table.heatmap td.na{background:#f2f2f2}
table.heatmap td:hover{outline:2px solid #000;outline-offset:-2px}
.hide-values td{color:transparent!important}
#tip{position:fixed;z-index:10;background:#222;color:#fff;padding:3px 6px;border-radius:3px;font-size:12px;
pointer-events:none;white-space:pre}
p.tokens{margin:2px 0;line-height:2;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
.tok{white-space:pre;padding:1px 0;border-radius:2px}
.tok.sel{outline:2px solid #111;outline-offset:1px;font-weight:700}
.tok .score{font-size:10px;vertical-align:super;margin-left:1px}
h3{font-size:13px;margin:8px 0 2px;color:#555;font-weight:600}
section.cci{margin:0 0 20px;padding:8px 12px;border:1px solid #ddd;border-radius:4px}
section.cci .outputs{margin:2px 0;color:#444}
"""
    + level_css("table.heatmap td.cell", RED, BLUE)
    + "\n"
    + level_css(".tok", RED, BLUE)
    + "\n"
    + level_css(".legend .bar span", RED, BLUE)
    + "\n"
    + level_css("table.heatmap td.step", STEP_POSITIVE, STEP_NEGATIVE)
    + "\n"
)
"""The style sheet of every view page: attribution heatmaps and context-attribution token lines (one sheet,
so one Content-Security-Policy serves both)."""

_SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  document.addEventListener("mouseover", function (event) {
    var cell = event.target.closest && event.target.closest("td[data-score]");
    if (!cell) { tip.hidden = true; return; }
    var head = cell.closest("table").tHead.rows[0].cells[cell.cellIndex];
    var row = cell.parentNode.cells[0];
    tip.textContent = row.dataset.label + " \\u2190 " + head.dataset.label + "\\n" + cell.dataset.score;
    tip.hidden = false;
  });
  document.addEventListener("mousemove", function (event) {
    tip.style.left = event.clientX + 14 + "px";
    tip.style.top = event.clientY + 14 + "px";
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches("input.values")) {
      event.target.closest("section").classList.toggle("hide-values", !event.target.checked);
    }
  });
})();
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_csp_hash(PAGE_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)
"""The page may run its own style sheet and script, and load nothing at all."""


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def cell_text(value: float, scale: ColorScale) -> str:
    """A score as a cell shows it: three significant digits of the scale's largest magnitude."""
    bound = max(abs(scale.lo), abs(scale.hi))
    if bound == 0 or not math.isfinite(value):
        return format_score(value)
    if not 1e-3 <= bound < 1e4:
        return f"{value:.1e}"
    decimals = max(0, 2 - math.floor(math.log10(bound)))
    return f"{value:.{decimals}f}"


def _cell(kind: str, value: float | None, scale: ColorScale) -> str:
    if value is None or not math.isfinite(value):
        return f'<td class="{kind} na"></td>'
    level = level_class(scale.level(value))
    return f'<td class="{kind} {level}" data-score="{value!r}">{cell_text(value, scale)}</td>'


def _column_header(column: Column, step: int) -> str:
    title = f"step {step}: target position {column.position}, {column.text!r}"
    classes = "col"
    extra = ""
    if column.contrast is not None:
        classes += " diff"
        title += f"; the contrast target has {column.contrast!r} here"
        extra = f' data-contrast="{_attr(column.contrast)}"'
    return (
        f'<th class="{classes}" scope="col" data-step="{step}" data-position="{column.position}"'
        f' data-label="{_attr(column.label)}" title="{_attr(title)}"{extra}>'
        f"{escape(_label(column.label))}</th>"
    )


def _legend(scale: ColorScale) -> str:
    if scale.diverging:
        levels = range(-LEVELS, LEVELS + 1, 2)
    elif scale.negative:
        levels = range(-LEVELS, 1, 2)
    else:
        levels = range(0, LEVELS + 1, 2)
    swatches = "".join(f'<span class="{level_class(level)}"></span>' for level in levels)
    low, high = format_score(scale.lo), format_score(scale.hi)
    return (
        f'<div class="legend"><span>Colour scale ({escape(scale.describe())}):</span><span>{low}</span>'
        f'<span class="bar">{swatches}</span><span>{high}</span>'
        '<label><input type="checkbox" class="values" checked> values in cells</label></div>'
    )


def _texts(heatmap: SequenceHeatmap, decoder_only: bool) -> str:
    before, attributed, after = heatmap.target_parts
    lines = []
    if not decoder_only:
        lines.append(("Source", escape(heatmap.source_text)))
    if heatmap.contrast_source_text is not None:
        lines.append(("Contrast source", escape(heatmap.contrast_source_text)))
    target = (
        f'<span class="muted">{escape(before)}</span><mark>{escape(attributed)}</mark>'
        f'<span class="muted">{escape(after)}</span>'
    )
    lines.append(("Prompt + output" if decoder_only else "Target", target))
    if heatmap.contrast_text is not None:
        lines.append(("Contrast target", escape(heatmap.contrast_text)))
    body = "".join(f'<p><span class="label">{label}</span>{text}</p>' for label, text in lines)
    return f'<div class="texts">{body}</div>'


def _row_header(label: str, title: str) -> str:
    return f'<th scope="row" data-label="{_attr(label)}" title="{_attr(title)}">{escape(_label(label))}</th>'


def _table(heatmap: SequenceHeatmap, scale: ColorScale) -> Iterator[str]:
    width = len(heatmap.columns)
    yield '<div class="scroll"><table class="heatmap"><thead><tr>'
    yield '<th class="corner" scope="col">token \\ generated</th>'
    yield from (_column_header(column, j) for j, column in enumerate(heatmap.columns))
    yield "</tr></thead>"
    side = None
    for row, values in zip(heatmap.rows, heatmap.scores, strict=True):
        if row.side != side:
            if side is not None:
                yield "</tbody>"
            side = row.side
            yield f'<tbody class="side-{side}"><tr class="group"><th scope="rowgroup">{side}</th>'
            yield f'<td colspan="{width}"></td></tr>'
        yield f'<tr data-side="{row.side}" data-position="{row.position}">'
        yield _row_header(row.token, f"{row.side} position {row.position}: {row.text!r}")
        yield from (_cell("cell", value, scale) for value in values)
        yield "</tr>"
    if side is not None:
        yield "</tbody>"
    if heatmap.step_scores:
        yield '<tfoot class="step-scores">'
        for name, values in heatmap.step_scores.items():
            own = ColorScale.fit(values, from_zero=False)
            yield f'<tr data-step-score="{_attr(name)}">'
            yield _row_header(name, f"step score {name}: own scale, {own.describe()}")
            yield from (_cell("step", value, own) for value in values)
            yield "</tr>"
        yield "</tfoot>"
    yield "</table></div>"


def _sequence(heatmap: SequenceHeatmap, decoder_only: bool) -> Iterator[str]:
    scale = heatmap.scale()
    yield f'<section class="sequence" id="sequence-{heatmap.index}" data-sequence="{heatmap.index}">'
    yield f"<h2>Sequence {heatmap.index}</h2>"
    yield _texts(heatmap, decoder_only)
    if any(column.contrast is not None for column in heatmap.columns):
        yield (
            '<p class="note">Highlighted columns: the contrast target\'s aligned token differs from the '
            "target's, shown as “contrast → target”.</p>"
        )
    yield _legend(scale)
    yield from _table(heatmap, scale)
    yield "</section>"


def _meta(result: Mapping[str, Any], finished_at: datetime | None) -> str:
    model = result.get("model") or {}
    step_scores = sorted(
        {name for seq in result.get("sequences", ()) for name in seq.get("step_scores") or {}}
    )
    items = [
        ("Job", result.get("id", "")),
        ("Model", f"{model.get('id', '')} ({model.get('architecture', '')})"),
        ("Method", result.get("method", "")),
        ("Attributed function", result.get("attributed_fn", "")),
        ("Step scores", ", ".join(step_scores) or "none"),
    ]
    if finished_at is not None:
        items.append(("Finished", finished_at.isoformat(timespec="seconds")))
    body = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(str(v))}</dd></div>" for k, v in items)
    return f'<dl class="meta">{body}</dl>'


def _notes(result: Mapping[str, Any], heatmaps: list[SequenceHeatmap]) -> Iterator[str]:
    granular = next((h for h in heatmaps if h.granular), None)
    if granular is not None:
        shape = " × ".join(str(n) for n in granular.unit_shape)
        yield (
            f'<p class="note granular">Granular result: each cell holds {shape} unreduced scores; the '
            "heatmap shows the L2 norm of each cell.</p>"
        )
    info = result.get("info") or {}
    reaggregated = (info.get("aggregation") or {}).get("reaggregated")
    if reaggregated:
        steps = ", ".join(str(step.get("aggregator", "?")) for step in reaggregated.get("steps", ()))
        origin = escape(str(reaggregated.get("from")))
        yield f'<p class="note">Re-aggregated from the {origin} scores: {escape(steps)}.</p>'
    for warning in info.get("warnings") or ():
        yield f'<p class="note warning">{escape(str(warning))}</p>'


def page_head(title: str) -> str:
    """A view page's head (its Content-Security-Policy, style and title) and the start of its header."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{PAGE_STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>"
    )


def render_html(result: Mapping[str, Any], finished_at: datetime | None = None) -> str:
    """The page of a result (`schemas.results.AttributionResult`, stored or re-aggregated).

    Args:
        result: the result.
        finished_at: when the job ended, shown in the header.
    """
    heatmaps = result_heatmaps(result)
    decoder_only = not (result.get("model") or {}).get("is_encoder_decoder", False)
    title = f"Seqattr · {result.get('method', '')} on {(result.get('model') or {}).get('id', '')}"
    parts = [
        page_head(title),
        _meta(result, finished_at),
        *_notes(result, heatmaps),
        "</header><main>",
    ]
    for heatmap in heatmaps:
        parts.extend(_sequence(heatmap, decoder_only))
    if not heatmaps:
        parts.append("<p>The result has no sequences.</p>")
    parts.append(f'</main><div id="tip" hidden></div><script>{_SCRIPT}</script></body></html>')
    return "".join(parts)


def estimated_size(result: Mapping[str, Any]) -> int:
    """About how many bytes the page of `result` takes, without rendering it."""
    cells = 0
    for seq in result.get("sequences", ()):
        for field in ("source_attributions", "target_attributions"):
            matrix = seq.get(field) or ()
            cells += sum(len(row) for row in matrix) + len(matrix) * 4
        cells += sum(len(values) + 4 for values in (seq.get("step_scores") or {}).values())
    return cells * HTML_BYTES_PER_CELL + len(PAGE_STYLE) + len(_SCRIPT)
