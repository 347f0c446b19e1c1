"""A Python client generated from `openapi/openapi.json` by openapi-python-client works against the real
stack: the document is proven usable by generated clients (readable operation ids, the 202 and the problem
bodies declared, every export format typed).

The client is generated once per module into a temporary folder, without a post-hook (no ruff, no network),
and imported from there as `seqattr_client`.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from schemas.exports import CSV_COLUMNS, ExportFormat
from service.openapi import OPENAPI_PATH
from tests.service.helpers import PROBLEM, SENTENCES, UNSERVED_MODEL

pytest.importorskip("openapi_python_client", reason="openapi-python-client is not installed (test extra)")

PACKAGE = "seqattr_client"
"""Import name of the generated package."""

GENERATION_BUDGET_S = 30.0
"""Generating the client must take less than this."""

GENERATOR_CONFIG = {
    # No post-hooks: the default ones run ruff from PATH, which a bare environment may not have.
    "post_hooks": [],
    # The generator reads no image/* body by itself (it warns and drops the response): heatmaps are bytes.
    "content_type_overrides": {
        "image/png": "application/octet-stream",
        "image/svg+xml": "application/octet-stream",
    },
}
"""openapi-python-client's configuration, as a user of the API would write it."""


class Generated:
    """The generated package, the document it came from and what the generator printed."""

    def __init__(self, root: Path, document: dict[str, Any], output: str, seconds: float) -> None:
        self.root = root
        self.document = document
        self.output = output
        self.seconds = seconds

    def module(self, name: str) -> ModuleType:
        """`seqattr_client.<name>`, e.g. `api.jobs.get_job`."""
        return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    root = tmp_path_factory.mktemp("generated_client")
    config = root / "config.json"
    config.write_text(json.dumps(GENERATOR_CONFIG))
    command = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(OPENAPI_PATH),
        "--meta",
        "none",
        "--config",
        str(config),
        "--output-path",
        str(root / PACKAGE),
        "--fail-on-warning",
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=2 * GENERATION_BUDGET_S)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"openapi-python-client failed or warned:\n{output}"
    sys.path.insert(0, str(root))
    try:
        yield Generated(root, json.loads(OPENAPI_PATH.read_text()), output, seconds)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture
def api(generated: Generated, api_url: str) -> Iterator[Any]:
    """The generated `Client` on the test API; undocumented statuses raise."""
    client = generated.module("client").Client(base_url=api_url, timeout=30, raise_on_unexpected_status=True)
    with client:
        yield client


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for path in document["paths"].values() for op in path.values()}


def _module_name(operation: dict[str, Any]) -> str:
    """`<tag>.<operation id>`: where the generator puts an operation under `api`."""
    tag = operation.get("tags", ["default"])[0].replace("-", "_").lower()
    return f"{tag}.{operation['operationId']}"


