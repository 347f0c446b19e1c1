"""The comparison of one case's two runs (times, floor, memory, score agreement) and the Markdown table."""

from __future__ import annotations

import math
import statistics
from typing import Any

from tests.bench.floor import ModelDims, method_flops

IMPLS = ("seqattr", "inseq")


# ---------------------------------------------------------------------------------------------------------
# Comparison


def _max_abs_diff(a: Any, b: Any) -> tuple[float | None, str | None]:
    """Largest |a - b| over cells where both are numbers; a note when shapes or null patterns differ."""
    if a is None or b is None:
        return None, None if a is None and b is None else "one side has no scores"
    flat_a, flat_b = _flatten(a), _flatten(b)
    if len(flat_a) != len(flat_b) or _shape(a) != _shape(b):
        return None, f"shapes differ: {_shape(a)} vs {_shape(b)}"
    note = None
    if any((x is None) != (y is None) for x, y in zip(flat_a, flat_b, strict=True)):
        note = "null cells differ"
    diffs = [abs(x - y) for x, y in zip(flat_a, flat_b, strict=True) if x is not None and y is not None]
    return (max(diffs) if diffs else 0.0), note


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _agreement(ours: dict[str, Any], ref: dict[str, Any], randomised: bool) -> dict[str, Any]:
    notes = []
    # Inseq marks a target token that differs from its contrast token with id -1 ("a → b").
    pairs = zip(ours["target_ids"], ref["target_ids"], strict=False)  # lengths compared below
    ref_ids = [mine if theirs == -1 else theirs for mine, theirs in pairs]
    if ours["target_ids"] != ref_ids or len(ref["target_ids"]) != len(ours["target_ids"]):
        notes.append("target tokens differ")
    score_diff: float | str | None = "random"
    if not randomised:
        score_diff, note = _max_abs_diff(ours["target_attributions"], ref["target_attributions"])
        if note:
            notes.append(f"scores: {note}")
    step_diffs: dict[str, float | None] = {}
    for name in sorted(set(ours["step_scores"]) | set(ref["step_scores"])):
        step_diffs[name], note = _max_abs_diff(ours["step_scores"].get(name), ref["step_scores"].get(name))
        if note:
            notes.append(f"{name}: {note}")
    return {"max_abs_diff_scores": score_diff, "max_abs_diff_step_scores": step_diffs, "notes": notes}


def _floor_s(spec: dict[str, Any], run: dict[str, Any]) -> float | None:
    flops = method_flops(
        spec["method"],
        spec["method_args"],
        ModelDims(**run["model_dims"]),
        run["attr_pos_start"],
        len(run["target_ids"]),
        logits_needed=bool(spec["step_scores"]) or not spec["forced"],
        contrast=spec["case"] == "contrast",
    )
    return None if flops is None else flops / run["matmul"]["flops_per_s"]


def summary(
    spec: dict[str, Any], ours: dict[str, Any], ref: dict[str, Any], randomised: bool
) -> dict[str, Any]:
    """Times, speed-up, floor, memory and agreement of one case; a failed side is a note, not an error."""
    ok = {impl: "error" not in run for impl, run in (("seqattr", ours), ("inseq", ref))}
    seconds = {
        impl: statistics.median(run["wall_s"]) if ok[impl] else None
        for impl, run in (("seqattr", ours), ("inseq", ref))
    }
    out: dict[str, Any] = {
        "seqattr_s": seconds["seqattr"],
        "inseq_s": seconds["inseq"],
        "speedup": None,
        "floor_s": None,
        "seqattr_over_floor": None,
        "max_abs_diff_scores": None,
        "max_abs_diff_step_scores": {},
        "notes": [],
    }
    for impl, run in (("seqattr", ours), ("inseq", ref)):
        out[f"{impl}_peak_extra_mib"] = max(run["peak_extra_mib"]) if ok[impl] else None
        out[f"{impl}_other_load_cores"] = statistics.median(run["other_cores"]) if ok[impl] else None
    if not ok["seqattr"]:
        out["notes"].append(f"seqattr failed: {ours['error']}")
    if not ok["inseq"]:
        out["notes"].append(f"reference failed: {ref['error']}")
    measured = ours if ok["seqattr"] else ref if ok["inseq"] else None
    if measured is not None:
        out["floor_s"] = _floor_s(spec, measured)
        out["n_target_tokens"] = len(measured["target_ids"])
        out["n_prompt_tokens"] = measured["attr_pos_start"]
    if ok["seqattr"] and out["floor_s"]:
        out["seqattr_over_floor"] = seconds["seqattr"] / out["floor_s"]
    if ok["seqattr"] and ok["inseq"]:
        out["speedup"] = seconds["inseq"] / seconds["seqattr"] if seconds["seqattr"] else math.inf
        out.update(_agreement(ours, ref, randomised))
    return out


# ---------------------------------------------------------------------------------------------------------
# Report


LEGEND = """
Seqattr/Inseq s: median wall seconds of the timed runs; speed-up = Inseq / Seqattr; floor s: the arithmetic
the method cannot avoid over the matmul throughput measured in the same child (tests/bench/floor.py); peak
MiB: largest rise during one run of the resident set (CPU) or of CUDA allocated memory (GPU) over the level
before it; scores: default-aggregated target attributions ("random": a randomised method, not compared);
other load S / I: cores kept busy by other processes during the Seqattr / Inseq runs (above ~0.3 the timings
are contended)."""


def _fmt(value: float | str | None, spec: str, missing: str = "n/a") -> str:
    if isinstance(value, str):
        return value
    return missing if value is None else format(value, spec)


COLUMNS = (
    "case",
    "Seqattr s",
    "Inseq s",
    "speed-up",
    "floor s",
    "Seqattr / floor",
    "Seqattr peak MiB",
    "Inseq peak MiB",
    "max abs diff scores",
    "max abs diff step scores",
    "other load S / I",
    "notes",
)


def _row(case: dict[str, Any]) -> list[str]:
    s = case["summary"]
    speedup = _fmt(s["speedup"], ".1f") + ("x" if s["speedup"] else "")
    steps = ", ".join(f"{k} {_fmt(v, '.1e')}" for k, v in s["max_abs_diff_step_scores"].items())
    load = [_fmt(s[f"{impl}_other_load_cores"], ".1f", "-") for impl in IMPLS]
    return [
        f"{case['method']} / {case['case']}",
        _fmt(s["seqattr_s"], ".2f", "failed"),
        _fmt(s["inseq_s"], ".2f", "failed"),
        speedup,
        _fmt(s["floor_s"], ".3f"),
        _fmt(s["seqattr_over_floor"], ".2f"),
        _fmt(s["seqattr_peak_extra_mib"], ".0f", "-"),
        _fmt(s["inseq_peak_extra_mib"], ".0f", "-"),
        _fmt(s["max_abs_diff_scores"], ".1e"),
        steps or "-",
        " / ".join(load),
        "; ".join(s["notes"]),
    ]


def markdown_table(cases: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in _row(case)) + " |" for case in cases]
    return "\n".join(lines)
