"""One benchmark measurement in its own process: `python -m tests.bench.child SPEC.json OUT.json`.

The spec names the implementation (`seqattr` or `inseq`), the device, the method and the case. The child loads
the model, runs once as a warm-up, then `repeats` timed runs; a warm-up that took `single_run_s` or more is
the only timed run (one-off costs are then negligible, and a second run would double a long case). Every run
is measured the same way:
- CPU: before it, the child collects garbage, hands freed heap back to the OS (`malloc_trim`), reads the
  resident set size and resets the kernel's high-water mark (writing "5" to /proc/self/clear_refs), so
  `VmHWM - VmRSS before` is the peak extra memory of that run alone;
- CUDA: the clocks are read after `torch.cuda.synchronize()`, and the peak extra memory is
  `torch.cuda.max_memory_allocated()` (reset before the run) over `torch.cuda.memory_allocated()` before it.

After the timed runs the child measures the matmul throughput of the model's shapes (`tests.bench.floor`).

A failure (the method refuses, raises, or runs out of memory) is written as `{"error": "<one line>"}` so the
parent reports it and carries on. A spec with `"kind": "generate"` instead computes the greedy continuations
that the forced-target cases use (and the long case's prompt).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from tests.bench.floor import ModelDims, matmul_throughput  # noqa: E402

MODEL_ID = "smollm2-135m-instruct"
KIB, MIB = 1024, 1024 * 1024

Outcome = dict[str, Any]
"""What one attribution run returns for the comparison: tokens, score matrix, step scores."""
Runner = tuple[Callable[[], Outcome], Any]
"""The run function and the torch model it uses."""


# ---------------------------------------------------------------------------------------------------------
# Readings: memory (Linux /proc, or the CUDA allocator), machine load


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


def _is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def _sync(device: str) -> None:
    if _is_cuda(device):
        torch.cuda.synchronize()


def _memory_before(device: str) -> int:
    """Bytes in use before a run; resets the peak reading."""
    if _is_cuda(device):
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    _trim_heap()
    before = _status_kib("VmRSS") * KIB
    _reset_peak()
    return before


def _peak_bytes(device: str) -> int:
    if _is_cuda(device):
        return torch.cuda.max_memory_allocated()
    return _status_kib("VmHWM") * KIB


def _memory_reading(device: str) -> str:
    """What `peak_extra_mib` measures on this device."""
    if _is_cuda(device):
        return "cuda allocated"
    return "rss" if _reset_peak() else "rss, peak since the process started (clear_refs refused)"


def _measured(run: Callable[[], Outcome], device: str) -> tuple[Outcome, dict[str, float]]:
    before = _memory_before(device)
    wall0, cpu0, busy0 = time.perf_counter(), time.process_time(), _system_busy_s()
    outcome = run()
    _sync(device)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return outcome, {
        "wall_s": wall,
        "cpu_s": cpu,
        # Cores kept busy by other processes during the run: how contended the measurement was.
        "other_cores": max(0.0, _system_busy_s() - busy0 - cpu) / wall,
        "peak_extra_mib": (_peak_bytes(device) - before) / MIB,
        "before_mib": before / MIB,
    }


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if value != value else value


def _one_line(exc: BaseException) -> str:
    text = " / ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


# ---------------------------------------------------------------------------------------------------------
# The two implementations


def _loaded_model(spec: dict[str, Any]) -> Any:
    from schemas.models import load_registry
    from workers.model_loading import load_model

    return load_model(load_registry()[MODEL_ID], cache_dir=Path(spec["cache_dir"]), device=spec["device"])


def _seqattr_runner(spec: dict[str, Any]) -> Runner:
    from schemas.attribution import AttributionRequest, GenerationArgs
    from workers.engine.run import run_attribution

    loaded = _loaded_model(spec)
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
            "attr_pos_start": seq["attr_pos_start"],
            "target_attributions": seq["target_attributions"],
            "step_scores": seq["step_scores"],
        }

    return run, loaded.model


def _inseq_runner(spec: dict[str, Any]) -> Runner:
    import inseq

    folder = Path(spec["cache_dir"]) / MODEL_ID
    model = inseq.load_model(
        str(folder),
        spec["method"],
        device=spec["device"],
        model_kwargs={"attn_implementation": "eager"},
        **spec["inseq_args"]["init"],
    )
    kwargs: dict[str, Any] = dict(spec["inseq_args"]["attribute"])
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
            "attr_pos_start": seq.attr_pos_start,
            "target_attributions": agg.target_attributions,
            "step_scores": dict(seq.step_scores or {}),
        }

    return run, model.model


def _plain(outcome: Outcome) -> Outcome:
    """Tensors → JSON lists with null for NaN (done after timing)."""

    def lists(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return _nan_to_none(value.detach().float().cpu().tolist())
        return value

    return {
        "target_ids": outcome["target_ids"],
        "attr_pos_start": outcome["attr_pos_start"],
        "target_attributions": lists(outcome["target_attributions"]),
        "step_scores": {k: lists(v) for k, v in outcome["step_scores"].items()},
    }


# ---------------------------------------------------------------------------------------------------------
# Greedy continuations


def _long_prompt(tok: Any, paragraph: str, n_tokens: int) -> str:
    """Words of `paragraph`, repeated, up to exactly `n_tokens` tokens (a word overshooting is skipped)."""
    words: list[str] = []
    for word in islice(cycle(paragraph.split()), 20 * n_tokens):
        length = len(tok(" ".join([*words, word]))["input_ids"])
        if length <= n_tokens:
            words.append(word)
        if length == n_tokens:
            return " ".join(words)
    raise RuntimeError(f"could not build a prompt of exactly {n_tokens} tokens")


def _continuation(loaded: Any, prompt: str, max_new_tokens: int) -> dict[str, Any]:
    """The greedy continuation, decoded without special tokens (both libraries' convention)."""
    tok = loaded.tokenizer
    ids = torch.tensor([tok(prompt)["input_ids"]], device=loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    text = tok.decode(out[0], skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return {
        "prompt": prompt,
        "n_prompt_tokens": int(ids.shape[1]),
        "generated_text": text,
        "max_new_tokens": max_new_tokens,
        "n_new_tokens": int(out.shape[1] - ids.shape[1]),
    }


def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    loaded = _loaded_model(spec)
    result = {"short": _continuation(loaded, spec["prompt"], spec["max_new_tokens"])}
    if spec.get("long"):
        long = spec["long"]
        prompt = _long_prompt(loaded.tokenizer, long["paragraph"], long["prompt_tokens"])
        result["long"] = _continuation(loaded, prompt, long["max_new_tokens"])
    return result


# ---------------------------------------------------------------------------------------------------------
# Measurement


def _attribution(spec: dict[str, Any]) -> dict[str, Any]:
    device = spec["device"]
    stage = "load"
    try:
        started = time.perf_counter()
        make = _seqattr_runner if spec["impl"] == "seqattr" else _inseq_runner
        run, model = make(spec)
        load_s = time.perf_counter() - started
        stage = "warm-up"
        first, first_metrics = _measured(run, device)
        outcome = _plain(first)  # its scores are the ones compared
        del first
        runs = []
        if first_metrics["wall_s"] < spec["single_run_s"]:
            stage = "timed runs"
            for _ in range(spec["repeats"]):
                result, metrics = _measured(run, device)
                runs.append(metrics)
                del result
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not fatal to the bench
        traceback.print_exc()
        return {"impl": spec["impl"], "error": f"{stage}: {_one_line(exc)}"}
    dims = ModelDims.of(model)
    throughput = matmul_throughput(dims, len(outcome["target_ids"]), device, next(model.parameters()).dtype)
    timed = runs or [first_metrics]
    return {
        "impl": spec["impl"],
        "device": device,
        "load_s": load_s,
        "warmup_s": first_metrics["wall_s"],
        "warmup_is_the_timed_run": not runs,
        **{key: [m[key] for m in timed] for key in timed[0]},
        "threads": torch.get_num_threads(),
        "memory": _memory_reading(device),
        "model_dims": vars(dims),
        "matmul": throughput,
        **outcome,
    }


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    if spec.get("kind") == "generate":
        return _generate(spec)
    return _attribution(spec)


def main(argv: list[str]) -> int:
    spec_path, out_path = (Path(a) for a in argv)
    spec = json.loads(spec_path.read_text())
    result = measure(spec)
    out_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
