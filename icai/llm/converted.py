"""The disk cache of converted weights: a GGUF model, once dequantised, kept as a safetensors folder.

Dequantising a GGUF takes seconds; reading the saved copy well under one. The folder name is
the cache key (GGUF size and mtime, transformers version, dtype), and a new copy prunes the
stale ones of the same model and dtype.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


def default_cache_dir() -> Path:
    """$ICAI_CACHE_DIR, else $XDG_CACHE_HOME/icai, else ~/.cache/icai."""
    configured = os.environ.get("ICAI_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "icai"


def converted_folder(
    folder: Path, gguf_file: str | None, dtype: Any, *, enabled: bool = True, cache_dir: str | Path | None = None
) -> Path | None:
    """Where the dequantised copy of a GGUF model lives; None when not cached (disabled, or not a GGUF).

    The key changes with the GGUF file (size, mtime), the transformers version
    (its conversion may change) and the dtype.
    """
    if not enabled or gguf_file is None:
        return None
    import transformers

    gguf = folder / gguf_file
    stat = gguf.stat()
    dtype_name = str(dtype).removeprefix("torch.")
    key = f"{gguf.stem}-{stat.st_size}-{stat.st_mtime_ns}-transformers{transformers.__version__}-{dtype_name}"
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "models" / key


def save_converted(model: Any, tokenizer: Any, folder: Path, *, stem: str, label: str) -> None:
    """Write the loaded model as a plain safetensors folder, atomically; failure only logs."""
    from safetensors.torch import save_model

    tmp: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        # save_pretrained refuses gguf-loaded models; the weights are already
        # dequantised, so the config without its quantization entry describes them.
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # save_model, unlike save_file, drops tied duplicates (lm_head = embed_tokens).
        save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / WEIGHTS_FILE).is_file():
                raise
            # Another process finished the same conversion first.
        else:
            tmp = None
            log.info("saved converted weights of %s to %s", label, folder)
            prune_stale_copies(folder, stem=stem, dtype=folder.name.rsplit("-", 1)[-1])
    except OSError as exc:
        log.warning("%s: cannot save converted weights to %s: %s", label, folder, exc)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def prune_stale_copies(folder: Path, stem: str, dtype: str) -> list[Path]:
    """Delete older converted copies of the same GGUF in the same dtype; returns what was removed.

    Converted folders are named `<gguf stem>-<size>-<mtime_ns>-transformers<version>-<dtype>`: a
    reinstalled package or a new transformers makes a new key, and each copy is ~0.5 GB. Copies in
    another dtype (a GPU's bfloat16 beside the CPU's float32) and folders being written (".name") stay.
    """
    key = re.compile(rf"{re.escape(stem)}-\d+-\d+-transformers[^/]+-{re.escape(dtype)}")
    removed = []
    for sibling in folder.parent.iterdir():
        if sibling == folder or not sibling.is_dir():
            continue
        if key.fullmatch(sibling.name) and (sibling / WEIGHTS_FILE).is_file():
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    if removed:
        log.info("removed %d stale converted copies: %s", len(removed), ", ".join(p.name for p in removed))
    return removed
