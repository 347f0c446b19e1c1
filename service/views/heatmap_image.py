"""PNG and SVG heatmaps of one sequence, drawn with matplotlib in the API process (no torch).

matplotlib takes about half a second to import, so it is imported on the first image asked for, never at
start-up. Figures are made with the object API and drawn by the Agg canvas directly: no pyplot, no global
figure registry, no GUI backend, whatever `MPLBACKEND` says. matplotlib is not thread-safe and its settings
are global, so images are drawn one at a time, each in a route's worker thread.

Cells are coloured here with `service.views.colors` (the page's colours), one RGB pixel per cell: letting
matplotlib colour-map a 3000-pixel figure pixel by pixel would take seconds.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from service.views.colors import BLUE, RED, STEP_NEGATIVE, STEP_POSITIVE, WHITE, ColorScale, mix
from service.views.heatmap import SequenceHeatmap

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ImageFormat = Literal["png", "svg"]

INCHES_PER_TOKEN = 0.22
"""Figure size per row or column of the heatmap."""

MAX_FIGURE_INCHES = 32.0
"""Cap on each side of the figure (3200 pixels at `DPI`); past it rows or columns get thinner."""

DPI = 100
"""Pixels per inch of the PNG."""

STEP_ROW_INCHES = 0.25
"""Height of each step score's row in the strip under the heatmap."""

LABEL_INCHES = 0.13
"""Room one tick label needs (8-point text); rows or columns closer than that are labelled every k-th."""

LABEL_CHARS = 20
"""Characters of a token shown as a tick label."""

ANNOTATE_MAX_CELLS = 600
"""Scores are written in the cells when the heatmap has at most this many."""

_NULL_RGB = (237, 237, 237)
"""Colour of null cells (positions after the step)."""

_lock = threading.Lock()
_ready = False


def _setup() -> None:
    """Import matplotlib and fix the settings every image shares (once, under the lock)."""
    global _ready
    if _ready:
        return
    import matplotlib

    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text in the SVG: small, searchable, selectable
            "svg.hashsalt": "seqattr",  # the same result always gives the same SVG
            "text.parse_math": False,  # a token with '$' in it is not TeX
            "font.size": 8,
        }
    )
    # Tokens of any script: a glyph the font lacks is drawn as a box; say nothing about it each time.
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
    _ready = True


def _size(count: float, extra: float, floor: float) -> float:
    return max(floor, min(MAX_FIGURE_INCHES, extra + INCHES_PER_TOKEN * count))


def _ticks(count: int, inches: float) -> list[int]:
    """Which rows or columns get a label: all of them, or every k-th when they would not fit."""
    room = max(1, int((inches - 2) / LABEL_INCHES))
    step = max(1, math.ceil(count / room))
    return list(range(0, count, step))


def _short(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _colours(
    rows: Sequence[Sequence[float | None]],
    scales: Sequence[ColorScale],
    positive: tuple[int, int, int],
    negative: tuple[int, int, int],
) -> Any:
    """An RGB image (uint8, one pixel per cell), row i coloured on `scales[i]`."""
    import numpy as np

    def colour(value: float | None, scale: ColorScale) -> tuple[int, int, int]:
        if value is None or not math.isfinite(value):
            return _NULL_RGB
        share = scale.intensity(value)
        return mix(positive if share >= 0 else negative, abs(share))

    pixels = [[colour(v, scale) for v in row] for row, scale in zip(rows, scales, strict=True)]
    width = len(pixels[0]) if pixels else 0
    return np.array(pixels, dtype=np.uint8).reshape(len(pixels), width, 3)


def _colorbar(figure: Figure, axes: list[Axes], scale: ColorScale) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    white, red, blue = (tuple(c / 255 for c in color) for color in (WHITE, RED, BLUE))
    if scale.diverging:
        ends = [blue, white, red]
    elif scale.negative:
        ends = [blue, white]
    else:
        ends = [white, red]
    cmap = LinearSegmentedColormap.from_list("seqattr", ends)
    norm = Normalize(vmin=scale.lo, vmax=scale.hi if scale.hi > scale.lo else scale.lo + 1)
    figure.colorbar(
        ScalarMappable(norm, cmap), ax=axes, shrink=0.9, pad=0.01, fraction=0.04, label="attribution"
    )


def _annotate(
    ax: Axes, rows: Sequence[Sequence[float | None]], scales: Sequence[ColorScale], fmt: str
) -> None:
    for i, (row, scale) in enumerate(zip(rows, scales, strict=True)):
        for j, value in enumerate(row):
            if value is None or not math.isfinite(value):
                continue
            dark = abs(scale.intensity(value)) > 0.55
            colour = "white" if dark else "black"
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=6, color=colour)


