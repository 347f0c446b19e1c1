"""`seqattr attribute` against the real stack (Redis, the API and a worker, tiny models) and with `--local`:
the token table, the saved exports and view, and the exit codes of each way it can go wrong."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from cli.main import app
from cli.processes import free_port
from cli.request import parse_arg
from cli.tables import cell_strings, print_result
from service.views.colors import RED
from service.views.heatmap import sequence_heatmap
from tests.service.helpers import SENTENCES, UNSERVED_MODEL
from tests.service.stack import REPO, wait_until

SEQATTR = Path(sys.executable).with_name("seqattr")
"""The console script the package installs."""

FAST = ["-m", "tiny-gpt2", "-i", SENTENCES[0], "--max-new-tokens", "3", "--step-scores", "probability"]
"""Options of a job that takes well under a second."""


def _env() -> dict[str, str]:
    """The environment of a `seqattr` subprocess: this one without Seqattr settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQATTR_")}
    return {**env, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def _run(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, ["attribute", *args], env=env)


def _job_ids(api_url: str) -> list[str]:
    return [job["id"] for job in httpx.get(f"{api_url}/v1/jobs", timeout=30).json()["jobs"]]


def assert_table_shows(output: str, result: dict[str, Any]) -> None:
    """Every generated token, every token row, every step score and every score as its cell shows it."""
    for k, seq in enumerate(result["sequences"]):
        start, end = seq["attr_pos_start"], seq["attr_pos_end"]
        for token in seq["target"][start:end] + seq["target"][: len(seq["target_attributions"] or [])]:
            assert token["token"] in output
        for name in seq["step_scores"]:
            assert name in output
        shown = cell_strings(sequence_heatmap(seq, k))
        assert shown and all(text in output for text in shown)


def assert_csv_matches(path: Path, result: dict[str, Any]) -> None:
    """The CSV, read with the csv module, holds every score of the JSON result (null ↔ empty), row by row."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    expected = []
    for k, seq in enumerate(result["sequences"]):
        start = seq["attr_pos_start"]
        for side in ("source", "target"):
            for i, cells in enumerate(seq[f"{side}_attributions"] or ()):
                expected += [(str(k), side, str(i), start + j, value) for j, value in enumerate(cells)]
        for name, values in seq["step_scores"].items():
            expected += [(str(k), "step_score", name, start + j, value) for j, value in enumerate(values)]
    assert len(rows) == len(expected)
    for row, (k, side, where, step, value) in zip(rows, expected, strict=True):
        assert (row["sequence"], row["side"], int(row["step"])) == (k, side, step)
        assert (row["token"] if side == "step_score" else row["position"]) == where
        if value is None:
            assert row["score"] == ""
        else:
            assert float(row["score"]) == value


@pytest.mark.usefixtures("worker", "clean_jobs")
def test_attribute_shows_the_table_and_saves_json_view_and_csv(
    runner: CliRunner, api_url: str, tmp_path: Path
) -> None:
    service = ["--url", api_url, "--idempotency-key", "cli-test"]
    first = _run(
        runner, *FAST, *service, "--save", str(tmp_path / "r.json"), "--view", str(tmp_path / "r.html")
    )
    assert first.exit_code == 0, first.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert_table_shows(first.stdout, result)
    [job_id] = _job_ids(api_url)
    assert job_id in first.stderr and result["id"] == job_id
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Seqattr" in page

    # The same key and request: the same job again (nothing recomputed), saved as CSV this time.
    second = _run(runner, *FAST, *service, "--save", str(tmp_path / "r.csv"), "--no-table")
    assert second.exit_code == 0, second.output
    assert second.stdout == "" and _job_ids(api_url) == [job_id]
    assert_csv_matches(tmp_path / "r.csv", result)

    # The same key with another request: the service's 422, printed readably, exit code 4.
    third = _run(runner, *FAST, *service, "--method-arg", "abs=false")
    assert third.exit_code == 4, third.output
    assert "422" in third.stderr and "Idempotency" in third.stderr and "Traceback" not in third.output


@pytest.mark.usefixtures("worker", "clean_jobs")
def test_local_run_gives_the_services_result_and_files(
    runner: CliRunner, api_url: str, tiny_registry: Path, tmp_path: Path
) -> None:
    remote = _run(runner, *FAST, "--url", api_url, "--save", str(tmp_path / "remote.json"), "--no-table")
    assert remote.exit_code == 0, remote.output
    env = {"SEQATTR_MODELS": str(tiny_registry), "SEQATTR_DATA_DIR": str(tmp_path / "data")}
    local = _run(
        runner,
        *FAST,
        "--local",
        "--save",
        str(tmp_path / "local.json"),
        "--view",
        str(tmp_path / "l.html"),
        env=env,
    )
    assert local.exit_code == 0, local.output
    want = json.loads((tmp_path / "remote.json").read_text())
    got = json.loads((tmp_path / "local.json").read_text())
    assert_table_shows(local.stdout, got)
    assert got["id"] != want["id"] and got["info"]["method_args"] == want["info"]["method_args"]
    for mine, theirs in zip(got["sequences"], want["sequences"], strict=True):
        assert mine["target"] == theirs["target"]
        for field in ("target_attributions", "step_scores"):
            a, b = (np.array(s[field] if field != "step_scores" else list(s[field].values()), dtype=float)
                    for s in (mine, theirs))  # fmt: skip
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True)
    assert (tmp_path / "l.html").read_text().startswith("<!DOCTYPE html>")

    local_csv = _run(runner, *FAST, "--local", "--save", str(tmp_path / "local.csv"), "--no-table", env=env)
    assert local_csv.exit_code == 0, local_csv.output
    assert_csv_matches(tmp_path / "local.csv", got)
    inseq = _run(runner, *FAST, "--local", "--save", str(tmp_path / "i.json"), "--format", "inseq", env=env)
    assert inseq.exit_code == 0, inseq.output
    saved = json.loads((tmp_path / "i.json").read_text())
    assert saved["__instance_type__"] == ["inseq.data.attribution", "FeatureAttributionOutput"]


def test_the_table_colours_cells_by_score() -> None:
    tokens = [{"id": i, "token": t, "text": t} for i, t in enumerate(["▁A", "▁cat", "▁sat", "."])]
    result = {
        "method": "saliency",
        "model": {"id": "m", "is_encoder_decoder": False},
        "attributed_fn": "probability",
        "sequences": [
            {
                "source": tokens[:2],
                "target": tokens,
                "attr_pos_start": 2,
                "attr_pos_end": 4,
                "source_attributions": None,
                "target_attributions": [[0.25, 0.1], [0.75, 0.2], [None, 0.7], [None, None]],
                "step_scores": {"probability": [0.9, 0.1]},
            }
        ],
        "info": {"warnings": ["a note"]},
    }
    console = Console(force_terminal=True, color_system="truecolor", width=100, record=True)
    print_result(console, result)
    styled = console.export_text(styles=True, clear=False)
    assert "48;2;{};{};{}".format(*RED) in styled  # the largest score has the scale's end colour
    plain = console.export_text()
    assert all(text in plain for text in ("0.750", "0.700", "▁sat", "probability", "a note"))


def test_an_invalid_request_is_refused_before_it_is_sent(runner: CliRunner) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    args = [
        "-i",
        "Hello",
        "-a",
        "integrated_gradients",
        "--method-arg",
        "n_steps=0",
        "--method-arg",
        "bogus=1",
    ]
    result = _run(runner, *args, "--url", unreachable)
    assert result.exit_code == 4, result.output  # not 3: nothing was sent
    assert "--method-arg n_steps" in result.stderr and "unknown field 'bogus'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("n_steps=8", ("n_steps", 8)),
        ("abs=false", ("abs", False)),
        ("heads=[0,1]", ("heads", [0, 1])),
        ('layers={"start": 0, "end": 2}', ("layers", {"start": 0, "end": 2})),
        ("target_layer=transformer.h.0", ("target_layer", "transformer.h.0")),
        ('method="8"', ("method", "8")),
        ("note=a=b", ("note", "a=b")),
    ],
)
def test_method_args_are_json_when_they_parse(text: str, parsed: tuple[str, object]) -> None:
    assert parse_arg(text) == parsed


def test_a_malformed_method_arg_is_a_usage_error(runner: CliRunner) -> None:
    result = _run(runner, "-i", "Hello", "--method-arg", "n_steps")
    assert result.exit_code == 2 and "NAME=VALUE" in result.output


@pytest.mark.usefixtures("worker", "clean_jobs")
def test_a_failed_job_prints_its_problem_and_exits_5(runner: CliRunner, api_url: str) -> None:
    # A decoder-only forced target must start with its prompt: the worker fails the job (422 problem).
    result = _run(runner, *FAST, "--generated-text", "Something else entirely", "--url", api_url)
    assert result.exit_code == 5, result.output
    [job_id] = _job_ids(api_url)
    assert f"job {job_id} failed" in result.stderr and "Invalid request" in result.stderr


@pytest.mark.usefixtures("clean_jobs")
def test_an_unknown_model_prints_the_available_ones_and_exits_1(runner: CliRunner, api_url: str) -> None:
    result = _run(runner, "-m", "no-such-model", "-i", "Hello", "--url", api_url)
    assert result.exit_code == 1, result.output
    assert "404" in result.stderr and "no-such-model" in result.stderr and "tiny-gpt2" in result.stderr


def test_local_errors_have_the_services_exit_codes(runner: CliRunner, tiny_registry: Path) -> None:
    env = {"SEQATTR_MODELS": str(tiny_registry)}
    unknown = _run(runner, "--local", "-m", "no-such-model", "-i", "Hello", env=env)
    assert unknown.exit_code == 1 and "tiny-gpt2" in unknown.stderr
    failed = _run(runner, *FAST, "--local", "--generated-text", "Something else entirely", env=env)
    assert failed.exit_code == 5 and "Invalid request" in failed.stderr


def test_an_unreachable_service_is_one_line_and_exit_code_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(SEQATTR), "attribute", "-i", "Hello", "--url", url],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().count("\n") == 0 and f"cannot reach the Seqattr API at {url}" in done.stderr


@pytest.mark.usefixtures("clean_jobs")
def test_ctrl_c_leaves_the_job_running_and_exits_130(api_url: str) -> None:
    # The unserved model's job stays queued: the command waits until it is interrupted.
    process = subprocess.Popen(
        [str(SEQATTR), "attribute", "-m", UNSERVED_MODEL, "-i", SENTENCES[0], "--url", api_url],
        env=_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        [job_id] = wait_until(lambda: _job_ids(api_url), 30, "the job to be submitted")
        time.sleep(0.3)  # into the wait loop
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert f"job {job_id} keeps running" in stderr and "Traceback" not in stderr
    assert httpx.get(f"{api_url}/v1/jobs/{job_id}", timeout=30).json()["status"] == "queued"
