"""Re-aggregation and exports on the default model, side by side with the reference library:
`python -m tests.bench.aggregation [--repeats N] [--cache-dir DIR]` (`make bench-aggregation`).

One saliency attribution of the README's example (SmolLM2-135M, forced continuation, CPU) by the reference
library gives unreduced scores; each aggregation chain then runs on those same tensors twice: by the
reference's `aggregate(...)` and by `schemas.scores.steps` (what `POST /v1/jobs/{id}/aggregate` runs), and the
outputs must agree (1e-4). The engine's own job is then measured against a re-aggregation of its kept scores
(archive read + chain + JSON), which is what a client saves by not running the model again, and the sizes of
the kept scores and of each export format are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import torch  # noqa: E402

MODEL_ID = "smollm2-135m-instruct"
PROMPT = "George was sick yesterday. His colleagues asked him to come"
TARGET = PROMPT + " to the hospital. He said he was too sick to go"
ROOT = Path(__file__).resolve().parents[2]


def _median_s(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


CHAINS: dict[str, tuple[list[tuple[Any, dict[str, Any]]], list[dict[str, Any]]]] = {
    "scores (default)": ([(None, {})], [{"aggregator": "scores"}]),
    "scores sum + subwords": (
        [("sum", {}), ("subwords", {"special_chars": ("Ġ", "Ċ")})],
        [
            {"aggregator": "scores", "aggregate_fn": "sum"},
            {"aggregator": "subwords", "special_chars": ["Ġ", "Ċ"]},
        ],
    ),
    "scores + split sentences (end)": (
        [(None, {}), ("split", {"split_pattern": r"\.", "split_mode": "end"})],
        [{"aggregator": "scores"}, {"aggregator": "split", "split_pattern": r"\.", "split_mode": "end"}],
    ),
    "scores + spans + slices": (
        [(None, {}), ("spans", {"target_spans": [(0, 3), (12, 15)]}), ("slices", {"target_spans": [(2, 6)]})],
        [
            {"aggregator": "scores"},
            {"aggregator": "spans", "target_spans": [[0, 3], [12, 15]]},
            {"aggregator": "slices", "target_spans": [[2, 6]]},
        ],
    ),
}


def _reference_output(cache_dir: Path) -> Any:
    import inseq

    model = inseq.load_model(
        str(cache_dir / MODEL_ID), "saliency", device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    out = model.attribute(PROMPT, TARGET, step_scores=["probability"], show_progress=False)
    return out.sequence_attributions[0]


def _as_scores(seq: Any) -> Any:
    from schemas.scores.sequence import SequenceScores

    def tokens(items: Any) -> list[Any]:
        return [{"id": t.id, "token": t.token, "text": t.token} for t in items]

    return SequenceScores(
        source=tokens(seq.source),
        target=tokens(seq.target),
        attr_pos_start=seq.attr_pos_start,
        attr_pos_end=seq.attr_pos_end,
        source_scores=None,
        target_scores=seq.target_attributions.float().numpy().copy(),
        step_scores={k: v.float().numpy().copy() for k, v in seq.step_scores.items()},
    )


def _chains(seq: Any, repeats: int) -> list[dict[str, Any]]:
    from pydantic import TypeAdapter

    from schemas.aggregation import AggregationStep
    from schemas.methods import METHOD_SPECS
    from schemas.scores.steps import ChainContext, run_chain

    adapter: TypeAdapter[list[AggregationStep]] = TypeAdapter(list[AggregationStep])
    start = _as_scores(seq)
    rows = []
    for name, (calls, steps) in CHAINS.items():
        parsed = adapter.validate_python(steps)

        def reference(calls: list[tuple[Any, dict[str, Any]]] = calls) -> Any:
            out = seq
            for aggregator, kwargs in calls:
                out = out.aggregate(aggregator, do_post_aggregation_checks=False, **kwargs)
            return out

        def ours(parsed: list[Any] = parsed) -> Any:
            context = ChainContext(METHOD_SPECS["saliency"].default_aggregators)
            return run_chain([start], parsed, context)[0]

        want, got = reference(), ours()
        diff = float(np.nanmax(np.abs(got.target_scores - want.target_attributions.float().numpy())))
        assert diff <= 1e-4 and [t["token"] for t in got.target] == [t.token for t in want.target], name
        reference_s, ours_s = _median_s(reference, repeats), _median_s(ours, repeats)
        rows.append(
            {
                "chain": name,
                "reference_ms": reference_s * 1e3,
                "seqattr_ms": ours_s * 1e3,
                "speedup": reference_s / ours_s,
                "max_diff": diff,
            }
        )
    return rows


def _engine(cache_dir: Path, repeats: int) -> dict[str, Any]:
    from schemas.aggregation import AggregateRequest
    from schemas.attribution import AttributionRequest
    from schemas.methods import METHOD_SPECS
    from schemas.models import load_registry
    from schemas.scores.archive import unpack
    from schemas.scores.sequence import to_result_sequence
    from schemas.scores.steps import ChainContext, run_chain
    from workers.engine.run import attribute
    from workers.model_loading import load_model

    loaded = load_model(load_registry()[MODEL_ID], cache_dir=cache_dir)
    sizes: dict[str, int] = {}
    jobs: dict[str, Any] = {}
    for precision in ("float16", "float32"):
        request = AttributionRequest(
            model=MODEL_ID,
            inputs=[PROMPT],
            generated_texts=[TARGET],
            step_scores=["probability"],
            aggregation={"keep_granular": True, "granular_precision": precision},
        )
        jobs[precision] = attribute(request, loaded, lambda *_: None, result_id="bench")
        sizes[f"kept scores ({precision})"] = len(jobs[precision].archive)
    plain = attribute(
        AttributionRequest(model=MODEL_ID, inputs=[PROMPT], generated_texts=[TARGET]),
        loaded,
        lambda *_: None,
        "b",
    )
    sizes["kept scores (token level only)"] = len(plain.archive)
    job = jobs["float16"]
    sizes["result json"] = len(orjson.dumps(job.result))
    body = AggregateRequest.model_validate({"steps": CHAINS["scores sum + subwords"][1]})

    def reaggregate() -> bytes:
        archive = unpack(job.archive)
        context = ChainContext(METHOD_SPECS["saliency"].default_aggregators)
        sequences = run_chain(archive.unreduced or [], list(body.steps), context)
        return orjson.dumps([to_result_sequence(s) for s in sequences])

    request = AttributionRequest(
        model=MODEL_ID, inputs=[PROMPT], generated_texts=[TARGET], step_scores=["probability"]
    )
    job_s = _median_s(lambda: attribute(request, loaded, lambda *_: None, result_id="bench"), repeats)
    again_s = _median_s(reaggregate, repeats)
    return {"job_s": job_s, "reaggregate_s": again_s, "sizes": sizes, "result": job.result}


def _export_sizes(result: dict[str, Any]) -> dict[str, int]:
    from schemas.exports import ExportFormat
    from service.exports.csv_export import render_csv
    from service.exports.inseq_export import render_inseq
    from service.exports.json_export import render_json

    return {
        f"export {ExportFormat.CSV.value}": sum(len(c) for c in render_csv(result, None, 1 << 16)),
        f"export {ExportFormat.CSV.value} (precision 3)": sum(len(c) for c in render_csv(result, 3, 1 << 16)),
        f"export {ExportFormat.JSON.value} (precision 3)": sum(len(c) for c in render_json(result, 3)),
        f"export {ExportFormat.INSEQ.value}": sum(len(c) for c in render_inseq(result, None, None)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    engine = _engine(args.cache_dir, max(3, args.repeats // 5))  # first: it converts the GGUF weights once
    reference = _reference_output(args.cache_dir)
    rows = _chains(reference, args.repeats)
    print(
        f"\nSmolLM2-135M, saliency, forced {len(reference.target)}-token target, CPU, {args.threads} threads"
    )
    print("\n| chain (same unreduced scores) | Inseq 0.7.1 aggregate | Seqattr chain | speed-up | max diff |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['chain']} | {row['reference_ms']:.2f} ms | {row['seqattr_ms']:.2f} ms | "
            f"{row['speedup']:.1f}x | {row['max_diff']:.1e} |"
        )
    print("\n| another aggregation of a finished job | time |")
    print("| --- | --- |")
    print(f"| run the job again (engine, model loaded) | {engine['job_s'] * 1e3:.0f} ms |")
    again_ms = engine["reaggregate_s"] * 1e3
    print(f"| re-aggregate the kept scores (read archive + chain + JSON) | {again_ms:.1f} ms |")
    print("\n| stored or exported | bytes |")
    print("| --- | --- |")
    for name, size in {**engine["sizes"], **_export_sizes(engine["result"])}.items():
        print(f"| {name} | {size:,} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
