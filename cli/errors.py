"""The `seqattr` command's errors: each is printed once, readably, and ends the command with its exit code.

Problems keep the RFC 9457 shape the API answers with (`schemas.problems`), whether they come from the
service or from the same checks made here (`schemas.errors.SeqattrError.to_problem()`).
"""

from __future__ import annotations

from typing import Any

EXIT_PROBLEM = 1
"""A problem answer other than a 422 (unknown model, 401, 404, 409...)."""

EXIT_USAGE = 2
"""Bad options or configuration (click's own code for usage errors)."""

EXIT_UNREACHABLE = 3
"""The API could not be reached, or did not answer in time."""

EXIT_INVALID = 4
"""The request is invalid (422), found locally or by the service."""

EXIT_JOB_FAILED = 5
"""The job ended failed or canceled."""

EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT), the shell's convention."""


class CommandError(Exception):
    """An error that ends a command with `exit_code` once it is printed."""

    exit_code = EXIT_PROBLEM


class ConfigurationError(CommandError):
    """Invalid settings in the environment (`SEQATTR_*`)."""

    exit_code = EXIT_USAGE


class ServiceUnreachable(CommandError):
    exit_code = EXIT_UNREACHABLE


class ProblemResponse(CommandError):
    """An RFC 9457 problem: from the API, or built locally in the same shape (`schemas.errors`)."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(f"{problem.get('title')}: {problem.get('detail')}")
        self.problem = problem
        self.exit_code = EXIT_INVALID if problem.get("status") == 422 else EXIT_PROBLEM


class JobFailed(CommandError):
    """A job ended without a result: failed (its `error` problem) or canceled; also a `--local` run that
    failed as its job would have."""

    exit_code = EXIT_JOB_FAILED

    def __init__(self, problem: dict[str, Any], job_id: str | None = None, status: str = "failed") -> None:
        super().__init__(f"job {job_id or '(local)'} {status}")
        self.problem, self.job_id, self.status = problem, job_id, status

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobFailed:
        problem = job.get("error") or {
            "title": f"Job {job['status']}",
            "detail": f"the job was {job['status']}",
        }
        return cls(problem, job["id"], job["status"])


class Interrupted(CommandError):
    """Ctrl-C: the command stops waiting (a submitted job keeps running)."""

    exit_code = EXIT_INTERRUPTED
