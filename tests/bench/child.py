"""One benchmark measurement in its own process: `python -m tests.bench.child SPEC.json OUT.json`.

The spec names the implementation (`seqattr` or `inseq`), the method and the case. The child loads the model,
runs one warm-up, then `repeats` timed runs; before each timed run it collects garbage, hands freed heap back
to the OS (`malloc_trim`), reads the resident set size and resets the kernel's high-water mark (writing "5"
to /proc/self/clear_refs), so `VmHWM - VmRSS before` is the peak extra memory of that run alone.

A spec with `"kind": "generate"` instead computes the greedy continuation that the forced-target cases use.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

MODEL_ID = "smollm2-135m-instruct"
KIB = 1024

Outcome = dict[str, Any]
"""What one attribution run returns for the comparison: target ids, score matrix, step scores."""


# ---------------------------------------------------------------------------------------------------------
# Memory readings (Linux /proc)


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _system_busy_s() -> float:
    """CPU seconds spent by the whole machine (all processes, all cores) since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if value != value else value


# ---------------------------------------------------------------------------------------------------------
# The two implementations


def _loaded_model(cache_dir: Path) -> Any:
    from schemas.models import load_registry
    from workers.model_loading import load_model

    return load_model(load_registry()[MODEL_ID], cache_dir=cache_dir)


def _seqattr_runner(spec: dict[str, Any]) -> Callable[[], Outcome]:
    from schemas.attribution import AttributionRequest, GenerationArgs
    from workers.engine.run import run_attribution

    loaded = _loaded_model(Path(spec["cache_dir"]))
    request = AttributionRequest(
        model=MODEL_ID,
        method=spec["method"],
        inputs=[spec["prompt"]],
        generated_texts=[spec["generated_text"]] if spec["forced"] else None,
        generation_args=GenerationArgs(max_new_tokens=spec["max_new_tokens"], do_sample=False),
        step_scores=spec["step_scores"],
        method_args=spec["method_args"],
        attributed_fn=spec.get("attributed_fn", "probability"),
        contrast_targets=[spec["contrast_target"]] if spec.get("contrast_target") else None,
    )

    def run() -> Outcome:
        result = run_attribution(request, loaded, lambda _done, _total: None, result_id="bench")
        seq = result["sequences"][0]
        return {
            "target_ids": [t["id"] for t in seq["target"]],
            "target_attributions": seq["target_attributions"],
            "step_scores": seq["step_scores"],
        }

    return run


def _inseq_runner(spec: dict[str, Any]) -> Callable[[], Outcome]:
    import inseq

    folder = Path(spec["cache_dir"]) / MODEL_ID
    model = inseq.load_model(str(folder), spec["method"], model_kwargs={"attn_implementation": "eager"})
    kwargs: dict[str, Any] = dict(spec["method_args"])
    if spec.get("attributed_fn"):
        kwargs["attributed_fn"] = spec["attributed_fn"]
    if spec.get("contrast_target"):
        kwargs["contrast_targets"] = [spec["contrast_target"]]
    if not spec["forced"]:
        kwargs["generation_args"] = {"max_new_tokens": spec["max_new_tokens"], "do_sample": False}
    generated = spec["generated_text"] if spec["forced"] else None

    def run() -> Outcome:
        out = model.attribute(
            spec["prompt"], generated, step_scores=list(spec["step_scores"]), show_progress=False, **kwargs
        )
        seq = out.sequence_attributions[0]
        # The engine's result is already aggregated, so the default aggregation is part of the timed run here.
        agg = seq.aggregate()
        return {
            "target_ids": [t.id for t in seq.target],
            "target_attributions": agg.target_attributions,
            "step_scores": dict(seq.step_scores or {}),
        }

    return run


def _plain(outcome: Outcome) -> Outcome:
    """Tensors → JSON lists with null for NaN (done after timing)."""

    def lists(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return _nan_to_none(value.detach().float().cpu().tolist())
        return value

    return {
        "target_ids": outcome["target_ids"],
        "target_attributions": lists(outcome["target_attributions"]),
        "step_scores": {k: lists(v) for k, v in outcome["step_scores"].items()},
    }


# ---------------------------------------------------------------------------------------------------------
# Measurement


def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    """The greedy continuation of the prompt, decoded without special tokens (both libraries' convention)."""
    loaded = _loaded_model(Path(spec["cache_dir"]))
    tok = loaded.tokenizer
    ids = torch.tensor([tok(spec["prompt"])["input_ids"]])
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=spec["max_new_tokens"],
            do_sample=False,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    text = tok.decode(out[0], skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return {"generated_text": text, "n_new_tokens": int(out.shape[1] - ids.shape[1])}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    if spec.get("kind") == "generate":
        return _generate(spec)
    started = time.perf_counter()
    make = _seqattr_runner if spec["impl"] == "seqattr" else _inseq_runner
    run = make(spec)
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    outcome = _plain(run())  # warm-up; its scores are the ones compared (the method is deterministic)
    warmup_s = time.perf_counter() - started
    peak_reset_works = _reset_peak()

    times, cpu_times, others, peaks, baselines = [], [], [], [], []
    for _ in range(spec["repeats"]):
        _trim_heap()
        before = _status_kib("VmRSS")
        _reset_peak()
        wall0, cpu0, busy0 = time.perf_counter(), time.process_time(), _system_busy_s()
        result = run()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        times.append(wall)
        cpu_times.append(cpu)
        # Cores kept busy by other processes during the run: how contended the measurement was.
        others.append(max(0.0, _system_busy_s() - busy0 - cpu) / wall)
        peaks.append((_status_kib("VmHWM") - before) / KIB)
        baselines.append(before / KIB)
        del result
    return {
        "impl": spec["impl"],
        "load_s": load_s,
        "warmup_s": warmup_s,
        "times_s": times,
        "cpu_s": cpu_times,
        "other_processes_cores": others,
        "peak_extra_mib": peaks,
        "rss_before_mib": baselines,
        "peak_reset_works": peak_reset_works,
        "threads": torch.get_num_threads(),
        **outcome,
    }


def main(argv: list[str]) -> int:
    spec_path, out_path = (Path(a) for a in argv)
    spec = json.loads(spec_path.read_text())
    result = measure(spec)
    out_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
