"""A small model run in-process with transformers; no server, no network.

This module runs the model: KV-prefix reuse, choice scoring and decoding. Finding the
weights is `icai.llm.packaged`, loading them `icai.llm.loading`, and the disk cache of
converted GGUF weights `icai.llm.converted`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from icai.llm.base import Capabilities, Completion, LLMError, Request, require_packages
from icai.llm.converted import converted_folder
from icai.llm.converted import default_cache_dir as default_cache_dir  # re-exported: its old home
from icai.llm.converted import prune_stale_copies as prune_stale_copies
from icai.llm.loading import load_model
from icai.llm.packaged import gguf_path as gguf_path
from icai.llm.packaged import resolve_weights

log = logging.getLogger(__name__)

MIN_PREFIX_TOKENS = 16
"""Shortest shared token prefix worth reusing from the last scored prompt's KV cache."""

MAX_BATCH = 32
"""Most prompt suffixes `complete_many` runs in one forward pass."""

LOCAL_CAPABILITIES = Capabilities(
    choice_logprobs=True,
    logprob_votes=True,
    branches=True,
    batching=True,
    small_model=True,
    gpu=True,
    in_process=True,
)
"""A model run in this process: log-prob votes with branched, batched scoring; small-model prompts
(every `local/` model gets them, as before capabilities existed); a GPU on a Ray worker."""


def _common_prefix(a: Any, b: Any) -> int:
    """Length of the longest common prefix of two 1-D token id tensors."""
    n = min(int(a.shape[0]), int(b.shape[0]))
    differs = (a[:n] != b[:n]).nonzero()
    return int(differs[0, 0]) if differs.numel() else n


