"""`SeqattrWorker` relies on a small part of RQ's worker; a change there must stop the worker loudly, not
silently end its heartbeats."""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version

import pytest
from rq.job import Job
from rq.worker import BaseWorker, SimpleWorker

from tests.service.stack import REPO
from workers.worker import RQ_INTERFACE, RQInterfaceChanged, SeqattrWorker, check_rq_interface


def test_rq_is_pinned_to_the_installed_version() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [pin] = [dep for dep in dependencies if re.match(r"rq\b", dep)]
    assert pin == f"rq=={version('rq')}"


def test_installed_rq_has_the_interface() -> None:
    check_rq_interface()
    for name in RQ_INTERFACE:
        assert name in SimpleWorker.__dict__ or name in BaseWorker.__dict__


def test_a_changed_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_heartbeat_ttl(self: SimpleWorker, job: Job, elapsed: float) -> int:  # noqa: ARG001 (a new RQ's shape)
        return 0

    monkeypatch.setattr(SimpleWorker, "get_heartbeat_ttl", get_heartbeat_ttl)
    with pytest.raises(RQInterfaceChanged, match=r"SimpleWorker\.get_heartbeat_ttl"):
        check_rq_interface()
    with pytest.raises(RQInterfaceChanged):
        SeqattrWorker(["q"], model_cache=None)  # type: ignore[arg-type]


def test_a_caller_that_stops_asking_for_the_ttl_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def maintain_heartbeats(self: BaseWorker, job: Job) -> None:  # noqa: ARG001
        return None

    monkeypatch.setattr(BaseWorker, "maintain_heartbeats", maintain_heartbeats)
    monkeypatch.setattr(SimpleWorker, "maintain_heartbeats", maintain_heartbeats, raising=False)
    with pytest.raises(RQInterfaceChanged, match="maintain_heartbeats no longer calls get_heartbeat_ttl"):
        check_rq_interface()
    assert inspect.signature(maintain_heartbeats)  # the stand-in itself is well-formed
