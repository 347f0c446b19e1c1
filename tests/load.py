"""`make load` (`python -m tests.load`): the whole service under load, on loopback only, bounded in count and
time.

Starts an embedded Redis, `--workers` worker processes serving a tiny model, and the API under uvicorn with
`--api-workers` processes, then:
1. **Submit throughput (API alone)**: `--clients` concurrent clients send `--enqueue` submits of jobs for a
   model no worker serves (so they only queue): requests/s and latency percentiles.
2. **Jobs end to end**: the clients submit `--jobs` trivial jobs (saliency, tiny model, 1 new token) and
   long-poll each until it ends; every job must end `finished` with a well-formed result, none lost or
   duplicated. Reports submit and completion latencies, and the overhead of queue + worker + storage: the
   time from submit to the long poll's answer minus the engine's own time.
Exits 1 when a job is lost, duplicated, failed or malformed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from cli.processes import free_port, spawn, stop
from cli.redis_server import EmbeddedRedis
from tests.tiny_models import build_tiny_models, write_registry

ROOT = Path(__file__).resolve().parents[1]
SERVED, QUEUED_ONLY = "tiny-gpt2", "tiny-llama"
TEXT = "The quick brown fox jumps over the lazy dog."


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000}


def _run_clients(
    clients: int, count: int, base_url: str, task: Callable[[httpx.Client, int], Any]
) -> list[Any]:
    """`count` calls of `task(client, i)` spread over `clients` threads, each with its own connection."""
    local = threading.local()

    def call(i: int) -> Any:
        if not hasattr(local, "client"):
            # TCP_NODELAY, as curl and most HTTP clients set it: without it, Nagle's algorithm holds a POST's
            # body until the server's delayed ACK of its headers, 40 ms later, and that is all one measures.
            transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            local.client = httpx.Client(base_url=base_url, timeout=120, transport=transport)
        return task(local.client, i)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(call, range(count)))


def _wait_ready(url: str, workers: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(url + "/readyz", timeout=2)
            if ready.status_code == 200 and ready.json()["workers"] >= workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service was not ready with {workers} workers within {timeout_s:.0f} s")


def submit_throughput(url: str, clients: int, count: int) -> dict[str, Any]:
    body = {"model": QUEUED_ONLY, "inputs": [TEXT], "generation_args": {"max_new_tokens": 1}}

    def submit(client: httpx.Client, _i: int) -> tuple[int, float]:
        started = time.perf_counter()
        status = client.post("/v1/attributions", json=body).status_code
        return status, time.perf_counter() - started

    started = time.perf_counter()
    results = _run_clients(clients, count, url, submit)
    wall = time.perf_counter() - started
    statuses = [s for s, _ in results]
    return {
        "requests": count,
        "accepted": statuses.count(202),
        "requests_per_s": count / wall,
        **_percentiles([t for _, t in results]),
    }


WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "%s", "inputs": ["%s"], "generation_args": {"max_new_tokens": 1}}'
"""


