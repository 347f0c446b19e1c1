"""Seqattr's engine vs Inseq 0.7.1 on the default model: time, peak memory, score agreement and the floor.

    python -m tests.bench [--methods saliency,attention] [--cases forced,long] [--device cuda]
                          [--quick [--long]] [--repeats 3] [--timeout 3600]

Cases, for every method of the catalogue (`--methods` picks some):
- `forced`: the prompt below + its greedy continuation of 20 tokens (computed once), as a forced target;
- `generate`: the whole job, generation included, 20 new tokens;
- `contrast` (saliency only): `contrast_prob_diff` attributed against the continuation with one word changed;
- `long` (saliency, integrated_gradients, occlusion, attention): a 200-token prompt (a paragraph of plain
  English repeated) + its greedy continuation of 50 tokens, forced.

Method arguments come from `BENCH_ARGS` (one table below). Step scores (`probability`) are asked of both
sides, except for final-step methods (Inseq refuses them). Randomised methods are seeded on both sides but
with different generators: their scores are not compared ("random").

Each (case, implementation) runs in its own child process (`tests.bench.child`) with
`torch.set_num_threads(2)` on `--device` (cpu or cuda): model load, one warm-up, then the median of
`--repeats` timed runs (a warm-up of 30 s or more is the only timed run). Peak extra memory: the largest rise
of the resident set (CPU) or of the CUDA allocator's memory (GPU) during one run. The floor
(`tests.bench.floor`): the arithmetic the method cannot avoid over the matmul throughput measured in the same
child. A child that fails (a method not implemented yet, Inseq crashing, a timeout) is reported in the table
and the bench goes on. Results: a Markdown table on stdout and `data/bench/latest.json`.

Run time on 2 idle cores: `--quick` (5 new tokens, 5 path points, no long case) a few minutes per method; the
whole bench hours, most of it integrated-gradients-like methods on Inseq's side (the long case's integrated
gradients alone can take most of an hour per side). Timings are only comparable on an idle machine: the table
reports how many cores other processes kept busy during each side's runs.
"""

from __future__ import annotations

import argparse
import json
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

