"""Batches over several workers: `python -m tests.bench.batches [--items 200] [--max-new-tokens 5]`.

On the default model (SmolLM2-135M) with workers of one torch thread each, on one embedded Redis and one API:
1. the same batch finishes with 1 worker, then with 2 (the issue asks for at most 0.6x the time);
2. with 2 workers, one is killed (SIGKILL) mid-batch: every item must still end finished or failed, visibly;
3. an item's result equals the same request sent alone.
Prints a markdown table. Runs for a few minutes; the machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from redis import Redis

from cli.processes import free_port, stop
from cli.redis_server import EmbeddedRedis
from tests.service.stack import REPO, start_api, wait_until

PROMPTS = [
    "George was sick yesterday. His colleagues asked him to come",
    "The weather was nice, so the children went outside to",
    "She opened the old book and found a letter from",
    "After the long meeting, the team decided to",
    "The train was late again, and the passengers started to",
]


def _env(redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQATTR_")}
    env.update(
        REDIS_URL=redis_url,
        SEQATTR_DATA_DIR=str(data_dir),
        PYTHONPATH=str(REPO),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        **extra,
    )
    return env


class Workers:
    """Worker subprocesses of one torch thread each, registered before `start` returns."""

    def __init__(self, env: dict[str, str], redis: Redis) -> None:
        self.env, self.redis = env, redis
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, n: int) -> None:
        for _ in range(n):
            name = f"bench-worker-{len(self.processes)}"
            env = {
                **self.env,
                "SEQATTR_WORKER_NAME": name,
                "SEQATTR_TORCH_THREADS": "1",
                "SEQATTR_PRELOAD": "1",
            }
            self.processes.append(subprocess.Popen([sys.executable, "-m", "workers"], cwd=REPO, env=env))
            key = f"rq:worker:{name}"
            wait_until(lambda key=key: self.redis.sismember("rq:workers", key), 300, f"worker {name}")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                stop(process, "worker")
        self.processes = []


def _items(n: int) -> list[dict[str, Any]]:
    return [{"input": f"{PROMPTS[i % len(PROMPTS)]} (case {i})", "generated": None} for i in range(n)]


def _run_batch(client: httpx.Client, items: list[dict[str, Any]], max_new_tokens: int) -> tuple[str, float]:
    body = {"items": items, "generation_args": {"max_new_tokens": max_new_tokens}}
    started = time.monotonic()
    response = client.post("/v1/batches", json=body)
    response.raise_for_status()
    batch_id = response.json()["id"]
    return batch_id, started


def _wait(client: httpx.Client, batch_id: str, timeout_s: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in ("finished", "canceled"):
            return batch
        time.sleep(0.5)
    raise TimeoutError(f"batch {batch_id} did not end in {timeout_s} s")


def _results(client: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    text = client.get(f"/v1/batches/{batch_id}/results", params={"partial": "all"}).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp), free_port(), quiet=True) as server:
        redis = Redis.from_url(server.url)
        env = _env(server.url, args.data_dir, SEQATTR_HEARTBEAT_S="1", SEQATTR_RATE_LIMIT="off")
        api, url = start_api(env)
        workers = Workers(env, redis)
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                items = _items(args.items)
                times = {}
                for n in (1, 2):
                    workers.start(n - len(workers.processes))
                    batch_id, started = _run_batch(client, items, args.max_new_tokens)
                    batch = _wait(client, batch_id)
                    times[n] = time.monotonic() - started
                    assert batch["counts"]["finished"] == args.items, batch
                    rows.append((f"{args.items} items, {n} worker(s)", f"{times[n]:.1f} s"))
                rows.append(("2 workers / 1 worker", f"{times[2] / times[1]:.2f}x (the issue asks <= 0.6x)"))

                # An item equals the same request sent alone.
                results = _results(client, batch_id)
                alone = client.post(
                    "/v1/attributions",
                    json={
                        "inputs": [items[7]["input"]],
                        "generation_args": {"max_new_tokens": args.max_new_tokens},
                    },
                ).json()
                job = client.get(f"/v1/jobs/{alone['id']}", params={"wait": 120}).json()
                single = client.get(f"/v1/jobs/{job['id']}/result").json()["sequences"][0]
                item = results[7]["result"]["sequences"][0]
                a = np.array(single["target_attributions"], dtype=float)
                b = np.array(item["target_attributions"], dtype=float)
                diff = float(np.nanmax(np.abs(a - b)))
                rows.append(("item 7 vs the same request alone", f"max abs diff {diff:.1e}"))

                # Kill a worker mid-batch: nothing is lost.
                batch_id, started = _run_batch(client, items, args.max_new_tokens)
                wait_until(
                    lambda: client.get(f"/v1/batches/{batch_id}").json()["done"] >= args.items // 4,
                    600,
                    "a quarter of the batch",
                    0.2,
                )
                workers.processes[-1].kill()
                workers.processes[-1].wait()
                batch = _wait(client, batch_id)
                results = _results(client, batch_id)
                ended = {r["status"] for r in results}
                rows.append(
                    (
                        "2 workers, one killed after a quarter",
                        f"{len(results)}/{args.items} items ended ({', '.join(sorted(ended))}), "
                        f"{time.monotonic() - started:.1f} s",
                    )
                )
                assert len(results) == args.items and ended <= {"finished", "failed"}, (len(results), ended)
        finally:
            workers.stop_all()
            stop(api, "API")
            redis.close()
    print("\n| measurement | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
