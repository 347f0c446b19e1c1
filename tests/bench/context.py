"""PECoRe context attribution on the default model, side by side with the reference library:
`python -m tests.bench.context [--repeats N] [--threads N]`.

The issue's example ("George was sick yesterday." / "His colleagues asked him to come") with the reference's
defaults (the output generated, 20 new tokens, greedy), on CPU: Seqattr's `run_context_attribution` against
Inseq's `attribute_context_with_model`, each model loaded once, one warm-up then the median of the repeats.
Both must agree (CTI scores and CCI scores within 1e-3, the same selected tokens and cues) before the times
are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

EXAMPLE = {
    "input_context_text": "George was sick yesterday.",
    "input_current_text": "His colleagues asked him to come",
}
ATOL = 1e-3
CASES = {
    "example, generated output": {},
    "example, forced output": {"output_current_text": "to the hospital. He said he was too sick to go"},
}
_INSEQ_MODELS: dict[str, Any] = {}


def _interleaved(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, Any]]:
    """Median seconds and last output of each run, after a warm-up each; the runs alternate, so load that
    comes and goes during the measurement falls on both sides alike."""
    outputs = {name: run() for name, run in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(times[name]), outputs[name]) for name in runs}


def _seqattr(fields: dict[str, Any]) -> tuple[Callable[[], Any], str]:
    from schemas.context import ContextAttributionRequest
    from schemas.defaults import DEFAULT_MODEL
    from schemas.models import load_registry
    from workers.engine.context_attribution import run_context_attribution
    from workers.model_loading import load_model
    from workers.settings import WorkerSettings

    loaded = load_model(load_registry()[DEFAULT_MODEL], WorkerSettings().model_cache_dir)
    request = ContextAttributionRequest(**EXAMPLE, **fields)
    return lambda: run_context_attribution(request, loaded, lambda _d, _t: None, "bench"), str(
        loaded.model.name_or_path
    )


def _inseq(path: str, fields: dict[str, Any]) -> Callable[[], Any]:
    import logging

    import inseq
    from inseq.commands.attribute_context.attribute_context import attribute_context_with_model
    from inseq.commands.attribute_context.attribute_context_args import AttributeContextArgs

    logging.getLogger("inseq").setLevel(logging.ERROR)
    model = _INSEQ_MODELS.get(path) or inseq.load_model(
        path, "saliency", device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    _INSEQ_MODELS[path] = model

    def run() -> Any:
        args = AttributeContextArgs(
            model_name_or_path=path,
            attributed_fn="contrast_prob_diff",  # Seqattr's default (the issue's); the reference's is None
            handle_output_context_strategy="auto",
            show_viz=False,
            save_path=None,
            **EXAMPLE,
            **fields,
        )
        return attribute_context_with_model(args, model)

    return run


def _check(ours: dict[str, Any], ref: Any) -> None:
    def close(a: list[float] | None, b: list[float] | None) -> bool:
        return (a is None) == (b is None) and (
            a is None or torch.allclose(torch.tensor(a), torch.tensor(b), atol=ATOL)
        )

    assert ours["output_current"] == ref.output_current, (ours["output_current"], ref.output_current)
    assert close(ours["cti_scores"], ref.cti_scores)
    assert ours["cti_selected"] == [c.cti_idx for c in ref.cci_scores]
    for mine, theirs in zip(ours["cci_scores"], ref.cci_scores, strict=True):
        assert mine["contextless_output"] == theirs.contextless_output
        assert close(mine["input_context_scores"], theirs.input_context_scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = []
    for case, fields in CASES.items():
        seqattr, path = _seqattr(fields)
        measured = _interleaved({"seqattr": seqattr, "inseq": _inseq(path, fields)}, args.repeats)
        (ours_s, ours), (ref_s, ref) = measured["seqattr"], measured["inseq"]
        _check(ours, ref)
        selected = ", ".join(f"{c['cti_token']!r} ({c['cti_score']:.3f})" for c in ours["cci_scores"])
        rows.append((case, ref_s, ours_s, ours["output_current"], selected))
    print(
        f"\nSmolLM2-135M-Instruct, CPU, {args.threads} torch threads, median of {args.repeats} alternating "
        f"runs after a warm-up; load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; scores "
        f"agree within {ATOL}.\n"
    )
    print(
        "| job | Inseq 0.7.1 `attribute_context_with_model` | Seqattr `run_context_attribution` | speed-up |"
    )
    print("| --- | ---: | ---: | ---: |")
    for case, ref_s, ours_s, _, _ in rows:
        print(f"| {case} | {ref_s:.2f} s | {ours_s:.2f} s | {ref_s / ours_s:.1f}x |")
    for case, _, _, output, selected in rows:
        print(f"\n{case}: output {output!r}; context-sensitive: {selected}")


if __name__ == "__main__":
    main()
