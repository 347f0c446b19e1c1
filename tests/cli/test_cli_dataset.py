"""`seqattr attribute-dataset` against the real stack (Redis, the API and a worker, tiny-gpt2) and with
`--local`: the results file equals the service's batch results and the same request sent alone; a bad line
is a 422 naming it (exit 4); an unreachable service exits 3."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from cli.processes import free_port
from tests.service.helpers import SENTENCES

ITEMS = [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(10)]
FAST = ["-m", "tiny-gpt2", "--max-new-tokens", "3", "--chunk-size", "4"]


def _run(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, ["attribute-dataset", *args], env=env)


def _files(folder: Path) -> tuple[Path, Path]:
    jsonl = folder / "data.jsonl"
    jsonl.write_text("".join(json.dumps({"text": text, "n": i}) + "\n" for i, text in enumerate(ITEMS)))
    table = folder / "data.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([["n", "text"], *([i, text] for i, text in enumerate(ITEMS))])
    table.write_text(buffer.getvalue())
    return jsonl, table


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_sequence(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    for field in ("source", "target", "attr_pos_start", "attr_pos_end"):
        assert mine[field] == theirs[field], field
    a, b = (np.array(s["target_attributions"], dtype=float) for s in (mine, theirs))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True)


@pytest.mark.usefixtures("worker", "clean_jobs")
def test_a_dataset_runs_as_a_batch_and_its_results_are_the_services(
    runner: CliRunner, api_url: str, tiny_registry: Path, tmp_path: Path
) -> None:
    jsonl, table = _files(tmp_path)
    done = _run(runner, "--file", str(jsonl), "--input-field", "text", *FAST, "--url", api_url,
                "--out", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert done.exit_code == 0, done.output
    batch_id = re.search(r"batch (\w{32}) submitted", done.stderr).group(1)  # type: ignore[union-attr]
    assert "10/10" in done.stderr
    served = httpx.get(f"{api_url}/v1/batches/{batch_id}/results", timeout=30)
    assert (tmp_path / "out.jsonl").read_bytes() == served.content
    lines = _lines(tmp_path / "out.jsonl")
    assert [(line["index"], line["status"]) for line in lines] == [(i, "finished") for i in range(10)]
    batch = httpx.get(f"{api_url}/v1/batches/{batch_id}", timeout=30).json()
    assert (batch["chunks"], batch["template"]["generation_args"]["max_new_tokens"]) == (3, 3)

    alone = httpx.post(f"{api_url}/v1/attributions", json={"model": "tiny-gpt2", "inputs": [ITEMS[6]],
                       "generation_args": {"max_new_tokens": 3}}, timeout=30).json()  # fmt: skip
    httpx.get(f"{api_url}/v1/jobs/{alone['id']}", params={"wait": 60}, timeout=90)
    result = httpx.get(f"{api_url}/v1/jobs/{alone['id']}/result", timeout=30).json()
    _assert_same_sequence(lines[6]["result"]["sequences"][0], result["sequences"][0])

    from_csv = _run(runner, "--file", str(table), "--input-field", "text", *FAST, "--url", api_url,
                    "--out", str(tmp_path / "out.csv"))  # fmt: skip
    assert from_csv.exit_code == 0, from_csv.output
    csv_id = re.search(r"batch (\w{32}) submitted", from_csv.stderr).group(1)  # type: ignore[union-attr]
    served_csv = httpx.get(f"{api_url}/v1/batches/{csv_id}/results", params={"format": "csv"}, timeout=30)
    assert (tmp_path / "out.csv").read_bytes() == served_csv.content
    rows = list(csv.DictReader((tmp_path / "out.csv").open(newline="")))
    assert sorted({int(row["sequence"]) for row in rows}) == list(range(10))

    env = {"SEQATTR_MODELS": str(tiny_registry), "SEQATTR_DATA_DIR": str(tmp_path / "data")}
    local = _run(runner, "--file", str(jsonl), "--input-field", "text", *FAST, "--local",
                 "--out", str(tmp_path / "local.jsonl"), env=env)  # fmt: skip
    assert local.exit_code == 0, local.output
    mine = _lines(tmp_path / "local.jsonl")
    assert [(line["index"], line["status"]) for line in mine] == [(i, "finished") for i in range(10)]
    for index in (0, 6, 9):
        _assert_same_sequence(mine[index]["result"]["sequences"][0], lines[index]["result"]["sequences"][0])
    local_csv = _run(runner, "--file", str(table), "--input-field", "text", *FAST, "--local",
                     "--out", str(tmp_path / "local.csv"), env=env)  # fmt: skip
    assert local_csv.exit_code == 0, local_csv.output
    local_rows = list(csv.DictReader((tmp_path / "local.csv").open(newline="")))
    assert [(r["sequence"], r["side"], r["position"], r["step"]) for r in local_rows] == [
        (r["sequence"], r["side"], r["position"], r["step"]) for r in rows
    ]


@pytest.mark.usefixtures("clean_jobs")
def test_a_bad_line_is_a_422_naming_it_and_exits_4(
    runner: CliRunner, api_url: str, tiny_registry: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"other": "no text"}\n')
    env = {"SEQATTR_MODELS": str(tiny_registry)}
    for where in (["--url", api_url], ["--local"]):
        result = _run(runner, "--file", str(bad), "--input-field", "text", *FAST, *where,
                      "--out", str(tmp_path / "out.jsonl"), env=env)  # fmt: skip
        assert result.exit_code == 4, result.output
        assert "422" in result.stderr and "line 3" in result.stderr and "no field 'text'" in result.stderr
        assert not (tmp_path / "out.jsonl").exists()
    invalid = _run(runner, "--file", str(bad), "--input-field", "text", "-a", "nope", "--url", api_url,
                   "--out", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert invalid.exit_code == 4 and "--method" in invalid.stderr, invalid.output


def test_an_unreachable_service_exits_3_and_a_bad_out_name_2(runner: CliRunner, tmp_path: Path) -> None:
    jsonl, _ = _files(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    result = _run(runner, "--file", str(jsonl), "--input-field", "text", "--url", url,
                  "--out", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert result.exit_code == 3, result.output
    assert f"cannot reach the Seqattr API at {url}" in result.stderr
    wrong = _run(runner, "--file", str(jsonl), "--input-field", "text", "--out", str(tmp_path / "out.txt"))
    assert wrong.exit_code == 2 and ".jsonl or .csv" in wrong.output