def submit_throughput_wrk(url: str, clients: int, seconds: int) -> dict[str, Any] | None:
    """The API-alone phase driven by `wrk` (a C load generator, when installed): it measures the service
    rather than a Python client competing for the same cores. None without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % (QUEUED_ONLY, TEXT))
        script.flush()
        out = subprocess.run(
            [
                wrk,
                "-t2",
                f"-c{clients}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                script.name,
                url + "/v1/attributions",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    quantiles: dict[str, float] = {}
    for q, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)$", out, flags=re.MULTILINE):
        quantiles[q] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests_per_s": float(rate.group(1)) if rate else 0.0,
        "p50_ms": quantiles.get("50", 0.0),
        "p90_ms": quantiles.get("90", 0.0),
        "p99_ms": quantiles.get("99", 0.0),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def jobs_end_to_end(url: str, clients: int, count: int) -> dict[str, Any]:
    body = {
        "model": SERVED,
        "inputs": [TEXT],
        "generation_args": {"max_new_tokens": 1},
        "step_scores": ["probability"],
    }

    def run(client: httpx.Client, i: int) -> dict[str, Any]:
        started = time.perf_counter()
        response = client.post("/v1/attributions", json={**body, "seed": i})
        submitted = time.perf_counter()
        if response.status_code != 202:
            return {"error": f"submit {response.status_code}: {response.text[:200]}"}
        job_id = response.json()["id"]
        job = response.json()
        while job["status"] not in ("finished", "failed", "canceled"):
            job = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
        ended = time.perf_counter()
        if job["status"] != "finished":
            return {"id": job_id, "error": f"job {job['status']}: {job.get('error')}"}
        result = client.get(f"/v1/jobs/{job_id}/result").json()
        [seq] = result["sequences"]
        well_formed = (
            result["id"] == job_id
            and seq["attr_pos_end"] - seq["attr_pos_start"] == 1
            and len(seq["step_scores"]["probability"]) == 1
            and abs(sum(c for row in seq["target_attributions"] for c in row if c is not None) - 1) < 1e-4
        )
        return {
            "id": job_id,
            "submit_s": submitted - started,
            "complete_s": ended - started,
            "overhead_s": ended - started - result["info"]["exec_time_s"],
            "error": None if well_formed else "malformed result",
        }

    started = time.perf_counter()
    results = _run_clients(clients, count, url, run)
    wall = time.perf_counter() - started
    errors = [r["error"] for r in results if r.get("error")]
    ids = [r["id"] for r in results if "id" in r]
    done = [r for r in results if not r.get("error")]
    return {
        "jobs": count,
        "finished_ok": len(done),
        "lost_or_failed": count - len(done),
        "duplicated_ids": len(ids) - len(set(ids)),
        "errors": errors[:5],
        "jobs_per_s": count / wall,
        "submit": _percentiles([r["submit_s"] for r in done]) if done else {},
        "complete": _percentiles([r["complete_s"] for r in done]) if done else {},
        "overhead": _percentiles([r["overhead_s"] for r in done]) if done else {},
        "overhead_mean_ms": statistics.mean(r["overhead_s"] for r in done) * 1000 if done else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--enqueue", type=int, default=2000, help="submits of the API-alone phase")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--api-workers", type=int, default=2, help="API processes (seqattr api --workers)")
    parser.add_argument("--single", type=int, default=50, help="jobs of the one-client overhead phase")
    parser.add_argument(
        "--wrk-seconds",
        type=int,
        default=10,
        help="also drive the API-alone phase with wrk, if installed (0: no)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="seqattr-load-") as tmp:
        root = Path(tmp)
        registry = write_registry(root, build_tiny_models(root / "models", (SERVED, QUEUED_ONLY)))
        with EmbeddedRedis(root / "redis", free_port(), quiet=True) as redis:
            port = free_port()
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("SEQATTR_")},
                "REDIS_URL": redis.url,
                "SEQATTR_MODELS": str(registry),
                "SEQATTR_DATA_DIR": str(root / "data"),
                "SEQATTR_RATE_LIMIT": "off",
                "SEQATTR_MAX_QUEUED_JOBS": "10000000",
                "SEQATTR_LOG_LEVEL": "WARNING",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONPATH": str(ROOT),
            }
            worker_env = {
                **env,
                "SEQATTR_WORKER_MODELS": SERVED,
                "SEQATTR_TORCH_THREADS": "1",
                "SEQATTR_PRELOAD": "1",
            }
            workers = [spawn([sys.executable, "-m", "workers"], worker_env) for _ in range(args.workers)]
            api = spawn(
                [sys.executable, "-m", "cli", "api", "--port", str(port), "--workers", str(args.api_workers),
                 "--log-level", "warning", "--no-access-log"],
                env,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_ready(url, args.workers)
                enqueue = submit_throughput(url, args.clients, args.enqueue)
                with_wrk = (
                    submit_throughput_wrk(url, args.clients, args.wrk_seconds) if args.wrk_seconds else None
                )
                end_to_end = jobs_end_to_end(url, args.clients, args.jobs)
                # One client, one job at a time: the service's own overhead, without queueing behind others.
                single = jobs_end_to_end(url, 1, args.single)
            finally:
                stop(api, "API")
                for worker in workers:
                    stop(worker, "worker")
    _report(args, enqueue, end_to_end)
    if with_wrk is not None:
        w = with_wrk
        print(
            f"\nsubmit (API alone, queued) driven by wrk, {args.wrk_seconds} s, {args.clients} connections: "
            f"{w['requests_per_s']:.0f} req/s, p50 {w['p50_ms']:.1f} ms, p90 {w['p90_ms']:.1f} ms, "
            f"p99 {w['p99_ms']:.1f} ms, {w['non_2xx']} answers other than 2xx"
        )
    print("\nOne client, one job at a time:")
    _report_jobs(single)
    ok = all(run["lost_or_failed"] == 0 and run["duplicated_ids"] == 0 for run in (end_to_end, single))
    return 0 if ok else 1


def _report(args: argparse.Namespace, enqueue: dict[str, Any], e2e: dict[str, Any]) -> None:
    setup = f"{args.clients} clients, {args.workers} workers, {args.api_workers} API processes"
    print(f"{setup}, {os.cpu_count()} cores")
    print("\n| phase | count | rate | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|")
    print(
        f"| submit (API alone, queued) | {enqueue['requests']} ({enqueue['accepted']} accepted) | "
        f"{enqueue['requests_per_s']:.0f} req/s | {enqueue['p50_ms']:.1f} | {enqueue['p90_ms']:.1f} | "
        f"{enqueue['p99_ms']:.1f} | {enqueue['max_ms']:.1f} |"
    )
    _report_jobs(e2e)


def _report_jobs(e2e: dict[str, Any]) -> None:
    print("\n| phase | count | rate | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|")
    for name, key in (("submit", "submit"), ("submit → ended", "complete"), ("overhead", "overhead")):
        p = e2e[key]
        if p:
            print(
                f"| {name} | {e2e['jobs']} | {e2e['jobs_per_s']:.1f} jobs/s | {p['p50_ms']:.1f} | "
                f"{p['p90_ms']:.1f} | {p['p99_ms']:.1f} | {p['max_ms']:.1f} |"
            )
    print(
        f"jobs: {e2e['finished_ok']} finished with a well-formed result, {e2e['lost_or_failed']} lost or "
        f"failed, {e2e['duplicated_ids']} duplicated ids"
    )
    for error in e2e["errors"]:
        print(f"  error: {error}")


if __name__ == "__main__":
    sys.exit(main())
