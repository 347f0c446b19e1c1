"""Shared test setup: offline Hugging Face, tiny models built once per session, the `gpu` marker."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.tiny_models import build_tiny_models, write_registry  # noqa: E402

pytest_plugins = ["tests.stack_fixtures"]
"""The real stack's fixtures (Redis, the API, a worker), shared by every folder that asks for them."""


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:  # noqa: ARG001
    """Tests marked `gpu` are skipped where CUDA is not available."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-init models (id -> save_pretrained folder), built once per session."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_registry(tiny_models: dict[str, Path]) -> Path:
    """A model registry TOML listing every tiny model (absolute paths)."""
    root = next(iter(tiny_models.values())).parent
    return write_registry(root, tiny_models)
