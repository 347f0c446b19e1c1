"""Log lines as JSON objects, one per line, carrying the job fields given as `extra`."""

from __future__ import annotations

import json
import logging

import pytest

from schemas.logs import configure_logging


def test_json_lines_carry_the_job_fields(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging(logging.INFO, "json")
        log = logging.getLogger("seqattr.test")
        log.info(
            "job %s finished", "abc", extra={"job_id": "abc", "model": "m", "method": "saliency", "key": "k"}
        )
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    first, second = lines
    assert (
        first["message"] == "job abc finished"
        and first["level"] == "INFO"
        and first["logger"] == "seqattr.test"
    )
    assert (first["job_id"], first["model"], first["method"], first["key"]) == ("abc", "m", "saliency", "k")
    assert "ValueError: boom" in second["exception"] and "job_id" not in second
