"""The committed OpenAPI document matches the app, and the API process never imports torch."""

from __future__ import annotations

import subprocess
import sys

from service.openapi import OPENAPI_PATH, openapi_document, render


def test_committed_openapi_matches_the_app() -> None:
    assert OPENAPI_PATH.read_text() == render(openapi_document()), (
        "openapi/openapi.json is stale: run `python -m service.openapi` and commit it"
    )


def test_operation_ids_are_stable() -> None:
    document = openapi_document()
    ids = sorted(op["operationId"] for path in document["paths"].values() for op in path.values())
    assert ids == sorted(
        [
            "aggregate_job_result",
            "create_attribution",
            "create_batch",
            "create_context_attribution",
            "delete_batch",
            "delete_job",
            "get_batch",
            "get_batch_events",
            "get_batch_results",
            "get_job",
            "get_job_events",
            "get_job_heatmap_png",
            "get_job_heatmap_svg",
            "get_job_result",
            "get_job_view",
            "healthz",
            "list_aggregators",
            "list_batches",
            "list_jobs",
            "list_methods",
            "list_models",
            "list_step_functions",
            "metrics",
            "readyz",
        ]
    )


def test_errors_are_documented_as_problems() -> None:
    document = openapi_document()
    responses = document["paths"]["/v1/attributions"]["post"]["responses"]
    assert set(responses) >= {"202", "400", "404", "413", "422"}
    assert "application/problem+json" in responses["422"]["content"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_context_result_is_its_own_type() -> None:
    document = openapi_document()
    ok = document["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"]["200"]["content"]
    refs = {entry["$ref"] for entry in ok["application/json"]["schema"]["anyOf"]}
    assert refs == {"#/components/schemas/AttributionResult", "#/components/schemas/ContextAttributionResult"}
    assert "text/plain" in ok
    context = document["components"]["schemas"]["ContextAttributionResult"]
    assert {"cti_scores", "cci_scores", "output_current_tokens", "text"} <= set(context["properties"])
    submit = document["paths"]["/v1/attribute-context"]["post"]
    assert submit["tags"] == ["jobs"]
    assert "application/problem+json" in submit["responses"]["422"]["content"]
    aggregated = document["paths"]["/v1/jobs/{job_id}/aggregate"]["post"]["responses"]["200"]["content"]
    assert "text/plain" not in aggregated


def test_api_does_not_import_torch() -> None:
    code = (
        "import service.main, service.openapi, cli.main, cli.serve, sys; service.main.create_app(); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
