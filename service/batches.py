"""What the batch endpoints do: parse uploads, submit chunk jobs, read, list, cancel, stream results.

A batch is a record in Redis (`schemas.redis_keys.batch_key`) naming its chunk jobs and the item range of
each; its state is computed from those jobs whenever it is read, so nothing has to update it as jobs run.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, cast

import orjson
from pydantic import ValidationError
from redis import Redis

from schemas.batches import (
    Batch,
    BatchCounts,
    BatchItem,
    BatchLinks,
    BatchPage,
    BatchStatus,
    chunk_requests,
)
from schemas.defaults import LIST_MAX_SCAN, MAX_BATCH_ITEMS, QUEUE_FULL_RETRY_AFTER_S
from schemas.errors import (
    BatchFileError,
    JobExpiredError,
    JobFailedError,
    QueueFullError,
    UnknownBatchError,
)
from schemas.exports import CSV_COLUMNS
from schemas.jobs import TERMINAL_STATUSES, Job
from schemas.models import ModelEntry
from schemas.redis_keys import batch_index, batch_key, batch_of_key
from service import job_operations
from service.exports.csv_export import render_csv as render_result_csv
from service.job_store import IndexEntry, JobStore

BATCH_ID_LENGTH = 32
Partial = Literal["prefix", "all"]


def batch_path(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}"


def _redis(store: JobStore) -> Redis:
    return store._redis  # noqa: SLF001 - the job store's connection; batches keep their records beside jobs


# Uploads


def parse_file(data: bytes, filename: str, input_field: str, generated_field: str | None) -> list[BatchItem]:
    """The items of an uploaded JSONL or CSV file (CSV when the name ends in .csv); a bad line is a 422."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchFileError(data[: exc.start].count(b"\n") + 1, "not UTF-8 text") from None
    rows = _csv_rows(text) if filename.lower().endswith(".csv") else _jsonl_rows(text)
    items: list[BatchItem] = []
    for line, row in rows:
        if len(items) == MAX_BATCH_ITEMS:
            raise BatchFileError(line, f"more than {MAX_BATCH_ITEMS} items")
        if input_field not in row:
            raise BatchFileError(line, f"no field {input_field!r}")
        generated = row.get(generated_field) if generated_field else None
        if generated_field and not generated:  # a chunk's targets are forced for all its inputs or none
            raise BatchFileError(line, f"no field {generated_field!r}")
        try:
            items.append(BatchItem(input=row[input_field], generated=generated or None))
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BatchFileError(line, reason) from None
    if not items:
        raise BatchFileError(1, "the file holds no item")
    return items


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BatchFileError(number, f"not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise BatchFileError(number, "not a JSON object")
        yield number, row


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if None in row:  # more cells than the header names
                raise BatchFileError(reader.line_num, "more cells than the header has columns")
            yield reader.line_num, row
    except csv.Error as exc:
        raise BatchFileError(reader.line_num, f"not CSV: {exc}") from None


# Submit


def submit_batch(
    store: JobStore,
    registry: dict[str, ModelEntry],
    template: dict[str, Any],
    items: list[BatchItem],
    chunk_size: int,
    owner: str | None = None,
    max_queued: int | None = None,
    loc: tuple[str, ...] = ("body",),
    callback_url: str | None = None,
) -> Batch:
    """Enqueue the batch's chunks as attribution jobs and record the batch; all chunks or none are queued."""
    chunks = chunk_requests(template, items, chunk_size, loc)
    model = chunks[0][1].model
    if max_queued is not None and model in store.model_ids:
        waiting = store.queue_length(model)
        if waiting + len(chunks) > max_queued:
            raise QueueFullError(model, max_queued, QUEUE_FULL_RETRY_AFTER_S)
    jobs: list[Job] = []
    try:
        for _, request in chunks:
            jobs.append(job_operations.submit_job(store, registry, request, owner=owner)[0])
    except Exception:
        for job in jobs:  # a half-submitted batch would be nobody's: take back what was queued
            job_operations.delete_job(store, job.id, owner)
        raise
    batch_id = uuid.uuid4().hex
    now = time.time()
    full_template = chunks[0][1].model_dump(mode="json", exclude={"inputs", "generated_texts"})
    record = {
        "owner": owner,
        "created_at": now,
        "total": len(items),
        "template": full_template,
        "callback_url": callback_url,
        "chunks": [
            [job.id, start, start + len(request.inputs)]
            for job, (start, request) in zip(jobs, chunks, strict=True)
        ],
    }
    ttl = store.retention.queued_ttl_s + store.retention.job_timeout_s + store.retention.result_ttl_s
    with _redis(store).pipeline() as pipe:
        pipe.set(batch_key(batch_id), orjson.dumps(record), ex=ttl)
        pipe.zadd(batch_index(owner), {batch_id: now})
        for job in jobs:  # the end of a chunk looks up its batch (callbacks)
            pipe.set(batch_of_key(job.id), batch_id, ex=ttl)
        pipe.execute()
    return _batch(batch_id, record, _chunk_jobs(store, record))


# Read


def _load(store: JobStore, batch_id: str, owner: str | None) -> dict[str, Any]:
    raw = _redis(store).get(batch_key(batch_id)) if len(batch_id) == BATCH_ID_LENGTH else None
    record = orjson.loads(raw) if raw else None
    if record is None or record.get("owner") != owner:  # another key's batch is as unknown as none
        raise UnknownBatchError(batch_id)
    return record


def _chunk_jobs(store: JobStore, record: dict[str, Any]) -> list[Job | None]:
    """Each chunk's job record (None once it is gone), abandoned jobs reaped first."""
    ids = [chunk[0] for chunk in record["chunks"]]
    jobs = store.fetch_many(ids)
    origins = {job.origin for job in jobs if job is not None and job.get_status(refresh=False) == "started"}
    if origins:
        for origin in origins:
            store.reap_abandoned(origin)
        jobs = store.fetch_many(ids)
    flags = store.cancel_requested(ids)
    return [
        job_operations.job_record(job, flag) if job is not None else None
        for job, flag in zip(jobs, flags, strict=True)
    ]


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _batch(batch_id: str, record: dict[str, Any], jobs: list[Job | None]) -> Batch:
    counts = dict.fromkeys(("queued", "started", "finished", "failed", "canceled"), 0)
    for (_, start, end), job in zip(record["chunks"], jobs, strict=True):
        counts[job.status if job is not None else "failed"] += end - start
    total = record["total"]
    done = counts["finished"] + counts["failed"] + counts["canceled"]
    present = [job for job in jobs if job is not None]
    started = [job.started_at for job in present if job.started_at is not None]
    ended = [job.ended_at for job in present if job.ended_at is not None]
    started_at = min(started) if started else None
    status: BatchStatus
    if done == total:
        status = "canceled" if record.get("canceled") else "finished"
    elif record.get("canceled"):
        status = "canceled"
    else:
        status = "queued" if counts["queued"] == total else "running"
    ended_at = max(ended) if done == total and ended else None
    throughput = eta = None
    if started_at is not None:
        worked = counts["finished"] + counts["failed"]
        elapsed = ((ended_at or datetime.now(UTC)) - started_at).total_seconds()
        if worked and elapsed > 0:
            throughput = worked / elapsed
            eta = (total - done) / throughput if status in ("queued", "running") else 0.0
    return Batch(
        id=batch_id,
        status=status,
        counts=BatchCounts(**counts),
        done=done,
        total=total,
        chunks=len(jobs),
        created_at=_utc(record["created_at"]),
        started_at=started_at,
        ended_at=ended_at,
        throughput=throughput,
        eta_s=eta,
        links=BatchLinks(self=batch_path(batch_id), results=batch_path(batch_id) + "/results"),
        template=record["template"],
    )


def get_batch(store: JobStore, batch_id: str, owner: str | None = None) -> Batch:
    record = _load(store, batch_id, owner)
    return _batch(batch_id, record, _chunk_jobs(store, record))


def ended_batch_with_callback(store: JobStore, job_id: str) -> tuple[Batch, str] | None:
    """The batch of a chunk job, and its callback URL, when the batch has one and has ended (the API's
    callback sender asks at the end of each chunk)."""
    raw_id = cast("bytes | None", _redis(store).get(batch_of_key(job_id)))
    if raw_id is None:
        return None
    batch_id = raw_id.decode()
    raw = _redis(store).get(batch_key(batch_id))
    record = orjson.loads(raw) if raw else None
    if record is None or not record.get("callback_url"):
        return None
    batch = _batch(batch_id, record, _chunk_jobs(store, record))
    if batch.status not in ("finished", "canceled"):
        return None
    return batch, str(record["callback_url"])


def _index_page(redis: Redis, owner: str | None, after: IndexEntry | None, count: int) -> list[IndexEntry]:
    """Up to `count` entries of `owner`'s batch index, newest first, strictly after `after` (as jobs')."""
    index = batch_index(owner)
    rows: list[tuple[bytes, float]]
    if after is None:
        rows = cast(Any, redis.zrevrange(index, 0, count - 1, withscores=True))
    else:
        ties = redis.zcount(index, after.score, after.score)
        rows = cast(Any, redis.zrevrangebyscore(index, after.score, "-inf", 0, count + ties, withscores=True))
        rows = [(m, s) for m, s in rows if s < after.score or m.decode() < after.job_id][:count]
    return [IndexEntry(member.decode(), score) for member, score in rows]


def list_batches(
    store: JobStore, limit: int, cursor: str | None = None, owner: str | None = None
) -> BatchPage:
    """`owner`'s batches newest first, paginated like `GET /v1/jobs`; expired ones leave the index."""
    after = job_operations.decode_cursor(cursor) if cursor else None
    redis = _redis(store)
    found: list[Batch] = []
    scanned, more = 0, True
    while more and len(found) < limit and scanned < LIST_MAX_SCAN:
        entries = _index_page(redis, owner, after, limit)
        more = len(entries) == limit
        for i, entry in enumerate(entries):
            after, scanned = entry, scanned + 1
            try:
                found.append(get_batch(store, entry.job_id, owner))
            except UnknownBatchError:
                redis.zrem(batch_index(owner), entry.job_id)
            if len(found) == limit:
                more = more or i < len(entries) - 1
                break
    next_cursor = job_operations.encode_cursor(after) if more and after is not None else None
    return BatchPage(batches=found, next_cursor=next_cursor)


# Cancel and delete


def delete_batch(store: JobStore, batch_id: str, owner: str | None = None) -> Batch | None:
    """Cancel the chunks that have not started (returns the batch, now canceled), or delete an ended batch
    with its chunk jobs (returns None)."""
    record = _load(store, batch_id, owner)
    jobs = _chunk_jobs(store, record)
    if all(job is None or job.status in TERMINAL_STATUSES for job in jobs):
        for job in jobs:
            if job is not None:
                job_operations.delete_job(store, job.id, owner)
        with _redis(store).pipeline() as pipe:
            pipe.delete(batch_key(batch_id))
            pipe.zrem(batch_index(owner), batch_id)
            pipe.execute()
        return None
    for job in jobs:
        if job is not None and job.status == "queued":
            try:
                job_operations.delete_job(store, job.id, owner)
            except JobExpiredError:
                continue
    record["canceled"] = True
    _redis(store).set(batch_key(batch_id), orjson.dumps(record), keepttl=True)
    return get_batch(store, batch_id, owner)


# Results


def _item_problem(job: Job | None, job_id: str) -> tuple[str, dict[str, Any]]:
    if job is None:
        return "failed", JobExpiredError(job_id).to_problem(job_operations.job_path(job_id))
    if job.error is not None:
        return job.status, job.error
    return job.status, JobFailedError(job_id, job.status, None).to_problem(job.links.self)


def item_results(
    store: JobStore, batch_id: str, owner: str | None, partial: Partial
) -> Iterator[dict[str, Any]]:
    """Each ended item as `{index, status, result | error}`, in input order; items of unfinished chunks end
    the stream (`prefix`) or are skipped (`all`). The batch is checked before the first item is produced."""
    record = _load(store, batch_id, owner)
    jobs = _chunk_jobs(store, record)
    return _items(store, record, jobs, partial)


def _items(
    store: JobStore, record: dict[str, Any], jobs: list[Job | None], partial: Partial
) -> Iterator[dict[str, Any]]:
    for (job_id, start, end), job in zip(record["chunks"], jobs, strict=True):
        if job is not None and job.status not in TERMINAL_STATUSES:
            if partial == "prefix":
                return
            continue
        raw = store.result_bytes(job_id) if job is not None and job.status == "finished" else None
        if raw is None:
            status, problem = _item_problem(job, job_id)
            for index in range(start, end):
                yield {"index": index, "status": status, "error": problem}
            continue
        result = orjson.loads(raw)
        for k, sequence in enumerate(result["sequences"]):
            yield {"index": start + k, "status": "finished", "result": {**result, "sequences": [sequence]}}


def render_jsonl(items: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for item in items:
        yield orjson.dumps(item) + b"\n"


def render_csv(items: Iterator[dict[str, Any]], chunk_bytes: int) -> Iterator[bytes]:
    """The long CSV of the exports with each item's index as `sequence`; failed items have no rows."""
    header = True
    for item in items:
        if item["status"] != "finished":
            continue
        rendered = b"".join(render_result_csv(item["result"], None, chunk_bytes)).decode()
        rows = csv.reader(io.StringIO(rendered, newline=""))
        head = next(rows)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header:
            writer.writerow(head)
            header = False
        writer.writerows([item["index"], *row[1:]] for row in rows)
        yield buffer.getvalue().encode()
    if header:  # nothing finished yet: the header alone
        yield (",".join(CSV_COLUMNS) + "\n").encode()
