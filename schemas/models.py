"""The model registry: which model ids exist and where their weights come from.

A registry file is TOML with one table per model:

    [models.my-model]
    path = "/srv/models/my-model"      # a folder written by `save_pretrained`

Optional keys: `is_encoder_decoder` (read from the model's config when absent), `dtype`, `gguf_package` +
`gguf_file` (weights shipped inside an installed Python package), `description`, `max_sequence_tokens`.
The built-in registry (`schemas/models.toml`) is part of the shared contract; `SEQATTR_MODELS` adds files.
The API and the workers both read the registry through `load_registry`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BUILTIN_REGISTRY = Path(__file__).resolve().parent / "models.toml"
"""The registry file that ships with the code (the default model)."""

_LEGACY_ARCHITECTURE = {"causal": False, "seq2seq": True}
"""Registry files written before `is_encoder_decoder` said `architecture = "causal" | "seq2seq"`."""


class ModelEntry(BaseModel):
    """One registry entry; `GET /v1/models` lists these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    description: str = ""
    path: str | None = Field(None, description="Folder written by save_pretrained.")
    gguf_package: str | None = Field(None, description="Installed Python package that ships a GGUF file.")
    gguf_file: str | None = None
    is_encoder_decoder: bool | None = Field(
        None, description="Encoder-decoder (seq2seq) or decoder-only; read from the model's config when null."
    )
    dtype: Literal["float32", "float16", "bfloat16", "auto"] = "float32"
    max_sequence_tokens: int | None = Field(None, ge=1)
    load_in_4bit: bool = Field(False, description="Quantize the weights to 4 bits (bitsandbytes, CUDA only).")
    load_in_8bit: bool = Field(False, description="Quantize the weights to 8 bits (bitsandbytes, CUDA only).")
    device_map: Literal["auto"] | None = Field(
        None, description='"auto": spread a model larger than one GPU over every visible GPU (accelerate).'
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if (self.path is None) == (self.gguf_package is None):
            raise ValueError(f"model {self.id!r}: give exactly one of 'path' or 'gguf_package'")
        if self.gguf_package is not None and not self.gguf_file:
            raise ValueError(f"model {self.id!r}: 'gguf_package' needs 'gguf_file'")
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError(f"model {self.id!r}: give at most one of 'load_in_4bit' or 'load_in_8bit'")
        return self


class RegistryError(ValueError):
    """A registry file is missing or malformed."""


def read_registry_file(path: Path) -> dict[str, ModelEntry]:
    """Parse one registry file; relative `path` values are resolved against the file's folder."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read model registry {path}: {exc}") from exc
    entries: dict[str, ModelEntry] = {}
    for model_id, table in (data.get("models") or {}).items():
        if not isinstance(table, dict):
            raise RegistryError(f"{path}: [models.{model_id}] must be a table")
        if table.get("architecture") in _LEGACY_ARCHITECTURE:
            table = {**table, "is_encoder_decoder": _LEGACY_ARCHITECTURE[table["architecture"]]}
            del table["architecture"]
        if table.get("path"):
            table = {**table, "path": str((path.parent / table["path"]).resolve())}
        try:
            entries[model_id] = ModelEntry(id=model_id, **table)
        except ValueError as exc:
            raise RegistryError(f"{path}: {exc}") from exc
    return entries


def load_registry(extra_files: list[Path] | None = None) -> dict[str, ModelEntry]:
    """The built-in registry plus each extra file in order; later files override earlier ids."""
    entries = read_registry_file(BUILTIN_REGISTRY)
    for path in extra_files or []:
        entries.update(read_registry_file(path))
    return entries
