"""Finding and merging spans of tokens: the reference library's subword detection, regular-expression
splitting and contiguous-span reduction, on plain lists and numpy arrays."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import numpy as np

from schemas.results import Token

Spans = list[tuple[int, int]]


def merge_spans(
    scores: np.ndarray, spans: Spans, reduce: Callable[[np.ndarray, int], np.ndarray], axis: int
) -> np.ndarray:
    """Each `[start, end)` span along `axis` reduced to one entry; positions outside spans are kept."""
    if not spans:
        return scores
    moved = np.moveaxis(scores, axis, 0)
    parts = []
    done = 0
    for start, end in spans:
        if start > done:
            parts.append(moved[done:start])
        parts.append(np.expand_dims(reduce(moved[start:end], 0), 0))
        done = end
    if done < moved.shape[0]:
        parts.append(moved[done:])
    return np.moveaxis(np.concatenate(parts, axis=0), 0, axis)


def subword_spans(tokens: list[Token], symbols: tuple[str, ...], is_suffix_symbol: bool) -> Spans:
    """Spans of two or more tokens forming one word: a word starts at a token that begins with one of the
    `symbols` (or, with `is_suffix_symbol`, at a token that does not). As in the reference, a word at the very
    end is merged only up to its last token but one, and nothing is merged when no token has a symbol."""
    if not any(symbol in token["token"] for token in tokens for symbol in symbols):
        return []
    spans: Spans = []
    word_start = 0
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        continues_word = token["token"].startswith(symbols) == is_suffix_symbol
        if continues_word:
            if index == last and index - word_start > 1:
                spans.append((word_start, index))
            continue
        if index - word_start > 1:
            spans.append((word_start, index))
        word_start = index
    return spans


def split_spans(tokens: list[Token], pattern: str, mode: Literal["single", "start", "end"]) -> Spans:
    """Spans covering the tokens between and under the matches of `pattern` in the tokens' joined text (the
    reference's `split`): matched tokens stand alone (`single`), open the next part (`start`) or close the
    previous one (`end`). No match: no span."""
    bounds = []
    offset = 0
    for token in tokens:
        bounds.append((offset, offset + len(token["token"])))
        offset += len(token["token"])
    text = "".join(token["token"] for token in tokens)
    matched = _unique([_token_range(bounds, m.start(), m.end()) for m in re.finditer(pattern, text)])
    if not matched:
        return []
    matched = _without_overlaps(matched)
    parts, is_match = _fill_gaps(matched, len(tokens))
    if mode == "single":
        return parts
    merged: Spans = []
    part_start = 0
    for (start, end), was_matched in zip(parts, is_match, strict=True):
        if not was_matched:
            continue
        if mode == "start" and start != part_start:
            merged.append((part_start, start))
            part_start = start
        elif mode == "end":
            merged.append((part_start, end))
            part_start = end
    if part_start != parts[-1][1]:
        merged.append((part_start, parts[-1][1]))
    return merged


def _token_range(bounds: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """The tokens a `[start, end)` character match touches."""
    first = next(i for i, (s, e) in enumerate(bounds) if s <= start < e)
    last = next(i for i, (s, e) in enumerate(bounds) if s < end <= e)
    return first, last + 1


def _unique(spans: Spans) -> Spans:
    return list(dict.fromkeys(spans))


def _without_overlaps(spans: Spans) -> Spans:
    """Token ranges of neighbouring matches that share tokens, cut apart as the reference cuts them."""
    result: Spans = []
    for index, (start, end) in enumerate(spans):
        cut_start, cut_end = start, end
        following = spans[index + 1] if index + 1 < len(spans) else None
        if following is not None and end > following[0]:
            cut_end = following[0]
        if index > 0 and start < result[-1][1]:
            cut_start = result[-1][1]
        result.append((cut_start, cut_end))
        if following is not None and cut_end != end and end < following[1]:
            result.append((cut_end, end))
    return result


def _fill_gaps(matched: Spans, length: int) -> tuple[Spans, list[bool]]:
    """The matched ranges with the unmatched ranges between them, covering all `length` tokens."""
    parts: Spans = []
    is_match: list[bool] = []
    if matched[0][0] != 0:
        parts.append((0, matched[0][0]))
        is_match.append(False)
    for current, following in zip(matched, matched[1:], strict=False):
        parts.append(current)
        is_match.append(True)
        if current[1] != following[0]:
            parts.append((current[1], following[0]))
            is_match.append(False)
    parts.append(matched[-1])
    is_match.append(True)
    if matched[-1][1] != length:
        parts.append((matched[-1][1], length))
        is_match.append(False)
    return parts, is_match