def _show(ax: Axes, pixels: Any, fmt: ImageFormat) -> None:
    """Draw one pixel per cell, cell (i, j) centred on (j, i) with row 0 on top. The SVG embeds the small
    image itself (browsers scale it up pixelated); the PNG draws the cells as a mesh, which Agg fills far
    faster than it would scale an image up to the figure's size."""
    import numpy as np

    height, width = pixels.shape[:2]
    if fmt == "svg":
        ax.imshow(pixels, aspect="auto", interpolation="none")
        return
    ax.pcolormesh(np.arange(width + 1) - 0.5, np.arange(height + 1) - 0.5, pixels / 255.0)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)


def _heatmap(ax: Axes, heatmap: SequenceHeatmap, scale: ColorScale, fmt: ImageFormat) -> None:
    scales = [scale] * len(heatmap.rows)
    _show(ax, _colours(heatmap.scores, scales, RED, BLUE), fmt)
    if 0 < heatmap.n_source_rows < len(heatmap.rows):
        ax.axhline(heatmap.n_source_rows - 0.5, color="black", linewidth=1)
        ax.set_ylabel("source | target")
    if len(heatmap.rows) * len(heatmap.columns) <= ANNOTATE_MAX_CELLS:
        bound = max(abs(scale.lo), abs(scale.hi))
        _annotate(ax, heatmap.scores, scales, ".2f" if 0.01 <= bound < 1000 else ".1e")


def _step_strip(ax: Axes, heatmap: SequenceHeatmap, fmt: ImageFormat) -> None:
    """Each step score as a row coloured on its own scale, its values written in when they fit."""
    width = len(heatmap.columns)
    rows = [(values + [None] * width)[:width] for values in heatmap.step_scores.values()]
    scales = [ColorScale.fit(values, from_zero=False) for values in rows]
    _show(ax, _colours(rows, scales, STEP_POSITIVE, STEP_NEGATIVE), fmt)
    if width <= 40:
        _annotate(ax, rows, scales, ".2g")
    ax.set_yticks(range(len(rows)), labels=[_short(name) for name in heatmap.step_scores])
    ax.set_xticks([])


def render_image(heatmap: SequenceHeatmap, fmt: ImageFormat, title: str) -> bytes:
    """The heatmap of one sequence as PNG or SVG bytes: tokens on both axes, a colour bar, step scores as a
    strip below (each on its own scale)."""
    with _lock:
        _setup()
        return _draw(heatmap, fmt, title)


def _draw(heatmap: SequenceHeatmap, fmt: ImageFormat, title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols, n_steps = len(heatmap.rows), len(heatmap.columns), len(heatmap.step_scores)
    width = _size(n_cols, 3.5, 5.0)
    strip = STEP_ROW_INCHES * n_steps
    height = max(3.0, min(MAX_FIGURE_INCHES, 2.5 + INCHES_PER_TOKEN * n_rows + strip))
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    # The step-score strip keeps its rows readable however many token rows share the rest of the height.
    ratios = [max(height - 2.5 - strip, 1.0), strip] if n_steps else [1.0]
    axes = list(figure.subplots(len(ratios), 1, squeeze=False, height_ratios=ratios)[:, 0])
    ax = axes[0]
    scale = heatmap.scale()
    if n_rows:
        _heatmap(ax, heatmap, scale, fmt)
        _colorbar(figure, axes, scale)
    rows = _ticks(n_rows, height)
    ax.set_yticks(rows, labels=[_short(heatmap.rows[i].token) for i in rows])
    columns = _ticks(n_cols, width)
    ax.xaxis.tick_top()
    ax.set_xticks(columns, labels=[_short(heatmap.columns[j].label) for j in columns], rotation=90)
    for j, label in zip(columns, ax.get_xticklabels(), strict=True):
        if heatmap.columns[j].contrast is not None:  # the contrast token differs here
            label.set_color("#b35900")
            label.set_fontweight("bold")
    if n_steps:
        _step_strip(axes[1], heatmap, fmt)
    note = " (L2 norm of each granular cell)" if heatmap.granular else ""
    full = title + note
    figure.suptitle(full if len(full) <= 160 else full[:159] + "…", fontsize=9)
    buffer = io.BytesIO()
    metadata: dict[str, Any] = (
        {"Software": "seqattr"} if fmt == "png" else {"Date": None, "Creator": "seqattr"}
    )
    figure.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()
