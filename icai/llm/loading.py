"""Loading a local model with transformers: device and dtype, tokenizer and weights, through the converted-weights cache."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icai.errors import ConfigError
from icai.llm.converted import WEIGHTS_FILE, converted_folder, save_converted

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for forward passes, and how this transformers version wants to be called."""

    tokenizer: Any
    model: Any
    device: Any
    loaded_from: Path
    """The folder or file the weights were read from."""
    cache_keyword: str = "past_key_values"
    """The forward keyword that takes the KV cache."""
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra forward keywords: compute the logits of the last position only, where supported."""


def load_model(
    folder: Path,
    gguf_file: str | None,
    *,
    label: str,
    device: str = "auto",
    dtype: str = "auto",
    weights_cache: bool = True,
    cache_dir: str | Path | None = None,
) -> LoadedModel:
    """Tokenizer and model on their device, from the converted copy of a GGUF when there is one.

    Args:
        folder, gguf_file: where the weights are (`icai.llm.packaged.resolve_weights`).
        label: the model spec, e.g. "local/smollm2", for log lines and errors.
        weights_cache, cache_dir: use (and write) the converted-weights cache (`icai.llm.converted`).
    """
    torch_device, torch_dtype = resolve_device_dtype(device, dtype, label=label)
    converted = converted_folder(folder, gguf_file, torch_dtype, enabled=weights_cache, cache_dir=cache_dir)
    tokenizer = model = None
    loaded_from = folder / gguf_file if gguf_file else folder
    if converted is not None and (converted / WEIGHTS_FILE).is_file():
        log.info("loading %s from converted weights in %s", label, converted)
        try:
            tokenizer, model = _from_pretrained(converted, None, torch_dtype, label=label)
            loaded_from = converted
        except ConfigError as exc:
            # A damaged copy is only a slower start: convert the GGUF again.
            log.warning("%s; converting %s again", exc, gguf_file)
    if model is None:
        log.info("loading %s on %s (%s)", label, torch_device, torch_dtype)
        tokenizer, model = _from_pretrained(folder, gguf_file, torch_dtype, label=label)
        if converted is not None:
            save_converted(model, tokenizer, converted, stem=Path(gguf_file or "").stem, label=label)
    model.to(torch_device)
    model.eval()
    loaded = LoadedModel(tokenizer, model, torch_device, loaded_from)
    params = inspect.signature(model.forward).parameters
    loaded.cache_keyword = "cache" if "cache" in params else "past_key_values"
    # Only the last position's logits are read; skip the vocabulary projection elsewhere.
    for keyword in ("logits_to_keep", "num_logits_to_keep"):
        if keyword in params:
            loaded.forward_kwargs = {keyword: 1}
            break
    return loaded


def resolve_device_dtype(device: str, dtype: str, *, label: str) -> tuple[Any, Any]:
    """The torch device and dtype that "auto" (or the names given) mean on this machine:
    cuda when available, else cpu; bfloat16 on cuda, float32 otherwise."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"{label}: unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    torch_dtype: Any = getattr(torch, dtype, None)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if torch_device.type == "cuda" else torch.float32
    elif not isinstance(torch_dtype, torch.dtype):
        raise ConfigError(f"{label}: unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return torch_device, torch_dtype


def _from_pretrained(folder: Path, gguf_file: str | None, dtype: Any, *, label: str) -> tuple[Any, Any]:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # local_files_only: nothing is ever downloaded, the files are already on disk.
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    dtype_keyword = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(folder, **kwargs)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, **{dtype_keyword: dtype}, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{label}: cannot load the model from {folder}: {exc}") from exc
    return tokenizer, model