class LocalProvider:
    """A causal LM run with transformers, loaded on first use.

    Args:
        name: "smollm2", a Hugging Face model folder, or a .gguf file path.
        device: "auto" (cuda when available, else cpu) or a torch device string.
        dtype: "auto" (bfloat16 on cuda, float32 otherwise) or a torch dtype name.
        prefix_cache: when scoring choices, reuse the KV cache of the previous prompt
            for the tokens the two prompts share (same log-probs, much less compute
            when consecutive prompts share a long prefix).
        weights_cache: save a GGUF model, once dequantised, as safetensors and load
            that copy next time (dequantising takes seconds, reading the copy well under one).
        cache_dir: where converted weights go; default `default_cache_dir()`.
        threads: CPU threads torch uses for this model's calls (set around each call);
            None: torch's default. Float sums depend on it, so equal `threads` give
            bit-identical log-probs in different processes (e.g. Ray workers).
    """

    capabilities = LOCAL_CAPABILITIES

    def __init__(
        self,
        name: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        prefix_cache: bool = True,
        weights_cache: bool = True,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.model = f"local/{name}"
        self.device = device
        self.dtype = dtype
        self.prefix_cache = prefix_cache
        self.weights_cache = weights_cache
        self.cache_dir = cache_dir
        self.threads = threads
        require_packages(f"local/{name}", ["torch", "transformers", "safetensors"], extra="local")
        self._folder, self._gguf_file = resolve_weights(name)
        if self._gguf_file:
            require_packages(f"local/{name}", ["gguf", "accelerate"], extra="local")
        # One lock for loading and for use: concurrent forward passes on CPU
        # only fight over the same cores.
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None
        self._device: Any = None
        self._forward_kwargs: dict[str, Any] = {}
        self._cache_keyword = "past_key_values"
        # The last scored prompt's token ids and its KV cache, for prefix reuse.
        self._prefix_ids: Any = None
        self._prefix_kv: Any = None
        self.loaded_from: Path | None = None
        """The folder or file the weights were read from, once loaded."""

    def __repr__(self) -> str:
        return f"LocalProvider({self.name!r}, device={self.device!r}, dtype={self.dtype!r})"

    def load(self) -> None:
        """Load the model now rather than on the first call (a worker does this once, at start)."""
        with self._lock:
            self._load()

    def forget_prefix(self) -> None:
        """Drop the stored KV prefix, so the next prompt is encoded from scratch (as on a fresh worker)."""
        with self._lock:
            self._prefix_ids = self._prefix_kv = None

    @contextlib.contextmanager
    def _torch_threads(self) -> Iterator[None]:
        import torch

        if self.threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def complete(self, request: Request) -> Completion:
        import torch

        with self._lock, self._torch_threads():
            self._load()
            with torch.inference_mode():
                if request.branches:
                    return self._branched(request)
                prompt_ids = self._encode_prompt(request)
                if request.choices:
                    return self._choose(prompt_ids, request.choices)
                return self._generate(prompt_ids, request)

    def complete_many(self, requests: Sequence[Request]) -> list[Completion]:
        """Complete several requests in order; choice requests that share a long prompt prefix
        are scored together: the prefix once, then all their suffixes in one padded forward pass.

        Log-probs equal those of one `complete` call per request (up to float rounding).
        """
        import torch

        results: list[Completion | None] = [None] * len(requests)
        with self._lock, self._torch_threads():
            self._load()
            with torch.inference_mode():
                # Group consecutive choice requests whose prompts share a prefix longer than
                # any of their remaining suffixes (e.g. one pair's prompts that differ in the rule only).
                groups: list[tuple[list[int], list[Any], int]] = []
                for i, request in enumerate(requests):
                    if request.branches:
                        results[i] = self._branched(request)
                        continue
                    if not request.choices:
                        results[i] = self._generate(self._encode_prompt(request), request)
                        continue
                    ids = self._encode_prompt(request)[0]
                    if groups:
                        members, encoded, shared = groups[-1]
                        joint = min(shared, _common_prefix(encoded[0], ids))
                        longest = max(int(e.shape[0]) for e in [*encoded, ids])
                        if (
                            members[-1] == i - 1
                            and len(members) < MAX_BATCH
                            and joint >= MIN_PREFIX_TOKENS
                            and longest - joint <= joint
                        ):
                            members.append(i)
                            encoded.append(ids)
                            groups[-1] = (members, encoded, joint)
                            continue
                    groups.append(([i], [ids], int(ids.shape[0])))
                for members, encoded, shared in groups:
                    for i, completion in zip(members, self._score_group(encoded, shared, [requests[i] for i in members]), strict=True):
                        results[i] = completion
        return [r for r in results if r is not None]

    def _branched(self, request: Request) -> Completion:
        """One call for a request with branches: the shared prompt once, the branches in padded batches."""
        if not request.choices:
            raise LLMError(f"{self.model}: a request with branches must also give choices")
        subs = [request.branch(i) for i in range(len(request.branches))]
        encoded = [self._encode_prompt(sub)[0] for sub in subs]
        shared = min(_common_prefix(encoded[0], e) for e in encoded)
        scored: list[Completion] = []
        for lo in range(0, len(subs), MAX_BATCH):
            scored += self._score_group(encoded[lo : lo + MAX_BATCH], shared, subs[lo : lo + MAX_BATCH])
        return Completion(
            text=" ".join(c.text for c in scored),
            input_tokens=sum(c.input_tokens for c in scored),
            output_tokens=len(scored),
            cached_input_tokens=sum(c.cached_input_tokens for c in scored),
            branch_logprobs=tuple(c.choice_logprobs for c in scored),
        )

    def _score_group(self, encoded: list[Any], shared: int, requests: list[Request]) -> list[Completion]:
        """Choice prompts that share their first `shared` tokens: one padded batch, or one by one
        when there is a single prompt or too short a prefix to be worth sharing."""
        if len(encoded) == 1 or shared < MIN_PREFIX_TOKENS:
            return [self._choose(e[None], r.choices) for e, r in zip(encoded, requests, strict=True)]
        return self._choose_batch(encoded, shared, requests)

    def _choose_batch(self, encoded: list[Any], shared: int, requests: list[Request]) -> list[Completion]:
        """Score prompts that share their first `shared` tokens: the prefix once, the suffixes as one batch."""
        import torch

        # Every row needs at least one token of its own to read its next-token logits from.
        start = min(shared, min(int(e.shape[0]) for e in encoded) - 1)
        _, reused, prefix_cache = self._last_logits(encoded[0][None, :start])
        cache = copy.deepcopy(prefix_cache)  # the stored prefix must stay as it is for the next call
        rows = len(encoded)
        cache.batch_repeat_interleave(rows)
        lengths = [int(e.shape[0]) - start for e in encoded]
        width = max(lengths)
        pad = self._tokenizer.pad_token_id
        pad = int(pad) if pad is not None else 0
        suffixes = torch.full((rows, width), pad, dtype=encoded[0].dtype, device=self._device)
        # The mask covers prefix and suffix; right padding sits after every real token,
        # so with causal attention no real token sees a pad either way.
        mask = torch.zeros((rows, start + width), dtype=torch.long, device=self._device)
        mask[:, :start] = 1
        for row, (e, n) in enumerate(zip(encoded, lengths, strict=True)):
            suffixes[row, :n] = e[start:]
            mask[row, start : start + n] = 1
        positions = torch.arange(start, start + width, device=self._device).expand(rows, width)
        last = torch.tensor([n - 1 for n in lengths], device=self._device)
        kwargs: dict[str, Any] = {}
        keep_keyword = next(iter(self._forward_kwargs), None)
        if keep_keyword is not None:
            # Project only the positions some row ends at, not every padded position.
            kept, index = torch.unique(last, return_inverse=True)
            kwargs[keep_keyword] = kept
        else:
            index = last
        out = self._model(
            input_ids=suffixes,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_keyword: cache},
            **kwargs,
        )
        logits = out.logits[torch.arange(rows, device=self._device), index]
        return [
            self._scores(
                logits[row],
                request.choices,
                input_tokens=int(e.shape[0]),
                reused=reused if row == 0 else start,
            )
            for row, (e, request) in enumerate(zip(encoded, requests, strict=True))
        ]

    def _load(self) -> None:
        if self._model is not None:
            return
        loaded = load_model(
            self._folder,
            self._gguf_file,
            label=self.model,
            device=self.device,
            dtype=self.dtype,
            weights_cache=self.weights_cache,
            cache_dir=self.cache_dir,
        )
        self.loaded_from = loaded.loaded_from
        self._cache_keyword, self._forward_kwargs = loaded.cache_keyword, loaded.forward_kwargs
        self._tokenizer, self._device, self._model = loaded.tokenizer, loaded.device, loaded.model

    def _converted_folder(self, dtype: Any) -> Path | None:
        """Where this model's converted copy lives in `dtype`; None when not cached."""
        return converted_folder(self._folder, self._gguf_file, dtype, enabled=self.weights_cache, cache_dir=self.cache_dir)

    def _encode_prompt(self, request: Request) -> Any:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        encoded = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        # Newer transformers return a BatchEncoding, older ones a tensor.
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit is not None and ids.shape[-1] >= limit:
            raise LLMError(f"{self.model}: the prompt has {ids.shape[-1]} tokens; the model's context is {limit}")
        return ids.to(self._device)

    def _choose(self, prompt_ids: Any, choices: tuple[str, ...]) -> Completion:
        logits, reused, _ = self._last_logits(prompt_ids)
        return self._scores(logits, choices, input_tokens=int(prompt_ids.shape[-1]), reused=reused)

    def _scores(self, logits: Any, choices: tuple[str, ...], *, input_tokens: int, reused: int) -> Completion:
        import torch

        logprobs = torch.log_softmax(logits.float(), dim=-1)
        scores: dict[str, float] = {}
        for choice in choices:
            best = -math.inf
            for variant in (choice, " " + choice):
                ids = self._tokenizer(variant, add_special_tokens=False)["input_ids"]
                if ids:
                    best = max(best, float(logprobs[ids[0]]))
            scores[choice] = best
        text = max(scores, key=scores.__getitem__)
        return Completion(
            text=text,
            input_tokens=input_tokens,
            output_tokens=1,
            cached_input_tokens=reused,
            choice_logprobs=scores,
        )

    def _last_logits(self, prompt_ids: Any) -> tuple[Any, int, Any]:
        """Next-token logits after the prompt, how many prompt tokens came from the KV cache, and the cache.

        Consecutive vote prompts differ only in the rule at the end, so the
        previous prompt's cache is cropped to the shared prefix and only the
        remaining tokens are run.
        """
        ids = prompt_ids[0]
        start, cache = 0, None
        if self.prefix_cache and self._prefix_ids is not None:
            shared = min(_common_prefix(self._prefix_ids, ids), int(ids.shape[0]) - 1)
            if shared >= MIN_PREFIX_TOKENS:
                start, cache = shared, self._prefix_kv
                surplus = int(self._prefix_ids.shape[0]) - shared
                if surplus > 0:
                    # A negative count removes tokens from the end in every transformers
                    # version; a positive one means "keep" in 4.x and is refused in 5.x.
                    cache.crop(-surplus)
        # Forget the cache until the forward pass succeeds: a failure midway leaves it inconsistent.
        self._prefix_ids = self._prefix_kv = None
        if cache is None:
            cache_kwargs = self._new_cache()
        else:
            cache_kwargs = {self._cache_keyword: cache}
        out = self._model(input_ids=prompt_ids[:, start:], use_cache=True, **cache_kwargs, **self._forward_kwargs)
        if self.prefix_cache:
            self._prefix_ids, self._prefix_kv = ids, cache_kwargs[self._cache_keyword]
        return out.logits[0, -1], start, cache_kwargs[self._cache_keyword]

    def _generate(self, prompt_ids: Any, request: Request) -> Completion:
        import torch

        eos = self._eos_ids()
        max_new = request.max_tokens
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit is not None:
            max_new = min(max_new, limit - int(prompt_ids.shape[-1]))
        generator = None
        if request.temperature > 0:
            generator = torch.Generator(device=self._device)
            generator.manual_seed(request.seed if request.seed is not None else 0)

        # A plain decode loop rather than model.generate: generate takes no
        # torch.Generator, and seeding the global RNG would leak into other code.
        # The prompt is prefilled like a scored one, reusing the previous prompt's KV
        # prefix (samples of one prompt, or prompts that share their instructions).
        prompt_len = int(prompt_ids.shape[-1])
        logits, reused, cache = self._last_logits(prompt_ids)
        stored = self._prefix_ids
        self._prefix_ids = self._prefix_kv = None  # decoding extends the cache; kept once cropped back
        new_tokens: list[int] = []
        for step in range(max_new):
            if step:
                out = self._model(
                    input_ids=torch.tensor([[new_tokens[-1]]], device=self._device),
                    use_cache=True,
                    **{self._cache_keyword: cache},
                    **self._forward_kwargs,
                )
                logits = out.logits[0, -1]
            if generator is None:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits.float() / request.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            if token in eos:
                break
            new_tokens.append(token)
        if stored is not None:
            extra = int(cache.get_seq_length()) - prompt_len
            if extra > 0:
                cache.crop(-extra)
            self._prefix_ids, self._prefix_kv = stored, cache
        text = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Completion(
            text=text, input_tokens=prompt_len, output_tokens=len(new_tokens), cached_input_tokens=reused
        )

    def _new_cache(self) -> dict[str, Any]:
        """A fresh KV cache, under the keyword this transformers version expects."""
        from transformers import DynamicCache

        try:
            cache = DynamicCache(config=self._model.config)
        except TypeError:  # transformers < 4.56
            cache = DynamicCache()
        return {self._cache_keyword: cache}

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        configured = getattr(self._model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(i) for i in configured)
        if self._tokenizer.eos_token_id is not None:
            ids.add(int(self._tokenizer.eos_token_id))
        return ids
