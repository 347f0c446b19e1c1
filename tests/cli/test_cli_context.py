"""`seqattr attribute-context` against the real stack (Redis, the API and a worker, tiny models) and with
`--local`: the coloured text rendering, the saved JSON, text and view, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from rich.console import Console
from typer.testing import CliRunner, Result

from cli.context import coloured
from cli.main import app
from cli.processes import free_port
from schemas.context import ContextAttributionResult

RESULT = TypeAdapter(ContextAttributionResult)

FAST = [
    "-m",
    "tiny-gpt2",
    "--input-context",
    "George was sick yesterday.",
    "--input-current",
    "His colleagues asked him to come",
    "--output-current",
    "to the hospital.",
    "--context-sensitivity-std-threshold",
    "0",
    "--context-sensitivity-topk",
    "1",
]
"""Options of a context job that takes well under a second."""


def _run(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, ["attribute-context", *args], env=env)


@pytest.mark.usefixtures("worker", "clean_jobs")
def test_remote_prints_the_rendering_and_saves_json_text_and_view(
    runner: CliRunner, api_url: str, tmp_path: Path
) -> None:
    files = ["--save", str(tmp_path / "r.json"), "--view", str(tmp_path / "r.html")]
    first = _run(runner, *FAST, "--url", api_url, *files)
    assert first.exit_code == 0, first.output
    result = RESULT.validate_python(json.loads((tmp_path / "r.json").read_text()))
    assert result["id"] in first.stderr
    assert "Input context:" in first.stdout and "#1." in first.stdout
    score = f"({result['cci_scores'][0]['cti_score']:.3f})"
    generated = next(line for line in first.stdout.splitlines() if line.startswith("Generated output"))
    assert score in generated and "{" not in generated  # the marks are colour in the terminal, not text
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'class="cci"' in page

    text = _run(runner, *FAST, "--url", api_url, "--save", str(tmp_path / "r.txt"))
    assert text.exit_code == 0, text.output
    assert (tmp_path / "r.txt").read_text().startswith("Context with contextual cues")


@pytest.mark.usefixtures("worker", "clean_jobs")
def test_local_gives_the_services_selection(
    runner: CliRunner, api_url: str, tiny_registry: Path, tmp_path: Path
) -> None:
    env = {"SEQATTR_MODELS": str(tiny_registry), "SEQATTR_DATA_DIR": str(tmp_path / "data")}
    local = _run(
        runner,
        *FAST,
        "--local",
        "--save",
        str(tmp_path / "l.json"),
        "--view",
        str(tmp_path / "l.html"),
        env=env,
    )
    assert local.exit_code == 0, local.output
    remote = _run(runner, *FAST, "--url", api_url, "--save", str(tmp_path / "r.json"))
    assert remote.exit_code == 0, remote.output
    got, want = (json.loads((tmp_path / name).read_text()) for name in ("l.json", "r.json"))
    assert got["cti_selected"] == want["cti_selected"]
    assert got["output_current_tokens"] == want["output_current_tokens"]
    assert got["cti_scores"] == pytest.approx(want["cti_scores"], abs=1e-5)
    assert 'class="cci"' in (tmp_path / "l.html").read_text()


def test_an_invalid_request_is_exit_4_before_anything_is_sent(runner: CliRunner) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = _run(
        runner,
        "--input-current",
        "Hello",
        "--context-sensitivity-metric",
        "probability",
        "--url",
        unreachable,
    )
    assert result.exit_code == 4, result.output  # not 3: nothing was sent
    assert "--context-sensitivity-metric" in result.stderr and "contrastive" in result.stderr
    assert "Traceback" not in result.output
    manual = _run(
        runner, "--input-current", "Hello", "--handle-output-context-strategy", "manual", "--url", unreachable
    )
    assert manual.exit_code == 4, manual.output
    assert "a service cannot do" in manual.stderr


def test_an_unreachable_service_is_exit_3(runner: CliRunner) -> None:
    result = _run(runner, "--input-current", "Hello", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 3, result.output


def test_save_needs_json_or_txt(runner: CliRunner, tmp_path: Path) -> None:
    result = _run(runner, "--input-current", "Hello", "--save", str(tmp_path / "r.csv"))
    assert result.exit_code == 2, result.output


def test_the_marks_are_coloured() -> None:
    console = Console(color_system="truecolor", force_terminal=True, width=200, record=True)
    console.print(
        coloured("Generated output (CTI > 0.1):\tto{ the}(0.775)\nInput context:\t[ George](0.029) was")
    )
    text = console.export_text()
    assert "{" not in text and "[ George]" not in text and " the(0.775)" in text and " George(0.029)" in text
    spans = coloured("a{b}(1.5)c[d](-0.2)e").spans
    assert [(span.start, span.end, str(span.style)) for span in spans][::2] == [
        (1, 2, "bold red"),
        (8, 9, "bold blue"),
    ]