from schemas.methods import METHOD_ARGS, METHOD_SPECS
from tests.bench.report import IMPLS, LEGEND, markdown_table, summary

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "George was sick yesterday. His colleagues asked him to come"
MAX_NEW_TOKENS = 20
QUICK_MAX_NEW_TOKENS = 5
LONG_PARAGRAPH = (
    "The old library stood at the corner of the market square, and every morning the keeper opened its "
    "heavy doors before the bakers had finished their first loaves. People came for many reasons. Some "
    "wanted a quiet place to read the news, others looked for maps of the hills, and children ran between "
    "the shelves until someone asked them to sit down. In winter the rooms were cold, so the keeper lit a "
    "small stove near the window and made tea for anyone who stayed past noon. Nobody could remember when "
    "the building was first used as a library, but the town was proud of it and paid for a new roof when the "
    "rain came through."
)
LONG_PROMPT_TOKENS = 200
LONG_NEW_TOKENS = 50
LONG_METHODS = ("saliency", "integrated_gradients", "occlusion", "attention")
CASES = ("forced", "generate", "contrast", "long")
CONTRAST_FN = "contrast_prob_diff"
CONTRAST_WORD = (" hospital", " office")
"""The word of the greedy continuation replaced in the contrast target (the first word if it is absent)."""
METHODS = list(METHOD_SPECS)
SEED = 0
BENCH_ARGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # method: (method_args, what --quick changes)
    "saliency": ({}, {}),
    "input_x_gradient": ({}, {}),
    "integrated_gradients": ({"n_steps": 50}, {"n_steps": 5}),
    "deeplift": ({}, {}),
    "gradient_shap": ({"n_samples": 5, "seed": SEED}, {}),  # captum's default n_samples
    "discretized_integrated_gradients": ({"n_steps": 50}, {"n_steps": 5}),
    # Each token gets its own path: n_steps x prefix length copies per step (Inseq advises fewer steps).
    "sequential_integrated_gradients": ({"n_steps": 10}, {"n_steps": 2}),
    "layer_integrated_gradients": ({"n_steps": 50}, {"n_steps": 5}),
    "layer_gradient_x_activation": ({}, {}),
    "layer_deeplift": ({}, {}),
    "attention": ({}, {}),
    "occlusion": ({}, {}),
    "lime": ({"n_samples": 50, "seed": SEED}, {"n_samples": 10}),
    "value_zeroing": ({}, {}),
    # Defaults but bounded: the default 3000 probe rounds per step can run for hours.
    "reagent": ({"max_probe_steps": 10, "seed": SEED}, {"max_probe_steps": 2}),
    "dummy": ({}, {}),
}
"""The bench's method arguments, the same for every case of a method."""
SEQATTR_ONLY_ARGS = {"seed", "replacing_model"}
"""Not Inseq's: its children seed torch's global generator (`torch.manual_seed(0)`) instead."""
INSEQ_INIT_ARGS = {
    "multiply_by_inputs",
    "mask_prob",
    "keep_top_n",
    "keep_ratio",
    "invert_keep",
    "stopping_condition_top_k",
    "replacing_ratio",
    "max_probe_steps",
    "num_probes",
}
"""Inseq takes these when the method is built (`inseq.load_model(..., **kwargs)`), not in `attribute`."""
INSEQ_LONG_ARGS = {"integrated_gradients": {"internal_batch_size": 5}}
"""Inseq's own arguments on the long case: all 50 interpolation copies of a 250-token prefix in one batch
would need about 50 GiB; captum's `internal_batch_size` runs them 5 at a time, as a user of Inseq would."""
FINAL_STEP_METHODS = {"attention", "value_zeroing"}
"""Inseq refuses step scores for these, so neither side is asked for them."""
RANDOMISED = {method for method, spec in METHOD_SPECS.items() if spec.randomised}
THREADS = 2
SINGLE_RUN_S = 30.0
"""A warm-up at least this long is the only timed run of its child."""
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _check_tables() -> None:
    if set(BENCH_ARGS) != set(METHODS):
        raise RuntimeError(
            f"BENCH_ARGS must list every catalogue method: {sorted(set(METHODS) ^ set(BENCH_ARGS))}"
        )
    for method, (args, quick) in BENCH_ARGS.items():
        METHOD_ARGS[method].model_validate({**args, **quick})  # a typo fails here, not in every child


def _csv(
    text: str, choices: list[str] | tuple[str, ...], what: str, parser: argparse.ArgumentParser
) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(chosen) - set(choices))
    if unknown or not chosen:
        parser.error(f"unknown {what} {unknown}; choose from {','.join(choices)}")
    return chosen


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset (default: all)")
    parser.add_argument(
        "--cases",
        default=None,
        help=f"comma-separated subset of {','.join(CASES)} (default: all; see --quick)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where both sides run")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per case (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_MAX_NEW_TOKENS} new tokens, the --quick column of BENCH_ARGS, 1 repeat, "
        "no long case unless --long or --cases names it",
    )
    parser.add_argument("--long", action="store_true", help="with --quick, run the long case too")
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
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds allowed per child process (default 3600)"
    )
    args = parser.parse_args(argv)
    args.methods = _csv(args.methods, METHODS, "method(s)", parser)
    if args.cases is None:
        args.cases = [c for c in CASES if c != "long" or not args.quick or args.long]
    else:
        args.cases = _csv(args.cases, CASES, "case(s)", parser)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------------------
# Plan


def method_args(method: str, quick: bool) -> dict[str, Any]:
    args, quick_args = BENCH_ARGS[method]
    return {**args, **quick_args} if quick else dict(args)


