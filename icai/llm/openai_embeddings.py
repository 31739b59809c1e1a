"""Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint, so an API-only install can cluster.

`icai.embed.get_embedder("openai/text-embedding-3-small")` (the OpenAI API, $OPENAI_API_KEY)
or with a `base_url` any compatible server (vLLM `--task embed`, llama.cpp `--embeddings`,
Ollama). Needs only the `openai` extra.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from icai.llm.base import ConfigError, LLMError, require_packages
from icai.llm.http_errors import redact

_LOCAL_SERVER_KEY = "not-needed"


class OpenAIEmbedder:
    """Unit-length embeddings from an OpenAI-compatible server, `batch_size` texts a request.

    Transient failures are retried by the SDK (`max_retries`); a failure after those is
    raised as LLMError, never turned into a vector.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        batch_size: int = 256,
        max_retries: int = 5,
    ) -> None:
        require_packages(f"the embedder openai/{model}", ["openai"], extra="openai")
        import openai

        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise ConfigError(
                    f"the embedder openai/{model} needs an API key: set OPENAI_API_KEY, or set OPENAI_BASE_URL "
                    "to an OpenAI-compatible server"
                )
            key = _LOCAL_SERVER_KEY
        self.model = model
        self.name = f"openai/{model}"
        self.base_url = base_url
        self.batch_size = max(1, batch_size)
        self._secret = "" if key == _LOCAL_SERVER_KEY else key
        self._client: Any = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"OpenAIEmbedder({self.model!r}{where})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows += self._embed(list(texts[start : start + self.batch_size]))
        vectors = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)

    def _embed(self, batch: list[str]) -> list[list[float]]:
        import openai

        try:
            response = self._client.embeddings.create(model=self.model, input=batch)
        except openai.OpenAIError as exc:
            raise LLMError(f"{self.name}: embedding {len(batch)} texts failed: {redact(str(exc), self._secret)}") from None
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(batch):
            raise LLMError(f"{self.name}: the server returned {len(data)} embeddings for {len(batch)} texts")
        return [list(d.embedding) for d in data]
