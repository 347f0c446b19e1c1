"""Settings of every process (API, runner, worker) come from the environment, honour plain `REDIS_URL` /
`PORT`, share what `schemas.settings.CommonSettings` defines, and fail fast and clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.settings import ServeSettings
from schemas.settings import CommonSettings
from service.settings import ApiSettings, get_settings
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


@pytest.mark.parametrize("settings_class", [ApiSettings, ServeSettings, WorkerSettings])
def test_defaults_use_the_embedded_redis(settings_class: type[CommonSettings]) -> None:
    settings = settings_class()
    assert settings.embedded_redis
    assert settings.effective_redis_url == "redis://127.0.0.1:6380/0"
    assert settings.model_cache_dir == Path("data") / "models"


def test_runner_defaults() -> None:
    settings = ServeSettings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)


@pytest.mark.parametrize("settings_class", [ApiSettings, ServeSettings, WorkerSettings])
def test_plain_redis_url(monkeypatch: pytest.MonkeyPatch, settings_class: type[CommonSettings]) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    settings = settings_class()
    assert not settings.embedded_redis
    assert settings.effective_redis_url == "redis://cache:6379/2"


def test_plain_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9001")
    assert ServeSettings().port == 9001


def test_registry_files_are_split_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("")
    second.write_text("")
    monkeypatch.setenv("SEQATTR_MODELS", f"{first}:{second}")
    assert ApiSettings().models == [first, second]
    monkeypatch.setenv("SEQATTR_MODELS", f"{first}:{tmp_path / 'missing.toml'}")
    with pytest.raises(ValidationError, match="missing.toml"):
        WorkerSettings()


@pytest.mark.parametrize(
    ("settings_class", "name", "value", "message"),
    [
        (ApiSettings, "REDIS_URL", "http://localhost", "must start with"),
        (ServeSettings, "PORT", "70000", "less than or equal"),
        (ApiSettings, "SEQATTR_RESULT_TTL_S", "0", "greater than or equal"),
        (ServeSettings, "SEQATTR_WORKERS", "many", "valid integer"),
    ],
)
def test_bad_values_fail_fast(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[CommonSettings], name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        settings_class()


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