def inseq_args(method: str, case: str, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Our method arguments in Inseq's terms: those for the method's constructor, those for `attribute`."""
    theirs = {k: v for k, v in args.items() if k not in SEQATTR_ONLY_ARGS}
    if case == "long":
        theirs.update(INSEQ_LONG_ARGS.get(method, {}))
    return {
        "init": {k: v for k, v in theirs.items() if k in INSEQ_INIT_ARGS},
        "attribute": {k: v for k, v in theirs.items() if k not in INSEQ_INIT_ARGS},
    }


def _applies(method: str, case: str) -> bool:
    if case == "contrast":
        return method == "saliency"
    return case != "long" or method in LONG_METHODS


def _case_spec(method: str, case: str, args: argparse.Namespace, generated: dict[str, Any]) -> dict[str, Any]:
    """What both children of one case are asked (without the implementation's own fields)."""
    text = generated["long" if case == "long" else "short"]
    spec: dict[str, Any] = {
        "method": method,
        "case": case,
        "method_args": method_args(method, args.quick),
        "step_scores": [] if method in FINAL_STEP_METHODS else ["probability"],
        "forced": case != "generate",
        "prompt": text["prompt"],
        "generated_text": text["generated_text"],
        "max_new_tokens": text["max_new_tokens"],
    }
    if case == "contrast":
        spec.update(attributed_fn=CONTRAST_FN, contrast_target=_contrast_text(text))
    return spec


def _contrast_text(generated: dict[str, Any]) -> str:
    """The greedy text with one word changed: the contrast target of the contrastive case."""
    text = str(generated["generated_text"])
    old, new = CONTRAST_WORD
    if old not in text:
        old = " " + text.removeprefix(generated["prompt"]).split()[0]
    return text.replace(old, new, 1)


# ---------------------------------------------------------------------------------------------------------
# Child processes


def _run_child(
    spec: dict[str, Any], logs: Path, name: str, timeout: float, extra_env: dict[str, str]
) -> dict[str, Any]:
    """The child's result, or `{"error": "<one line>"}` if it failed, crashed or ran out of time."""
    with tempfile.TemporaryDirectory(prefix="seqattr-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        log_path = logs / f"{name}.log"
        env = {**os.environ, **CHILD_ENV, **extra_env}
        with log_path.open("w") as log:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "tests.bench.child", str(spec_path), str(out_path)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return {"error": f"timed out after {timeout:.0f} s (--timeout); log {log_path}"}
        if proc.returncode != 0 or not out_path.is_file():
            lines = log_path.read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else ""
            return {"error": f"exit {proc.returncode}: {last[:200]} (log {log_path})"}
        return dict(json.loads(out_path.read_text()))


def _loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _environment(cache_dir: Path, device: str) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in ("seqattr", "torch", "transformers", "captum", "inseq"):
        try:
            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - report what is there
            versions[name] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "gpu": _gpu_name() if device == "cuda" else None,
        "versions": versions,
        "model": "smollm2-135m-instruct",
        "model_folder": str(cache_dir / "smollm2-135m-instruct"),
        "git_commit": _git("rev-parse", "HEAD"),
        # The engine measured is the working tree: list what differs from the commit.
        "git_uncommitted_engine_files": (
            _git("status", "--porcelain", "--", "workers", "schemas") or ""
        ).splitlines(),
    }


def _cuda_problem() -> str | None:
    """Why `--device cuda` cannot run here, or None."""
    import torch

    if torch.cuda.is_available():
        return None
    return f"CUDA is not available (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})"


def _gpu_name() -> str:
    import torch

    return str(torch.cuda.get_device_name())


# ---------------------------------------------------------------------------------------------------------
# Entry point


class Bench:
    """One bench run: where its children write, what they share, and how they are run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs = args.out.parent / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.base = {"cache_dir": str(args.cache_dir.resolve()), "device": args.device, "threads": THREADS}
        self.env = {"OMP_WAIT_POLICY": "PASSIVE"} if args.passive_omp else {}
        self.max_new_tokens = QUICK_MAX_NEW_TOKENS if args.quick else MAX_NEW_TOKENS

    def generate(self, want_long: bool) -> dict[str, Any]:
        """The greedy continuations (short, and long if asked) that every forced case uses."""
        long = {
            "paragraph": LONG_PARAGRAPH,
            "prompt_tokens": LONG_PROMPT_TOKENS,
            "max_new_tokens": LONG_NEW_TOKENS,
        }
        spec = {**self.base, "kind": "generate", "prompt": PROMPT, "max_new_tokens": self.max_new_tokens}
        spec["long"] = long if want_long else None
        return _run_child(spec, self.logs, "generate", self.args.timeout, {})

    def case(self, method: str, case: str, generated: dict[str, Any]) -> dict[str, Any]:
        """Both children of one case, their summary and their runs (without scores)."""
        spec = _case_spec(method, case, self.args, generated)
        spec["inseq_args"] = inseq_args(method, case, spec["method_args"])
        runs: dict[str, dict[str, Any]] = {}
        for impl in IMPLS:
            name = f"{method}-{case}-{impl}"
            child = {**self.base, **spec, "impl": impl}
            child.update(repeats=self.args.repeats, single_run_s=SINGLE_RUN_S)
            t0, load_before = time.perf_counter(), _loadavg()
            runs[impl] = _run_child(child, self.logs, name, self.args.timeout, self.env)
            runs[impl]["loadavg_before"] = load_before
            outcome = runs[impl].get("error") or f"median {statistics.median(runs[impl]['wall_s']):.2f} s"
            took = time.perf_counter() - t0
            print(f"{name}: {outcome} (child {took:.0f} s, load {load_before})", file=sys.stderr)
        scores = ("target_attributions", "step_scores")
        return {
            **{k: v for k, v in spec.items() if k not in ("prompt", "generated_text")},
            "summary": summary(spec, runs["seqattr"], runs["inseq"], method in RANDOMISED),
            "runs": {impl: {k: v for k, v in run.items() if k not in scores} for impl, run in runs.items()},
        }

    def options(self, want_long: bool) -> dict[str, Any]:
        args = self.args
        return {
            "methods": args.methods,
            "cases": args.cases,
            "device": args.device,
            "repeats": args.repeats,
            "quick": args.quick,
            "prompt": PROMPT,
            "max_new_tokens": self.max_new_tokens,
            "long_prompt_tokens": LONG_PROMPT_TOKENS if want_long else None,
            "long_new_tokens": LONG_NEW_TOKENS if want_long else None,
            "threads": THREADS,
            "single_run_s": SINGLE_RUN_S,
            "omp_wait_policy": self.env.get("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY")),
        }


def main(argv: list[str] | None = None) -> int:
    _check_tables()
    args = _parse(argv)
    plan = [(m, c) for m in args.methods for c in args.cases if _applies(m, c)]
    if not plan:
        print(
            f"no case applies: long is for {', '.join(LONG_METHODS)}, contrast for saliency", file=sys.stderr
        )
        return 2
    if args.device == "cuda" and (problem := _cuda_problem()):
        print(f"bench skipped: --device cuda, but {problem}", file=sys.stderr)
        return 0
    started, load_start = time.perf_counter(), _loadavg()
    print(f"load average at start: {load_start} on {os.cpu_count()} CPUs, {args.device}", file=sys.stderr)
    bench = Bench(args)
    want_long = any(case == "long" for _, case in plan)
    generated = bench.generate(want_long)
    if "error" in generated:
        print(f"greedy continuations failed: {generated['error']}", file=sys.stderr)
        return 1
    for part in generated.values():
        print(f"greedy continuation: {part['generated_text']!r}", file=sys.stderr)

    cases = [bench.case(method, case, generated) for method, case in plan]
    table = markdown_table(cases)
    print(table)
    print(LEGEND)
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": bench.options(want_long),
        "environment": _environment(args.cache_dir, args.device),
        "generated": generated,
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "total_s": time.perf_counter() - started,
        "cases": cases,
        "table_markdown": table + "\n" + LEGEND,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.out} ({report['total_s']:.0f} s in all)", file=sys.stderr)
    return 0
