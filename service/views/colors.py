"""Colour scales shared by the HTML view and the images: one mapping from scores to colours, so a cell of the
page and the same cell of the PNG look alike.

A scale is diverging (blue below 0, white at 0, red above) when the scores have both signs, else sequential
(white to red for scores >= 0, white to blue for scores <= 0). The page colours cells with one CSS class per
level (`p1`..`p20`, `n1`..`n20`, `z`), which keeps a 200-token page small and needs no inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

LEVELS = 20
"""Colour steps per sign in the page's CSS classes."""

WHITE = (255, 255, 255)
RED = (178, 24, 43)
"""Positive end (ColorBrewer RdBu)."""
BLUE = (33, 102, 172)
"""Negative end (ColorBrewer RdBu)."""
STEP_POSITIVE = (27, 120, 55)
"""Positive end of the step-score rows (green), told apart from the attributions at a glance."""
STEP_NEGATIVE = (118, 42, 131)
"""Negative end of the step-score rows (purple)."""

_DARK_FROM = 0.55
"""Share of the way to the end colour from which cell text turns white."""


def finite(values: Iterable[float | None]) -> list[float]:
    """The values that are numbers (nulls, NaN and infinities left out)."""
    return [v for v in values if v is not None and math.isfinite(v)]


@dataclass(frozen=True)
class ColorScale:
    """Maps a score to a signed intensity in [-1, 1] (negative: towards blue, positive: towards red).

    Attributes:
        lo: the lowest score the scale shows.
        hi: the highest score the scale shows.
        diverging: red/blue around 0 (`lo == -hi`); else one hue from `lo` to `hi`.
    """

    lo: float
    hi: float
    diverging: bool

    @classmethod
    def fit(cls, values: Iterable[float | None], from_zero: bool = True) -> ColorScale:
        """The scale for `values`: diverging when they have both signs; sequential otherwise, starting at 0
        when `from_zero` (attributions) or at the smallest magnitude (a step score's own range)."""
        numbers = finite(values)
        lo, hi = (min(numbers), max(numbers)) if numbers else (0.0, 0.0)
        if lo < 0 < hi:
            bound = max(-lo, hi)
            return cls(-bound, bound, diverging=True)
        if from_zero:
            return cls(min(lo, 0.0), max(hi, 0.0), diverging=False)
        return cls(lo, hi, diverging=False)

    @property
    def negative(self) -> bool:
        """Whether a sequential scale runs towards blue (all scores <= 0, not all zero)."""
        return not self.diverging and self.hi <= 0 and self.lo < 0

    def intensity(self, value: float) -> float:
        """Signed share of the way from white to the end colour, in [-1, 1]."""
        if self.diverging:
            return max(-1.0, min(1.0, value / self.hi))
        span = self.hi - self.lo
        if span <= 0:
            return 0.0 if value == 0 else (-1.0 if value < 0 else 1.0)
        if self.negative:
            return -max(0.0, min(1.0, (self.hi - value) / span))
        return max(0.0, min(1.0, (value - self.lo) / span))

    def level(self, value: float) -> int:
        """The signed CSS level of `value`: -LEVELS..LEVELS, 0 for white."""
        return round(self.intensity(value) * LEVELS)

    def describe(self) -> str:
        kind = "diverging around 0" if self.diverging else "sequential"
        return f"{kind}, {format_score(self.lo)} to {format_score(self.hi)}"


def level_class(level: int) -> str:
    """The CSS class of a signed level."""
    if level == 0:
        return "z"
    return f"p{level}" if level > 0 else f"n{-level}"


def mix(end: tuple[int, int, int], share: float) -> tuple[int, int, int]:
    """The colour `share` of the way from white to `end`."""
    r, g, b = (round(w + (e - w) * share) for w, e in zip(WHITE, end, strict=True))
    return r, g, b


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def level_css(selector: str, positive: tuple[int, int, int], negative: tuple[int, int, int]) -> str:
    """CSS rules giving `selector.p1`..`.pN`, `.n1`..`.nN` their colours, and white text on dark ones."""
    rules = []
    for level in range(1, LEVELS + 1):
        share = level / LEVELS
        text = ";color:#fff" if share >= _DARK_FROM else ""
        for name, end in (("p", positive), ("n", negative)):
            rules.append(f"{selector}.{name}{level}{{background:{_hex(mix(end, share))}{text}}}")
    return "\n".join(rules)


def format_score(value: float) -> str:
    """A score in a few characters for labels: fixed decimals for usual magnitudes, else scientific."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e4:
        decimals = max(0, 3 - math.floor(math.log10(magnitude)) - 1)
        return f"{value:.{min(decimals, 4)}f}"
    return f"{value:.2e}"
