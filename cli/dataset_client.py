"""The batch routes of the Seqattr API for `seqattr attribute-dataset`: upload a file, follow, download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli.client import ApiClient


class BatchClient(ApiClient):
    """`ApiClient` with `/v1/batches`; errors are the command's, as `ApiClient`'s are."""

    def __enter__(self) -> BatchClient:
        return self

    def upload(
        self,
        path: Path,
        input_field: str,
        generated_field: str | None,
        template: dict[str, Any],
        chunk_size: int | None = None,
    ) -> dict[str, Any]:
        """POST /v1/batches as multipart: the file, its field names and the request template."""
        data = {"input_field": input_field, "request": json.dumps(template)}
        if generated_field:
            data["generated_field"] = generated_field
        if chunk_size is not None:
            data["chunk_size"] = str(chunk_size)
        with path.open("rb") as file:
            response = self._request("POST", "/v1/batches", data=data, files={"file": (path.name, file)})
        return response.json()

    def batch(self, batch_id: str) -> dict[str, Any]:
        """GET /v1/batches/{id}: counts, done/total, throughput and time left."""
        return self._request("GET", f"/v1/batches/{batch_id}").json()

    def save_results(self, batch_id: str, fmt: str, path: Path) -> None:
        """Stream the batch's results (`jsonl` or `csv`, in input order) to `path`."""
        self._download(f"/v1/batches/{batch_id}/results", path, {"format": fmt, "partial": "all"})
