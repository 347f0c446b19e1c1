"""The load test of `make load`, at a count CI can afford: real processes on loopback, every job must end
`finished` with a well-formed result, none lost or duplicated (timings are reported, not asserted)."""

from __future__ import annotations

import pytest

from tests.load import main

pytestmark = pytest.mark.slow


def test_no_job_is_lost_under_load(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--jobs", "40", "--enqueue", "200", "--clients", "8", "--single", "10", "--wrk-seconds", "0"]
    code = main(args)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "40 finished with a well-formed result, 0 lost or failed, 0 duplicated ids" in report
