"""Settings come from the environment, honour plain `REDIS_URL` / `PORT`, and fail fast and clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, get_settings
from tests.service.stack import REPO, stack_env
from workers.settings import WorkerSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "REDIS_URL",
        "PORT",
        "SEQATTR_REDIS_URL",
        "SEQATTR_PORT",
        "SEQATTR_MODELS",
        "SEQATTR_WORKER_MODELS",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_use_the_embedded_redis() -> None:
    settings = Settings()
    assert settings.embedded_redis
    assert settings.effective_redis_url == "redis://127.0.0.1:6380/0"
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)


def test_plain_redis_url_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("PORT", "9001")
    settings = Settings()
    assert not settings.embedded_redis
    assert settings.effective_redis_url == "redis://cache:6379/2"
    assert settings.port == 9001


def test_registry_files_are_split_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("")
    second.write_text("")
    monkeypatch.setenv("SEQATTR_MODELS", f"{first}:{second}")
    assert Settings().models == [first, second]
    monkeypatch.setenv("SEQATTR_MODELS", f"{first}:{tmp_path / 'missing.toml'}")
    with pytest.raises(ValidationError, match="missing.toml"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_URL", "http://localhost", "must start with"),
        ("PORT", "70000", "less than or equal"),
        ("SEQATTR_RESULT_TTL_S", "0", "greater than or equal"),
        ("SEQATTR_WORKERS", "many", "valid integer"),
    ],
)
def test_bad_values_fail_fast(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_get_settings_is_built_once() -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_worker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQATTR_WORKER_MODELS", "tiny-gpt2, tiny-t5,")
    monkeypatch.setenv("SEQATTR_PRELOAD", "1")
    monkeypatch.setenv("SEQATTR_TORCH_THREADS", "2")
    settings = WorkerSettings()
    assert settings.worker_models == ["tiny-gpt2", "tiny-t5"]
    assert settings.preload and settings.torch_threads == 2
    monkeypatch.setenv("SEQATTR_DEVICE", "tpu")
    with pytest.raises(ValidationError, match="device"):
        WorkerSettings()


def test_worker_refuses_unknown_models(tiny_registry: Path, tmp_path: Path) -> None:
    env = stack_env("redis://127.0.0.1:1/0", tiny_registry, tmp_path, SEQATTR_WORKER_MODELS="tiny-gpt2,nope")
    done = subprocess.run(
        [sys.executable, "-m", "workers"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "unknown model(s) nope" in done.stderr and "tiny-gpt2" in done.stderr
