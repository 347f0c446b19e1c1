"""What `seqattr` shows in the terminal besides results (`cli.tables`): consoles, problems, a job's progress
bar and the list of jobs. Results go to stdout; progress and messages to stderr, so stdout stays clean.
"""

from __future__ import annotations

import json
from datetime import datetime
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

_STATUS_STYLES = {
    "queued": "yellow",
    "started": "cyan",
    "finished": "green",
    "failed": "bold red",
    "canceled": "magenta",
}


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    # Messages are not wrapped by rich: an error stays one line however narrow the terminal is.
    return Console(stderr=True, highlight=False, soft_wrap=True)


def cut(text: str, width: int) -> str:
    """`text` cut to `width` characters, with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(value: Any) -> str:
    """An extension member in one line: a list of ids as `a, b, c`, other values as JSON."""
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return cut(", ".join(map(str, value)), 300)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return cut(text, 300)


def print_problem(console: Console, problem: dict[str, Any], heading: str = "error") -> None:
    """A problem's status, title and detail, then each validation error and other extension member."""
    status = problem.get("status")
    console.print(
        Text.assemble(
            (f"{heading}: ", "bold red"),
            (f"{status} " if status else "", "bold"),
            (str(problem.get("title") or "Error"), "bold"),
            f": {problem.get('detail')}" if problem.get("detail") else "",
        )
    )
    for error in problem.get("errors") or ():
        where = " ".join(str(part) for part in error.get("loc", ()) if part != "body")
        console.print(Text.assemble("  ", (where or "request", "cyan"), f": {error.get('msg')}"))
    skip = {"type", "title", "status", "detail", "instance", "errors"}
    for name, value in problem.items():
        if name not in skip and value not in (None, [], {}):
            console.print(Text.assemble("  ", (name.replace("_", " "), "cyan"), f": {_short(value)}"))


class JobProgress:
    """A progress bar on stderr fed with the job as it is polled (or with counts, for a local run)."""

    def __init__(self, console: Console, label: str) -> None:
        self.label = label
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(label, total=None)

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def counts(self, done: int, total: int, status: str = "running") -> None:
        self.progress.update(
            self.task, completed=done, total=total or None, description=f"{self.label} {status}"
        )

    def job(self, job: dict[str, Any]) -> None:
        status = job["status"]
        if status == "queued" and job.get("position") is not None:
            status = f"queued (position {job['position'] + 1})"
        progress = job.get("progress") or {}
        self.counts(progress.get("done", 0), progress.get("total", 0), status)


_JOB_COLUMNS = ("id", "status", "model", "method", "steps", "created (UTC)", "took", "input")
_JOB_COLUMNS_KEPT = ("id", "status", "steps", "model", "method", "created (UTC)", "took", "input")
"""The jobs table's columns, and the order in which they are kept when the terminal is narrow."""


def jobs_table(page: dict[str, Any], width: int) -> Table:
    """Recent jobs, newest first: id, status, model, method, progress, when, how long and the first input.
    Columns that do not fit in `width` are left out, least useful first; none is cut, but the input."""
    jobs = page["jobs"]
    rows = [_job_row(job) for job in jobs]
    widths = [max([len(name), *(len(row[k]) for row in rows)]) for k, name in enumerate(_JOB_COLUMNS)]
    shown: set[str] = set()
    used = 1
    for name in _JOB_COLUMNS_KEPT:
        need = widths[_JOB_COLUMNS.index(name)] + 3
        if name == "input":
            need = min(need, 13)  # the input may be cut, down to 10 characters
        if used + need <= width or name == "id":
            shown.add(name)
            used += need
    table = Table(box=box.SIMPLE_HEAD)
    keep = [k for k, name in enumerate(_JOB_COLUMNS) if name in shown]
    for k in keep:
        name = _JOB_COLUMNS[k]
        table.add_column(name, no_wrap=True, overflow="ellipsis" if name == "input" else "fold")
    for job, row in zip(jobs, rows, strict=True):
        cells: list[str | Text] = [row[k] for k in keep]
        if "status" in shown:
            cells[1] = Text(row[1], style=_STATUS_STYLES.get(job["status"], ""))
        table.add_row(*cells)
    return table


def _job_row(job: dict[str, Any]) -> list[str]:
    request = job.get("request") or {}
    progress = job.get("progress") or {}
    inputs = request.get("inputs") or [""]
    more = f" (+{len(inputs) - 1} more)" if len(inputs) > 1 else ""
    return [
        job["id"],
        job["status"],
        str(request.get("model", "")),
        str(request.get("method", "")),
        f"{progress.get('done', 0)}/{progress.get('total', 0)}",
        _when(job.get("created_at")),
        _took(job.get("created_at"), job.get("ended_at")),
        cut(repr(inputs[0]), 60) + more,
    ]


def _when(stamp: str | None) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM:SS` (UTC, as the API gives it)."""
    return "" if not stamp else stamp.replace("T", " ")[:19]


def _took(start: str | None, end: str | None) -> str:
    """Seconds from creation to the end, for ended jobs."""
    if not start or not end:
        return ""
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{seconds:.1f} s"
