"""Seqattr's engine vs Inseq 0.7.1 on the default model: time, peak extra memory and score agreement.

    python -m tests.bench [--methods saliency,attention] [--repeats 3] [--quick]

Cases: each method (a) with a forced target (the prompt + its greedy continuation, computed once) and (b) as a
whole job that generates; with saliency, (c) a contrastive case: `contrast_prob_diff` attributed against the
continuation with one word changed. Each (case, implementation) runs in its own child process with
`torch.set_num_threads(2)`: model load, one warm-up, then the median of `--repeats` timed runs. Peak extra
memory is the largest rise of the resident set during one run over the resident set just before it (after
load + warm-up). Results: a Markdown table on stdout and `data/bench/latest.json`.

Run time on 2 idle cores: about 17 minutes, 80% of it integrated gradients (n_steps 50 costs 35-65 s per run
on either side, and each of its 4 children does a warm-up plus 3 runs); `--methods saliency,input_x_gradient,
attention` takes about 4 minutes, `--quick` about 3. Timings are only comparable on an idle machine: the
table reports how many cores other processes kept busy during each side's runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from schemas.methods import METHOD_SPECS

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "George was sick yesterday. His colleagues asked him to come"
MAX_NEW_TOKENS = 20
METHODS = list(METHOD_SPECS)
FINAL_STEP_METHODS = {"attention"}
"""Inseq refuses step scores for these, so neither side is asked for them."""
IG_STEPS = 50
QUICK_IG_STEPS = 5
QUICK_MAX_NEW_TOKENS = 5
THREADS = 2
IMPLS = ("seqattr", "inseq")
MODES = ("forced", "generate")
CONTRAST_FN = "contrast_prob_diff"
"""The contrastive case: saliency of p(target) - p(contrast target), forced targets, one word changed."""
CONTRAST_WORD = (" hospital", " office")
"""The word of the greedy continuation replaced in the contrast target (the first word if it is absent)."""
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per case (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_IG_STEPS} integrated-gradients steps, {QUICK_MAX_NEW_TOKENS} new tokens, "
        "1 repeat",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=ROOT / "data" / "models", help="converted-model cache folder"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "data" / "bench" / "latest.json", help="JSON report path"
    )
    parser.add_argument(
        "--passive-omp",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE in the children: on a busy machine, spinning OpenMP threads slow both "
        "sides down several times (Inseq more); off by default, as the service runs",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per child process")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        parser.error(f"unknown method(s) {unknown}; choose from {METHODS}")
    args.methods = methods
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------------------
# Child processes


def _run_child(
    spec: dict[str, Any], logs: Path, name: str, timeout: float, extra_env: dict[str, str]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="seqattr-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        log_path = logs / f"{name}.log"
        env = {**os.environ, **CHILD_ENV, **extra_env}
        with log_path.open("w") as log:
            proc = subprocess.run(
                [sys.executable, "-m", "tests.bench.child", str(spec_path), str(out_path)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if proc.returncode != 0 or not out_path.is_file():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"bench child {name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
        return json.loads(out_path.read_text())


def _loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


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


def _without_scores(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("target_attributions", "step_scores")}


def _summary(ours: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    notes = []
    # Inseq marks a target token that differs from its contrast token with id -1 ("a → b").
    pairs = zip(ours["target_ids"], ref["target_ids"], strict=False)  # lengths compared below
    ref_ids = [mine if theirs == -1 else theirs for mine, theirs in pairs]
    if ours["target_ids"] != ref_ids or len(ref["target_ids"]) != len(ours["target_ids"]):
        notes.append("target tokens differ")
    score_diff, note = _max_abs_diff(ours["target_attributions"], ref["target_attributions"])
    if note:
        notes.append(f"scores: {note}")
    step_diffs: dict[str, float | None] = {}
    for name in sorted(set(ours["step_scores"]) | set(ref["step_scores"])):
        step_diffs[name], note = _max_abs_diff(ours["step_scores"].get(name), ref["step_scores"].get(name))
        if note:
            notes.append(f"{name}: {note}")
    seconds = {impl: statistics.median(r["times_s"]) for impl, r in (("seqattr", ours), ("inseq", ref))}
    return {
        "seqattr_s": seconds["seqattr"],
        "inseq_s": seconds["inseq"],
        "speedup": seconds["inseq"] / seconds["seqattr"] if seconds["seqattr"] > 0 else math.inf,
        "seqattr_other_load_cores": statistics.median(ours["other_processes_cores"]),
        "inseq_other_load_cores": statistics.median(ref["other_processes_cores"]),
        "seqattr_peak_extra_mib": max(ours["peak_extra_mib"]),
        "inseq_peak_extra_mib": max(ref["peak_extra_mib"]),
        "max_abs_diff_scores": score_diff,
        "max_abs_diff_step_scores": step_diffs,
        "n_target_tokens": len(ours["target_ids"]),
        "n_steps_attributed": len(ours["target_attributions"][0]) if ours["target_attributions"] else 0,
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------------------
# Report


LEGEND = """
Seqattr/Inseq s: median wall seconds of the timed runs; speed-up = Inseq / Seqattr; peak MiB: largest rise
of the resident set during one run over the resident set before it; other load S / I: cores kept busy by
other processes during the Seqattr / Inseq runs (above ~0.3 the timings are contended)."""


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown_table(cases: list[dict[str, Any]]) -> str:
    header = (
        "| case | Seqattr s | Inseq s | speed-up | Seqattr peak MiB | Inseq peak MiB "
        "| max abs diff scores | max abs diff step scores | other load S / I | notes |"
    )
    lines = [header, "|" + "---|" * 10]
    for case in cases:
        s = case["summary"]
        steps = ", ".join(f"{k} {_fmt(v, '.1e')}" for k, v in s["max_abs_diff_step_scores"].items())
        notes = "; ".join(s["notes"])
        lines.append(
            f"| {case['method']} / {case['mode']} | {s['seqattr_s']:.2f} | {s['inseq_s']:.2f} | "
            f"{s['speedup']:.1f}x | {s['seqattr_peak_extra_mib']:.0f} | {s['inseq_peak_extra_mib']:.0f} | "
            f"{_fmt(s['max_abs_diff_scores'], '.1e')} | {steps or 'none asked'} | "
            f"{s['seqattr_other_load_cores']:.1f} / {s['inseq_other_load_cores']:.1f} | {notes} |"
        )
    return "\n".join(lines)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _environment(cache_dir: Path) -> dict[str, Any]:
    versions = {}
    for name in ("seqattr", "torch", "transformers", "captum", "inseq"):
        try:
            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - report what is there
            versions[name] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
        "model": "smollm2-135m-instruct",
        "model_folder": str(cache_dir / "smollm2-135m-instruct"),
        "git_commit": _git("rev-parse", "HEAD"),
        # The engine measured is the working tree: list what differs from the commit.
        "git_uncommitted_engine_files": (
            _git("status", "--porcelain", "--", "workers", "schemas") or ""
        ).splitlines(),
    }


def _contrast_text(generated: dict[str, Any]) -> str:
    """The greedy text with one word changed: the contrast target of the contrastive case."""
    text = str(generated["generated_text"])
    old, new = CONTRAST_WORD
    if old not in text:
        old = " " + text.removeprefix(PROMPT).split()[0]
    return text.replace(old, new, 1)


# ---------------------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    max_new_tokens = QUICK_MAX_NEW_TOKENS if args.quick else MAX_NEW_TOKENS
    ig_steps = QUICK_IG_STEPS if args.quick else IG_STEPS
    logs = args.out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = {
        "cache_dir": str(args.cache_dir.resolve()),
        "prompt": PROMPT,
        "max_new_tokens": max_new_tokens,
        "threads": THREADS,
        "repeats": args.repeats,
    }
    load_start = _loadavg()
    print(f"load average at start: {load_start} on {os.cpu_count()} CPUs", file=sys.stderr)
    extra_env = {"OMP_WAIT_POLICY": "PASSIVE"} if args.passive_omp else {}
    generated = _run_child({**base, "kind": "generate"}, logs, "generate", args.timeout, extra_env)
    print(f"greedy continuation: {generated['generated_text']!r}", file=sys.stderr)

    cases = []
    plan = [(method, mode) for method in args.methods for mode in MODES]
    if "saliency" in args.methods:
        plan.append(("saliency", "contrast"))
    for method, mode in plan:
        method_args = {"n_steps": ig_steps} if method == "integrated_gradients" else {}
        step_scores = [] if method in FINAL_STEP_METHODS else ["probability"]
        contrast = {}
        if mode == "contrast":
            contrast = {"attributed_fn": CONTRAST_FN, "contrast_target": _contrast_text(generated)}
        runs: dict[str, dict[str, Any]] = {}
        for impl in IMPLS:
            name = f"{method}-{mode}-{impl}"
            spec = {
                **base,
                **contrast,
                "impl": impl,
                "method": method,
                "method_args": method_args,
                "step_scores": step_scores,
                "forced": mode != "generate",
                "generated_text": generated["generated_text"],
            }
            t0, load_before = time.perf_counter(), _loadavg()
            runs[impl] = _run_child(spec, logs, name, args.timeout, extra_env)
            runs[impl]["loadavg_before"] = load_before
            print(
                f"{name}: median {statistics.median(runs[impl]['times_s']):.2f} s "
                f"(child {time.perf_counter() - t0:.0f} s, load {load_before})",
                file=sys.stderr,
            )
        summary = _summary(runs["seqattr"], runs["inseq"])
        cases.append(
            {
                "method": method,
                "mode": mode,
                "method_args": method_args,
                "step_scores": step_scores,
                **contrast,
                "summary": summary,
                "runs": {impl: _without_scores(run) for impl, run in runs.items()},
            }
        )

    table = markdown_table(cases)
    print(table)
    print(LEGEND)
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {
            "methods": args.methods,
            "repeats": args.repeats,
            "quick": args.quick,
            "prompt": PROMPT,
            "max_new_tokens": max_new_tokens,
            "integrated_gradients_n_steps": ig_steps,
            "threads": THREADS,
            "omp_wait_policy": extra_env.get("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY")),
        },
        "environment": _environment(args.cache_dir),
        "generated_text": generated["generated_text"],
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "total_s": time.perf_counter() - started,
        "cases": cases,
        "table_markdown": table + "\n" + LEGEND,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.out} ({report['total_s']:.0f} s in all)", file=sys.stderr)
    return 0
