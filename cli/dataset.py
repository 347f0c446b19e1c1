"""`seqattr attribute-dataset`: every item of a JSONL or CSV file attributed as a batch on a running service
(a progress bar over items, results written when it ends), or in this process with `--local`, chunk by chunk
as the service's workers run them, with the same output lines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli import render
from cli.dataset_client import BatchClient
from cli.errors import Interrupted, JobFailed, ProblemResponse
from cli.request import AttributeOptions, validated
from schemas.batches import chunk_requests, default_chunk_size
from schemas.defaults import EXPORT_CHUNK_BYTES, PROGRESS_MIN_INTERVAL_S
from schemas.errors import SeqattrError, UnknownModelError

_OUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
"""The results' format, from `--out`'s extension."""


def out_format(path: Path) -> str:
    """`jsonl` or `csv`, from the file's extension.

    Raises:
        ValueError: another extension.
    """
    fmt = _OUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format of {str(path)!r}: name it .jsonl or .csv")
    return fmt


@dataclass(frozen=True)
class DatasetJob:
    """What to attribute: the file, its fields, the request template and where the results go."""

    file: Path
    input_field: str
    generated_field: str | None
    options: AttributeOptions  # the template; its `inputs` are a placeholder, the items replace them
    out: Path
    chunk_size: int | None = None

    def template(self) -> dict[str, Any]:
        """The template fields of `POST /v1/batches`, checked here with the service's rules.

        Raises:
            ProblemResponse: an invalid template (422, named after the options).
        """
        try:
            validated(self.options)
        except SeqattrError as exc:
            raise ProblemResponse(exc.to_problem()) from None
        return {k: v for k, v in self.options.body().items() if k != "inputs"}


class ItemProgress:
    """A progress bar over items on stderr, with the throughput and time left the service reports."""

    def __init__(self, console: Console, label: str) -> None:
        self.label = label
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items {task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task(label, total=None, rate="")

    def __enter__(self) -> ItemProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def update(self, done: int, total: int, status: str, rate: str = "") -> None:
        self.progress.update(
            self.task, completed=done, total=total, description=f"{self.label} {status}", rate=rate
        )

    def batch(self, batch: dict[str, Any]) -> None:
        rate = ""
        if batch.get("throughput"):
            rate = f"{batch['throughput']:.2f}/s"
            if batch.get("eta_s") is not None and batch["status"] != "finished":
                rate += f", ~{batch['eta_s']:.0f} s left"
        self.update(batch["done"], batch["total"], batch["status"], rate)


def _failed_items(counts: dict[str, int]) -> int:
    return counts.get("failed", 0) + counts.get("canceled", 0)


def run_remote(job: DatasetJob, url: str, api_key: str | None) -> None:
    """Upload the file as a batch, follow it until it ends, then write its results to `job.out`.

    Raises:
        JobFailed: some items failed or were canceled (their lines carry the problem; the file is written).
    """
    fmt = out_format(job.out)
    template = job.template()
    err = render.stderr()
    batch: dict[str, Any] | None = None
    with BatchClient(url, api_key) as client:
        try:
            batch = client.upload(job.file, job.input_field, job.generated_field, template, job.chunk_size)
            err.print(f"batch [bold]{batch['id']}[/] submitted to {client.url}: {batch['total']} items")
            with ItemProgress(err, f"batch {batch['id'][:8]}") as progress:
                while True:
                    progress.batch(batch)
                    if batch["status"] in ("finished", "canceled"):
                        break
                    time.sleep(PROGRESS_MIN_INTERVAL_S)
                    batch = client.batch(batch["id"])
            client.save_results(batch["id"], fmt, job.out)
        except KeyboardInterrupt:
            if batch is None:
                raise Interrupted("interrupted before the batch was submitted") from None
            raise Interrupted(
                f"interrupted; batch {batch['id']} keeps running (GET /v1/batches/{batch['id']})"
            ) from None
    err.print(f"saved the results ({fmt}) of {batch['total']} items to {job.out}")
    failed = _failed_items(batch["counts"])
    if failed:
        raise JobFailed(
            {"title": "Items failed", "detail": f"{failed} of {batch['total']} items have no result"},
            batch["id"],
            "ended with failed items",
        )


def run_local(job: DatasetJob) -> None:
    """Attribute the file's items in this process, one engine run per chunk, and write the same lines the
    service's `GET /v1/batches/{id}/results` gives.

    Raises:
        JobFailed: some items failed (the file is written, their lines carry the problem).
    """
    from cli.local import LocalEngine  # torch and the engine: only for --local
    from service.batches import parse_file

    fmt = out_format(job.out)
    template = job.template()
    try:
        items = parse_file(job.file.read_bytes(), job.file.name, job.input_field, job.generated_field)
        chunks = chunk_requests(template, items, job.chunk_size or default_chunk_size(template))
    except SeqattrError as exc:  # a bad line: the 422 the service answers
        raise ProblemResponse(exc.to_problem()) from None
    err = render.stderr()
    engine = LocalEngine()
    lines: list[dict[str, Any]] = []
    try:
        with err.status(f"loading {chunks[0][1].model}"):
            loaded = engine.load(chunks[0][1].model)
        with ItemProgress(err, f"{chunks[0][1].model} (local)") as progress:
            progress.update(0, len(items), "running")
            for start, request in chunks:
                lines.extend(_chunk_lines(engine, loaded, start, request))
                progress.update(len(lines), len(items), "running")
            progress.update(len(lines), len(items), "finished")
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    except UnknownModelError as exc:  # what the API answers at submit time (404)
        raise ProblemResponse(exc.to_problem()) from None
    except SeqattrError as exc:  # the model cannot be loaded: every chunk job would fail
        raise JobFailed(exc.to_problem()) from None
    _write(job.out, _rendered(iter(lines), fmt))
    err.print(f"saved the results ({fmt}) of {len(items)} items to {job.out}")
    failed = sum(line["status"] != "finished" for line in lines)
    if failed:
        raise JobFailed({"title": "Items failed", "detail": f"{failed} of {len(items)} items have no result"})


def _chunk_lines(engine: Any, loaded: Any, start: int, request: Any) -> list[dict[str, Any]]:
    """A chunk's item lines: each sequence of its result, or the chunk's problem for each of its items."""
    from cli.local import as_dict

    try:
        result = as_dict(engine.attribute(request, loaded, lambda *_: None))
    except SeqattrError as exc:  # what the chunk job would have failed with
        problem = exc.to_problem()
        return [
            {"index": start + k, "status": "failed", "error": problem} for k in range(len(request.inputs))
        ]
    return [
        {"index": start + k, "status": "finished", "result": {**result, "sequences": [sequence]}}
        for k, sequence in enumerate(result["sequences"])
    ]


def _rendered(lines: Iterator[dict[str, Any]], fmt: str) -> bytes:
    from service.batches import render_csv, render_jsonl  # the service's own renderers: the same lines

    if fmt == "csv":
        return b"".join(render_csv(lines, EXPORT_CHUNK_BYTES))
    return b"".join(render_jsonl(lines))


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)
