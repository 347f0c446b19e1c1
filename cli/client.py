"""The `seqattr` command's HTTP client for a running Seqattr API: submit, wait, fetch results and views.

Every failure becomes one of the command's errors (`cli.errors`): a transport error is `ServiceUnreachable`,
a problem+json answer `ProblemResponse`, and a job that ended without a result `JobFailed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx

from cli.errors import ConfigurationError, JobFailed, ProblemResponse, ServiceUnreachable
from schemas.defaults import CLI_HTTP_TIMEOUT_S, PROGRESS_MIN_INTERVAL_S
from schemas.exports import ExportFormat
from schemas.jobs import TERMINAL_STATUSES

ProgressCallback = Callable[[dict[str, Any]], None]
"""Called with the job each time it is read while waiting."""


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    """The response's problem body, or one made from its status when the body is not a problem."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "status" in body and "title" in body:
        return body
    try:
        title = HTTPStatus(response.status_code).phrase
    except ValueError:
        title = "Error"
    detail = body.get("detail") if isinstance(body, dict) else None
    return {"status": response.status_code, "title": title, "detail": detail or response.text[:500]}


def _checked_url(url: str) -> str:
    """The base URL without its trailing slash.

    Raises:
        ConfigurationError: not an http(s) URL with a host.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"invalid API URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            f"invalid API URL {url!r}: give http(s)://HOST[:PORT], e.g. http://127.0.0.1:8000"
        )
    return url.rstrip("/")


class ApiClient:
    """A thin client over httpx for the routes the command uses; use it as a context manager.

    Args:
        url: the API's base URL, e.g. http://127.0.0.1:8000.
        api_key: sent as `Authorization: Bearer <key>` when given.
        timeout_s: connect/read timeout of each request.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = CLI_HTTP_TIMEOUT_S) -> None:
        self.url = _checked_url(url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnreachable(self._unreachable(exc)) from None
        if response.status_code >= 400:
            raise ProblemResponse(_problem_of(response))
        return response

    def _unreachable(self, exc: httpx.TransportError) -> str:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return f"the Seqattr API at {self.url} did not answer in time ({reason})"
        return (
            f"cannot reach the Seqattr API at {self.url} ({reason}); start it with `seqattr serve`, "
            "or point --url / SEQATTR_URL at a running one"
        )

    def submit(
        self, body: dict[str, Any], idempotency_key: str | None = None, path: str = "/v1/attributions"
    ) -> dict[str, Any]:
        """POST a job (to /v1/attributions, or `path`: /v1/attribute-context); returns the queued job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", path, json=body, headers=headers).json()

    def job(self, job_id: str, wait_s: float = 0) -> dict[str, Any]:
        """GET /v1/jobs/{id}, long-polling up to `wait_s` for a terminal status."""
        params = {"wait": wait_s} if wait_s > 0 else {}
        return self._request("GET", f"/v1/jobs/{job_id}", params=params).json()

    def wait(
        self, job_id: str, on_update: ProgressCallback, poll_s: float = PROGRESS_MIN_INTERVAL_S
    ) -> dict[str, Any]:
        """Read the job until it ends, calling `on_update` each time; returns the finished job.

        Each read long-polls for `poll_s`: it returns at once when the job ends, and otherwise at about the
        rate the worker writes its progress. Raises JobFailed when the job failed or was canceled.
        """
        while True:
            started = time.monotonic()
            job = self.job(job_id, wait_s=poll_s)
            on_update(job)
            if job["status"] in TERMINAL_STATUSES:
                break
            # A server whose long polls are capped low answers at once: never spin faster than `poll_s`.
            time.sleep(max(0.0, poll_s - (time.monotonic() - started)))
        if job["status"] != "finished":
            raise JobFailed.of(job)
        return job

    def result(self, job_id: str, fmt: ExportFormat = ExportFormat.JSON) -> bytes:
        """GET /v1/jobs/{id}/result?format=...: the whole export in memory."""
        return self._request("GET", f"/v1/jobs/{job_id}/result", params={"format": fmt.value}).content

    def save_result(self, job_id: str, fmt: ExportFormat, path: Path) -> None:
        """Stream an export of the result to `path` (written only once the whole export arrived)."""
        self._download(f"/v1/jobs/{job_id}/result", path, {"format": fmt.value})

    def save_view(self, job_id: str, path: Path) -> None:
        """GET /v1/jobs/{id}/view (a self-contained HTML page) into `path`."""
        self._download(f"/v1/jobs/{job_id}/view", path)

    def _download(self, route: str, path: Path, params: dict[str, str] | None = None) -> None:
        partial = path.with_name(path.name + ".part")
        try:
            with self._http.stream("GET", route, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ProblemResponse(_problem_of(response))
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise ServiceUnreachable(self._unreachable(exc)) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)

    def jobs(self, limit: int, status: str | None = None) -> dict[str, Any]:
        """GET /v1/jobs: a page of recent jobs, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._request("GET", "/v1/jobs", params=params).json()
