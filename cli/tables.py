"""A result in the terminal: each sequence as a coloured token table, laid out and coloured as the HTML view
(`service.views`) lays out and colours it, so the terminal and the page read alike.
"""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.render import cut
from service.views.colors import BLUE, RED, STEP_NEGATIVE, STEP_POSITIVE, ColorScale, mix
from service.views.heatmap import SequenceHeatmap, sequence_heatmap
from service.views.html_view import cell_text

_LABEL_WIDTH = 24
"""Widest row label (token) shown; longer ones are cut with an ellipsis."""

_HEADER_WIDTH = 12
"""Widest column header (generated token) shown."""

_WHITE_TEXT_FROM = 0.55
"""Colour intensity from which a cell's text turns white (as on the HTML page)."""


def _visible(token: str) -> str:
    """A token with line breaks and tabs made visible."""
    return token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


class _Colours:
    """Cell styles of one row group: the page's colour scale (`service.views.colors`), as terminal styles."""

    def __init__(
        self, scale: ColorScale, positive: tuple[int, int, int], negative: tuple[int, int, int]
    ) -> None:
        self.scale, self.positive, self.negative = scale, positive, negative

    def cell(self, value: float | None, width: int) -> Text:
        if value is None or not math.isfinite(value):
            return Text(" " * width)
        intensity = self.scale.intensity(value)
        r, g, b = mix(self.positive if intensity >= 0 else self.negative, abs(intensity))
        ink = "white" if abs(intensity) >= _WHITE_TEXT_FROM else "black"
        return Text(cell_text(value, self.scale).rjust(width - 1) + " ", style=f"{ink} on rgb({r},{g},{b})")


def cell_strings(heatmap: SequenceHeatmap) -> list[str]:
    """Every score of the heatmap as its cell shows it (attributions, then step scores)."""
    scale = heatmap.scale()
    shown = [cell_text(v, scale) for row in heatmap.scores for v in row if v is not None and math.isfinite(v)]
    for values in heatmap.step_scores.values():
        own = ColorScale.fit(values, from_zero=False)
        shown += [cell_text(v, own) for v in values if v is not None and math.isfinite(v)]
    return shown


def _groups(heatmap: SequenceHeatmap) -> list[tuple[str, list[tuple[str, list[float | None], _Colours]]]]:
    """(title, rows) of the table's row groups: source, target, step scores (each on its own scale)."""
    attributions = _Colours(heatmap.scale(), RED, BLUE)
    groups: dict[str, list[tuple[str, list[float | None], _Colours]]] = {}
    for row, values in zip(heatmap.rows, heatmap.scores, strict=True):
        groups.setdefault(row.side, []).append((_visible(row.token), values, attributions))
    for name, values in heatmap.step_scores.items():
        own = _Colours(ColorScale.fit(values, from_zero=False), STEP_POSITIVE, STEP_NEGATIVE)
        groups.setdefault("step scores", []).append((name, values, own))
    return list(groups.items())


def _heading(heatmap: SequenceHeatmap, is_encoder_decoder: bool) -> Text:
    """The sequence's texts above its table: what was given and what was explained."""
    before, attributed, after = heatmap.target_parts
    given = heatmap.source_text if is_encoder_decoder else before
    heading = Text.assemble((f"sequence {heatmap.index}", "bold"), "  ", (repr(given), "dim"), " → ")
    heading.append(repr(attributed), style="bold")
    if after:
        heading.append(f" {after!r}", style="dim")
    return heading


def sequence_tables(seq: dict[str, Any], index: int, width: int) -> list[Table]:
    """One sequence's heatmap, laid out as the HTML view lays it out: rows are source and target tokens, then
    step scores; columns are the generated tokens explained. Split into tables of consecutive columns when
    it is wider than `width`."""
    heatmap = sequence_heatmap(seq, index)
    headers = [cut(_visible(column.label), _HEADER_WIDTH) for column in heatmap.columns]
    groups = _groups(heatmap)
    labels = [label for _, rows in groups for label, _, _ in rows]
    cell_width = max([7, *(len(s) + 2 for s in cell_strings(heatmap)), *(len(h) + 2 for h in headers)])
    label_width = min(_LABEL_WIDTH, max([len("step scores"), *map(len, labels)]))
    per_table = max(1, (width - label_width - 4) // (cell_width + 1))
    count = len(heatmap.columns)
    tables = []
    for first in range(0, max(count, 1), per_table):
        chunk = range(first, min(count, first + per_table))
        title = f"columns {chunk.start + 1}-{chunk.stop} of {count}" if len(chunk) < count else None
        table = Table(
            title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0), collapse_padding=True
        )
        table.add_column("", no_wrap=True, min_width=label_width, max_width=label_width)
        for j in chunk:
            table.add_column(headers[j], justify="right", no_wrap=True, width=cell_width)
        for k, (group, rows) in enumerate(groups):
            if k:
                table.add_section()
            table.add_row(Text(group, style="dim italic"))
            for label, values, colours in rows:
                style = "italic" if group == "step scores" else ""
                cells = [values[j] if j < len(values) else None for j in chunk]
                table.add_row(
                    Text(cut(label, label_width), style=style), *(colours.cell(v, cell_width) for v in cells)
                )
        if heatmap.granular:
            table.caption = f"granular result: each cell shows the L2 norm of its {heatmap.unit_shape} scores"
        tables.append(table)
    return tables


def print_result(console: Console, result: dict[str, Any]) -> None:
    """Every sequence's heatmap, with the method and model as a heading."""
    console.print(
        f"[bold]{result['method']}[/] on [bold]{result['model']['id']}[/], attributing "
        f"[bold]{result['attributed_fn']}[/]: rows are the tokens that mattered, columns the generated "
        "tokens they explain",
        highlight=False,
    )
    is_encoder_decoder = bool(result["model"].get("is_encoder_decoder"))
    for k, seq in enumerate(result["sequences"]):
        console.print()
        console.print(_heading(sequence_heatmap(seq, k), is_encoder_decoder))
        for table in sequence_tables(seq, k, console.width):
            console.print(table)
    for warning in result.get("info", {}).get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
