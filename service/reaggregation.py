"""`POST /v1/jobs/{id}/aggregate`: a finished job's kept scores aggregated another way, in the API process.

No worker and no model are involved: the chain runs on the archive the worker stored beside the result
(`schemas.scores.archive`) with the same code the worker ran. A chain that starts with `scores` needs the
unreduced scores; when the job did not keep them, a 409 names the request field that would have.
"""

from __future__ import annotations

from typing import Any

from schemas.aggregation import AggregateRequest, ScoresStep
from schemas.errors import JobExpiredError, ScoresNotKeptError
from schemas.jobs import Job
from schemas.methods import METHOD_SPECS
from schemas.scores.archive import ScoreArchive, unpack
from schemas.scores.sequence import SequenceScores, to_result_sequence
from schemas.scores.steps import ChainContext, run_chain
from service.job_operations import finished_job
from service.job_store import JobStore

KEEP_FIELD = "aggregation.keep_granular"
"""The request field that keeps the unreduced scores."""


def _archive(store: JobStore, job_id: str, owner: str | None) -> tuple[Job, ScoreArchive]:
    job = finished_job(store, job_id, owner)
    data = store.scores_bytes(job_id)
    if data is None:
        raise JobExpiredError(job_id)
    return job, unpack(data)


def _starting_scores(archive: ScoreArchive, job_id: str, unreduced: bool) -> list[SequenceScores]:
    if not unreduced:
        return archive.base
    if archive.unreduced is not None:
        return archive.unreduced
    why = {
        "not_requested": "it did not keep its unreduced scores",
        "over_budget": "its unreduced scores were larger than the worker's SEQATTR_MAX_GRANULAR_BYTES",
    }[archive.raw_status]
    raise ScoresNotKeptError(
        f"a chain that starts with a scores step needs job {job_id!r}'s unreduced scores, but {why}: send "
        f"the request again with {KEEP_FIELD}: true, or start the chain with a token-level step",
        keep_with=KEEP_FIELD,
    )


def aggregate_job(
    store: JobStore, job_id: str, body: AggregateRequest, owner: str | None
) -> tuple[Job, dict[str, Any]]:
    """The job, and its result with `body.steps` applied to its kept scores (see `AggregateRequest`)."""
    job, archive = _archive(store, job_id, owner)
    unreduced = isinstance(body.steps[0], ScoresStep)

    def paired(other_id: str) -> list[SequenceScores]:
        return _starting_scores(_archive(store, other_id, owner)[1], other_id, unreduced)

    header = archive.header
    context = ChainContext(METHOD_SPECS[header["method"]].default_aggregators, paired)
    sequences = run_chain(_starting_scores(archive, job_id, unreduced), list(body.steps), context)
    info = header["info"]
    return job, {
        **header,
        "sequences": [to_result_sequence(seq) for seq in sequences],
        "info": {
            **info,
            "aggregation": {
                **info["aggregation"],
                "reaggregated": {
                    "from": "unreduced" if unreduced else "base",
                    "steps": body.model_dump()["steps"],
                },
            },
            "warnings": list(dict.fromkeys([*info["warnings"], *context.warnings])),
        },
    }