def test_generation_is_clean_and_fast(generated: Generated) -> None:
    said = [line for line in generated.output.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("Generating "), generated.output
    assert generated.seconds < GENERATION_BUDGET_S, f"generation took {generated.seconds:.1f} s"


def test_every_operation_is_a_module_named_by_its_id(generated: Generated) -> None:
    api_dir = generated.root / PACKAGE / "api"
    modules = {
        ".".join(path.relative_to(api_dir).with_suffix("").parts)
        for path in api_dir.rglob("*.py")
        if path.name != "__init__.py"
    }
    expected = {_module_name(op) for op in _operations(generated.document).values()}
    assert modules == expected
    assert {"attributions.create_attribution", "jobs.get_job", "jobs.get_job_result"} <= modules
    for name in modules:
        module = generated.module(f"api.{name}")
        for function in ("sync", "sync_detailed", "asyncio", "asyncio_detailed"):
            assert callable(getattr(module, function)), f"api.{name}.{function}"


def test_every_export_format_is_declared_and_typed(generated: Generated) -> None:
    responses = _operations(generated.document)["get_job_result"]["responses"]
    content = responses["200"]["content"]
    assert set(content) == {fmt.media_type for fmt in ExportFormat}
    assert all(content[fmt.media_type].get("schema") for fmt in ExportFormat)
    client_format = generated.module("models").ExportFormat
    assert {member.value for member in client_format} == {fmt.value for fmt in ExportFormat}
    for status in ("404", "406", "409", "413", "422"):
        assert PROBLEM in responses[status]["content"], status


def _result_as(generated: Generated, api: Any, job_id: str, fmt: ExportFormat) -> httpx.Response:
    """The result in `fmt`, asked with the generated operation's own URL and query.

    The generated `get_job_result` parses a 200 as its first declared media type (JSON) whatever the format:
    openapi-python-client types one media type per response. Other formats are read from the raw response.
    """
    get_job_result = generated.module("api.jobs.get_job_result")
    client_format = generated.module("models").ExportFormat(fmt.value)
    return api.get_httpx_client().request(**get_job_result._get_kwargs(job_id, format_=client_format))


@pytest.mark.usefixtures("worker")
def test_submit_wait_and_read_a_result(generated: Generated, api: Any) -> None:
    models = generated.module("models")
    create_attribution = generated.module("api.attributions.create_attribution")
    get_job = generated.module("api.jobs.get_job")
    get_job_result = generated.module("api.jobs.get_job_result")
    request = models.AttributionRequest(
        model="tiny-gpt2",
        inputs=[SENTENCES[0]],
        generation_args=models.GenerationArgs.from_dict({"max_new_tokens": 3}),
        step_scores=["probability"],
    )

    created = create_attribution.sync_detailed(client=api, body=request)
    assert created.status_code == 202, created.content
    assert isinstance(created.parsed, models.Job)
    assert created.headers["location"] == f"/v1/jobs/{created.parsed.id}"

    job = get_job.sync(created.parsed.id, client=api, wait=20.0)
    assert isinstance(job, models.Job)
    assert job.status == models.JobStatus.FINISHED, job.to_dict()
    assert job.id == created.parsed.id

    result = get_job_result.sync(job.id, client=api)
    assert isinstance(result, models.AttributionResult)
    raw = api.get_httpx_client().get(f"/v1/jobs/{job.id}/result").json()
    assert result.to_dict() == raw
    (sequence,) = result.sequences
    assert isinstance(sequence.target[0], models.Token)
    n_steps = sequence.attr_pos_end - sequence.attr_pos_start
    assert n_steps == 3
    assert sequence.source_attributions is None
    assert len(sequence.target_attributions) == len(sequence.target)
    assert len(sequence.step_scores["probability"]) == n_steps

    table = _result_as(generated, api, job.id, ExportFormat.CSV)
    assert table.headers["content-type"].startswith(ExportFormat.CSV.media_type)
    header, *rows = csv.reader(io.StringIO(table.text))
    assert tuple(header) == CSV_COLUMNS
    assert len(rows) == len(sequence.target) * n_steps + n_steps

    inseq = _result_as(generated, api, job.id, ExportFormat.INSEQ)
    assert inseq.headers["content-type"].startswith(ExportFormat.INSEQ.media_type)
    assert inseq.json()["__instance_type__"][-1] == "FeatureAttributionOutput"


def test_problems_parse_into_the_declared_models(generated: Generated, api: Any) -> None:
    models = generated.module("models")
    create_attribution = generated.module("api.attributions.create_attribution")
    get_job_result = generated.module("api.jobs.get_job_result")

    bad = models.AttributionRequest(
        model="tiny-gpt2", inputs=[SENTENCES[0]], generation_args=models.GenerationArgs(top_p=5.0)
    )
    invalid = create_attribution.sync_detailed(client=api, body=bad)
    assert invalid.status_code == 422, invalid.content
    assert isinstance(invalid.parsed, models.ValidationProblem)
    assert invalid.parsed.type_.endswith("/validation-error")
    (error,) = invalid.parsed.errors
    assert isinstance(error, models.ValidationErrorItem)
    assert error.loc == ["body", "generation_args", "top_p"]

    no_model = create_attribution.sync_detailed(
        client=api, body=models.AttributionRequest(model="no-such-model", inputs=[SENTENCES[0]])
    )
    assert no_model.status_code == 404
    assert isinstance(no_model.parsed, models.UnknownModelProblem)
    assert "tiny-gpt2" in no_model.parsed.available

    queued = create_attribution.sync(
        client=api,
        body=models.AttributionRequest(model=UNSERVED_MODEL, inputs=[SENTENCES[0]]),
        idempotency_key="generated-client",
    )
    assert isinstance(queued, models.Job)
    # A 422 that is not a validation error (no `errors`): the declared union parses it as a plain Problem.
    reused = create_attribution.sync_detailed(
        client=api,
        body=models.AttributionRequest(model=UNSERVED_MODEL, inputs=[SENTENCES[1]]),
        idempotency_key="generated-client",
    )
    assert reused.status_code == 422, reused.content
    assert isinstance(reused.parsed, models.Problem)
    assert reused.parsed.type_.endswith("/idempotency-key-reused")
    assert reused.parsed["job_id"] == queued.id
    not_ready = get_job_result.sync_detailed(queued.id, client=api)
    assert not_ready.status_code == 409
    assert isinstance(not_ready.parsed, models.JobStateProblem)
    assert not_ready.parsed.job_status == "queued"


def test_an_unknown_job_is_a_problem_on_every_job_path(generated: Generated, api: Any) -> None:
    """Each GET or DELETE of `/v1/jobs/{job_id}...` (JSON, exports, pages, images) answers an unknown id with
    a problem that the generated client parses into its `Problem`."""
    models = generated.module("models")
    job_id = "0" * 32
    checked = []
    for path, item in generated.document["paths"].items():
        for method, operation in item.items():
            if not path.startswith("/v1/jobs/{job_id}") or method not in ("get", "delete"):
                continue
            module = generated.module(f"api.{_module_name(operation)}")
            response = module.sync_detailed(job_id, client=api)
            name = operation["operationId"]
            assert response.status_code == 404, (name, response.content)
            assert response.headers["content-type"] == PROBLEM, name
            assert isinstance(response.parsed, models.Problem), f"{name}: parsed as {response.parsed!r}"
            assert response.parsed.type_.endswith("/unknown-job"), name
            assert response.parsed.instance == path.replace("{job_id}", job_id), name
            checked.append(name)
    assert {"get_job", "get_job_result", "delete_job"} <= set(checked)


def test_list_methods(generated: Generated, api: Any) -> None:
    models = generated.module("models")
    methods = generated.module("api.catalogue.list_methods").sync(client=api)
    assert isinstance(methods, models.MethodList)
    by_id = {method.id: method for method in methods.methods}
    assert {"saliency", "integrated_gradients", "attention"} <= set(by_id)
    assert isinstance(by_id["integrated_gradients"].parameters, models.MethodSpecParameters)
    assert "n_steps" in by_id["integrated_gradients"].parameters.to_dict()["properties"]
