"""The `seqattr` commands besides `attribute` and `serve`: the catalogue (no service), `openapi`, `jobs`
against the real stack (with and without API keys), `worker` as a real process, `--help` on every command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from typer.testing import CliRunner

from cli.main import app
from cli.processes import free_port, stop
from schemas.methods import METHOD_SPECS
from schemas.redis_keys import queue_name
from schemas.step_functions import STEP_FUNCTION_SPECS
from service.openapi import OPENAPI_PATH
from tests.service.helpers import queued_request, submit
from tests.service.stack import REPO, stack_env, start_api, wait_until

COMMANDS = ["serve", "api", "worker", "attribute", "jobs", "openapi", "methods", "step-functions"]

KEY = "cli-test-key-0123456789abcdef"


def test_every_command_has_help(runner: CliRunner) -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and all(command in top.stdout for command in COMMANDS)
    for command in COMMANDS:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert f"Usage: seqattr {command}" in result.stdout


def test_methods_lists_every_method(runner: CliRunner) -> None:
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0, result.output
    assert all(method in result.stdout for method in METHOD_SPECS)


def test_one_method_shows_its_parameters_and_defaults(runner: CliRunner) -> None:
    result = runner.invoke(app, ["methods", "saliency"])
    assert result.exit_code == 0, result.output
    [abs_row] = [line for line in result.stdout.splitlines() if " abs " in line]
    assert "boolean" in abs_row and "true" in abs_row and "absolute value" in abs_row
    assert "https://captum.ai/api/saliency.html" in result.stdout
    ig = runner.invoke(app, ["methods", "integrated_gradients"]).stdout
    assert all(text in ig for text in ("n_steps", "50", '"riemann_left"', "uses baselines"))


def test_step_functions_list_and_detail(runner: CliRunner) -> None:
    result = runner.invoke(app, ["step-functions"])
    assert result.exit_code == 0, result.output
    assert all(function in result.stdout for function in STEP_FUNCTION_SPECS)
    detail = runner.invoke(app, ["step-functions", "top_p_size"]).stdout
    assert "required" in detail and "step_scores only" in detail and "top_p_size.top_p=VALUE" in detail


def test_an_unknown_catalogue_id_is_a_usage_error_listing_the_ids(runner: CliRunner) -> None:
    result = runner.invoke(app, ["methods", "salience"])
    assert result.exit_code == 2
    assert "unknown method 'salience'" in result.output and "saliency" in result.output


def test_openapi_writes_the_committed_document(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "doc" / "openapi.json"
    result = runner.invoke(app, ["openapi", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == OPENAPI_PATH.read_text(), "openapi/openapi.json is stale: run `make openapi`"
    printed = runner.invoke(app, ["openapi"])
    assert printed.exit_code == 0 and printed.stdout == OPENAPI_PATH.read_text()


@pytest.mark.usefixtures("clean_jobs")
def test_jobs_lists_the_submitted_job(runner: CliRunner, api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        job = submit(client, queued_request())
    result = runner.invoke(app, ["jobs", "--url", api_url])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if job["id"] in line]
    assert "queued" in row and "tiny-marian" in row and "saliency" in row
    assert job["id"] in runner.invoke(app, ["jobs", "--url", api_url, "--status", "queued"]).stdout
    finished = runner.invoke(app, ["jobs", "--url", api_url, "--status", "finished"])
    assert finished.exit_code == 0 and "no jobs with status finished" in finished.stdout


def test_jobs_on_an_unreachable_service_exits_3(runner: CliRunner) -> None:
    result = runner.invoke(app, ["jobs", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 3 and "cannot reach the Seqattr API" in result.stderr


def test_a_url_that_is_not_http_is_a_configuration_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["jobs", "--url", "localhost:8000"])
    assert result.exit_code == 2 and "invalid API URL 'localhost:8000'" in result.stderr


@pytest.fixture
def keyed_api(redis_url: str, tiny_registry: Path, tmp_path: Path) -> Iterator[str]:
    process, url = start_api(stack_env(redis_url, tiny_registry, tmp_path, SEQATTR_API_KEYS=f"cli:{KEY}"))
    yield url
    stop(process, "API")


@pytest.mark.usefixtures("clean_jobs")
def test_jobs_sends_the_api_key(runner: CliRunner, keyed_api: str) -> None:
    refused = runner.invoke(app, ["jobs", "--url", keyed_api])
    assert refused.exit_code == 1 and "401" in refused.stderr and "Unauthorized" in refused.stderr
    wrong = runner.invoke(app, ["jobs", "--url", keyed_api, "--api-key", KEY + "x"])
    assert wrong.exit_code == 1
    accepted = runner.invoke(app, ["jobs", "--url", keyed_api], env={"SEQATTR_API_KEY": KEY})
    assert accepted.exit_code == 0, accepted.output


def test_worker_command_runs_a_worker_on_its_models_queues(
    redis_url: str, redis_client: Redis, tiny_registry: Path, tmp_path: Path
) -> None:
    name = f"cli-worker-{os.getpid()}"
    env = stack_env(redis_url, tiny_registry, tmp_path, SEQATTR_WORKER_NAME=name, SEQATTR_LOG_LEVEL="WARNING")
    seqattr = Path(sys.executable).with_name("seqattr")
    process = subprocess.Popen([str(seqattr), "worker", "--models", "tiny-gpt2"], cwd=REPO, env=env)
    key = f"rq:worker:{name}"
    try:

        def queues() -> bytes | None:
            assert process.poll() is None, f"the worker exited with code {process.returncode}"
            return redis_client.hget(key, "queues") if redis_client.sismember("rq:workers", key) else None

        assert (
            wait_until(queues, 60, "the worker to register", interval_s=0.1)
            == queue_name("tiny-gpt2").encode()
        )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0
    assert not redis_client.sismember("rq:workers", key)


def test_worker_command_refuses_an_unknown_model(tiny_registry: Path, tmp_path: Path) -> None:
    env = stack_env("redis://127.0.0.1:1/0", tiny_registry, tmp_path)
    seqattr = Path(sys.executable).with_name("seqattr")
    done = subprocess.run(
        [str(seqattr), "worker", "--models", "no-such-model"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "no-such-model" in done.stderr
