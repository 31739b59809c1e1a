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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icai.llm.base import Capabilities, Completion, ConfigError, LLMError, Request, require_packages
from icai.llm.converted import converted_folder
from icai.llm.converted import prune_stale_copies as prune_stale_copies
from icai.llm.loading import load_model, resolve_device_dtype
from icai.llm.packaged import gguf_path as gguf_path
from icai.llm.packaged import resolve_weights

log = logging.getLogger(__name__)

MIN_PREFIX_TOKENS = 16
"""Shortest shared token prefix worth reusing from the last scored prompt's KV cache."""

MAX_BATCH = 32
"""Most prompt suffixes one branched request, or a run of choice requests, runs in one forward pass."""

CPU_TOKEN_BUDGET = 1
"""Default `token_budget` on a CPU: one request per pass, as before batching. Measured on the 2-core
development machine with it to itself, 65,536 voted at 0.77-0.79x and 36,000 at 0.93x the one-pair
rate (bench/results/batch_pairs_cpu_quiet.json, batch_pairs_cpu_quiet8.json); shared with other
jobs (load average 7-10), 65,536 voted at 2.61x (batch_pairs_cpu.json). Pass
`token_budget=65_536` for a CPU that other work keeps busy."""

GPU_TOKEN_BUDGET = 262_144
"""Default `token_budget` on a GPU: a few dozen pairs' branches in one pass (about 6 GB of
bfloat16 KV cache for the packaged 135M model)."""

LOCAL_CAPABILITIES = Capabilities(
    choice_logprobs=True,
    logprob_votes=True,
    branches=True,
    batching=True,
    small_model=True,
    gpu=True,
    in_process=True,
    embedding_votes=True,
)
"""A model run in this process: small-model prompts (every `local/` model gets them, as before capabilities
existed); `--vote-mode auto` votes by MiniLM similarity, not by the model (`embedding_votes`: the variant
bench/offline_default.py chose, bench/results/offline_default.json), and `--vote-mode logprob` by branched,
batched log-prob scoring; a GPU on a Ray worker."""


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
        dtype: "auto" (bfloat16 on cuda, float32 otherwise) or a torch dtype name. Any dtype
            but float32 is named in `model` ("local/smollm2@bfloat16"), as a spec may name it.
        prefix_cache: when scoring choices, reuse the KV cache of the previous prompt
            for the tokens the two prompts share (same log-probs, much less compute
            when consecutive prompts share a long prefix).
        weights_cache: save a GGUF model, once dequantised, as safetensors and load
            that copy next time (dequantising takes seconds, reading the copy well under one).
        cache_dir: where converted weights go; default `default_cache_dir()`.
        threads: CPU threads torch uses for this model's calls (set around each call);
            None: torch's default. Float sums depend on it, so equal `threads` give
            bit-identical log-probs in different processes (e.g. Ray workers).
        token_budget: in `complete_many`, how many tokens one padded forward pass may hold
            (rows x padded context, cached prefix included): consecutive branched requests
            (several pairs, each with its principle branches) and consecutive generation
            requests (several prompts decoded together) are packed up to it. A request that
            alone exceeds it still runs, by itself. None: `CPU_TOKEN_BUDGET` or
            `GPU_TOKEN_BUDGET` by device; 1: one request per pass.
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
        token_budget: int | None = None,
    ) -> None:
        if token_budget is not None and token_budget < 1:
            raise ConfigError(f"local/{name}: token_budget must be at least 1, not {token_budget}")
        self.name = name
        self.model = f"local/{name}"
        self.device = device
        self.dtype = dtype
        self.prefix_cache = prefix_cache
        self.weights_cache = weights_cache
        self.cache_dir = cache_dir
        self.threads = threads
        self.token_budget = token_budget
        self.forward_passes = 0
        """Forward passes run so far (prefill, scoring and decoding steps alike)."""
        require_packages(f"local/{name}", ["torch", "transformers", "safetensors"], extra="local")
        _, resolved = resolve_device_dtype(device, dtype, label=self.model)
        self.resolved_dtype = str(resolved).removeprefix("torch.")
        """The dtype the weights run in here ("auto": bfloat16 on a GPU, float32 otherwise)."""
        if self.resolved_dtype != "float32":
            # Answers depend on the dtype: it is part of the model string, so cache keys and run
            # fingerprints never mix two dtypes' answers (e.g. a run resumed on another machine).
            self.model = f"local/{name}@{self.resolved_dtype}"
        self.worker_options = {"dtype": self.resolved_dtype}
        """What a worker (`icai.executor`) must be given to answer as this provider does."""
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
        """Complete several requests in order, sharing forward passes where the prompts allow.

        - Consecutive branched requests (a pair with its principles as branches, in one order)
          are packed up to `token_budget`: their shared prompts in one padded pass, then all
          their branches in one more.
        - Consecutive generation requests are decoded together, up to `token_budget`.
        - Consecutive choice requests that share a long prompt prefix are scored together:
          the prefix once, then all their suffixes in one padded forward pass.

        Log-probs equal those of one `complete` call per request up to float rounding, and
        greedy or seeded generations the same text (`tests/test_batched_pairs.py`).
        """
        import torch

        results: list[Completion | None] = [None] * len(requests)
        with self._lock, self._torch_threads():
            self._load()
            with torch.inference_mode():
                for kind, run in _runs(requests):
                    if kind == "branched":
                        self._complete_branched_run(requests, run, results)
                    elif kind == "generate":
                        self._complete_generate_run(requests, run, results)
                    else:
                        self._complete_choice_run(requests, run, results)
        return [r for r in results if r is not None]

    def _budget(self) -> int:
        if self.token_budget is not None:
            return self.token_budget
        return GPU_TOKEN_BUDGET if self._device is not None and self._device.type == "cuda" else CPU_TOKEN_BUDGET

    def _complete_branched_run(self, requests: Sequence[Request], run: list[int], results: list[Completion | None]) -> None:
        """Pack consecutive branched requests into groups that fit the token budget; one pass pair each."""
        budget = self._budget()
        group: list[_Branches] = []
        members: list[int] = []
        rows = prefix = width = 0
        for i in run:
            item = self._encode_branches(requests[i])
            item_width = max(int(e.shape[0]) for e in item.encoded) - item.start
            grown = (rows + len(item.encoded)) * (max(prefix, item.start) + max(width, item_width))
            if group and grown > budget:
                self._flush_branched(group, members, results)
                group, members, rows, prefix, width = [], [], 0, 0, 0
            group.append(item)
            members.append(i)
            rows += len(item.encoded)
            prefix, width = max(prefix, item.start), max(width, item_width)
        if group:
            self._flush_branched(group, members, results)

    def _flush_branched(self, group: list[_Branches], members: list[int], results: list[Completion | None]) -> None:
        if len(group) == 1:
            results[members[0]] = self._branched_encoded(group[0])
            return
        for i, completion in zip(members, self._branched_batch(group), strict=True):
            results[i] = completion

    def _complete_generate_run(self, requests: Sequence[Request], run: list[int], results: list[Completion | None]) -> None:
        """Decode consecutive generation requests together, in groups that fit the token budget."""
        budget = self._budget()
        group: list[tuple[Request, Any]] = []
        members: list[int] = []
        longest = new = 0
        for i in run:
            ids = self._encode_prompt(requests[i])
            grown = (len(group) + 1) * (max(longest, int(ids.shape[-1])) + max(new, requests[i].max_tokens))
            if group and (grown > budget or len(group) >= MAX_BATCH):
                self._flush_generate(group, members, results)
                group, members, longest, new = [], [], 0, 0
            group.append((requests[i], ids))
            members.append(i)
            longest, new = max(longest, int(ids.shape[-1])), max(new, requests[i].max_tokens)
        if group:
            self._flush_generate(group, members, results)

    def _flush_generate(self, group: list[tuple[Request, Any]], members: list[int], results: list[Completion | None]) -> None:
        if len(group) == 1:
            request, ids = group[0]
            results[members[0]] = self._generate(ids, request)
            return
        for i, completion in zip(members, self._generate_batch(group), strict=True):
            results[i] = completion

    def _complete_choice_run(self, requests: Sequence[Request], run: list[int], results: list[Completion | None]) -> None:
        # Group consecutive choice requests whose prompts share a prefix longer than
        # any of their remaining suffixes (e.g. one pair's prompts that differ in the rule only).
        groups: list[tuple[list[int], list[Any], int]] = []
        for i in run:
            ids = self._encode_prompt(requests[i])[0]
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

    def _branched(self, request: Request) -> Completion:
        """One call for a request with branches: the shared prompt once, the branches in padded batches."""
        return self._branched_encoded(self._encode_branches(request))

    def _encode_branches(self, request: Request) -> _Branches:
        if not request.choices:
            raise LLMError(f"{self.model}: a request with branches must also give choices")
        subs = [request.branch(i) for i in range(len(request.branches))]
        encoded = [self._encode_prompt(sub)[0] for sub in subs]
        shared = min(_common_prefix(encoded[0], e) for e in encoded)
        # Every row needs at least one token of its own to read its next-token logits from.
        start = min(shared, min(int(e.shape[0]) for e in encoded) - 1)
        return _Branches(subs, encoded, shared, start)

    def _branched_encoded(self, item: _Branches) -> Completion:
        scored: list[Completion | None] = [None] * len(item.subs)
        for chunk in _length_chunks([int(e.shape[0]) for e in item.encoded], MAX_BATCH):
            completions = self._score_group([item.encoded[i] for i in chunk], item.shared, [item.subs[i] for i in chunk])
            for i, completion in zip(chunk, completions, strict=True):
                scored[i] = completion
        return _joined([c for c in scored if c is not None])

    def _branched_batch(self, group: list[_Branches]) -> list[Completion]:
        """Several branched requests in two forward passes: their shared prompts as one padded
        batch, then every branch of every request as one padded batch over those prompts' KV."""
        import torch

        pad = self._pad_id()
        dtype = group[0].encoded[0].dtype
        longest_prefix = max(item.start for item in group)
        prefixes = torch.full((len(group), longest_prefix), pad, dtype=dtype, device=self._device)
        prefix_mask = torch.zeros((len(group), longest_prefix), dtype=torch.long, device=self._device)
        for k, item in enumerate(group):
            prefixes[k, : item.start] = item.encoded[0][: item.start]
            prefix_mask[k, : item.start] = 1
        cache = self._new_cache()[self._cache_keyword]
        # Right padding: no real prompt token sees a pad (causal), and the suffix pass masks them.
        self._forward(
            input_ids=prefixes, attention_mask=prefix_mask, use_cache=True, **{self._cache_keyword: cache}, **self._forward_kwargs
        )
        owners = [k for k, item in enumerate(group) for _ in item.encoded]
        cache.reorder_cache(torch.tensor(owners, device=self._device))  # each row gets its request's prompt KV
        encoded = [e for item in group for e in item.encoded]
        starts = [group[k].start for k in owners]
        lengths = [int(e.shape[0]) - start for e, start in zip(encoded, starts, strict=True)]
        rows, width = len(encoded), max(lengths)
        suffixes = torch.full((rows, width), pad, dtype=dtype, device=self._device)
        mask = torch.zeros((rows, longest_prefix + width), dtype=torch.long, device=self._device)
        positions = torch.zeros((rows, width), dtype=torch.long, device=self._device)
        steps = torch.arange(width, device=self._device)
        for row, (e, start, n) in enumerate(zip(encoded, starts, lengths, strict=True)):
            suffixes[row, :n] = e[start:]
            mask[row, :start] = 1
            mask[row, longest_prefix : longest_prefix + n] = 1
            positions[row] = start + steps
        logits = self._rows_logits(
            [n - 1 for n in lengths],
            input_ids=suffixes,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_keyword: cache},
        )
        subs = [sub for item in group for sub in item.subs]
        firsts = {sum(len(item.encoded) for item in group[:k]) for k in range(len(group))}
        scored = [
            self._scores(logits[row], sub.choices, input_tokens=int(e.shape[0]), reused=0 if row in firsts else start)
            for row, (e, sub, start) in enumerate(zip(encoded, subs, starts, strict=True))
        ]
        out, offset = [], 0
        for item in group:
            out.append(_joined(scored[offset : offset + len(item.encoded)]))
            offset += len(item.encoded)
        return out

    def _rows_logits(self, last: list[int], **inputs: Any) -> Any:
        """One forward pass; the logits at position `last[row]` of each row.

        The output head (the vocabulary projection, a fifth of the packaged model's weights) runs
        on those positions only: a hook hands it one hidden state per row."""
        import torch

        rows = torch.arange(len(last), device=self._device)
        at = torch.tensor(last, device=self._device)
        head = self._model.get_output_embeddings()
        if head is None:
            return self._forward(**inputs).logits[rows, at]

        def one_per_row(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (args[0][rows, at][:, None], *args[1:])

        handle = head.register_forward_pre_hook(one_per_row)
        try:
            # 0 keeps every position up to the head, where the hook picks one per row.
            out = self._forward(**inputs, **dict.fromkeys(self._forward_kwargs, 0))
        finally:
            handle.remove()
        return out.logits[:, 0]

    def _pad_id(self) -> int:
        pad = self._tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def _forward(self, **inputs: Any) -> Any:
        self.forward_passes += 1
        return self._model(**inputs)

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
        rows = len(encoded)
        lengths = [int(e.shape[0]) - start for e in encoded]
        width = max(lengths)
        suffixes = torch.full((rows, width), self._pad_id(), dtype=encoded[0].dtype, device=self._device)
        for row, (e, n) in enumerate(zip(encoded, lengths, strict=True)):
            suffixes[row, :n] = e[start:]
        positions = torch.arange(start, start + width, device=self._device).expand(rows, width)
        last = [n - 1 for n in lengths]
        cache = copy.deepcopy(prefix_cache)  # the stored prefix must stay as it is for the next call
        cache.batch_repeat_interleave(rows)
        # The mask covers prefix and suffix; right padding sits after every real token,
        # so with causal attention no real token sees a pad either way.
        mask = torch.zeros((rows, start + width), dtype=torch.long, device=self._device)
        mask[:, :start] = 1
        for row, n in enumerate(lengths):
            mask[row, start : start + n] = 1
        logits = self._rows_logits(
            last,
            input_ids=suffixes,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_keyword: cache},
        )
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
        out = self._forward(input_ids=prompt_ids[:, start:], use_cache=True, **cache_kwargs, **self._forward_kwargs)
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
                out = self._forward(
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

    def _generate_batch(self, group: list[tuple[Request, Any]]) -> list[Completion]:
        """Decode several prompts together: one padded prefill, then one forward pass per step for
        every row still decoding. Each row stops, samples and is seeded as `_generate` would."""
        import torch

        pad = self._pad_id()
        eos = self._eos_ids()
        limit = getattr(self._model.config, "max_position_embeddings", None)
        lengths = [int(ids.shape[-1]) for _, ids in group]
        longest = max(lengths)
        rows = len(group)
        # Samples of one prompt (proposals) are prefilled once and share its KV cache.
        unique: dict[tuple[int, ...], int] = {}
        owners = [unique.setdefault(tuple(ids[0].tolist()), len(unique)) for _, ids in group]
        firsts = [owners.index(u) for u in range(len(unique))]
        prompts = torch.full((len(unique), longest), pad, dtype=group[0][1].dtype, device=self._device)
        prefill_mask = torch.zeros((len(unique), longest), dtype=torch.long, device=self._device)
        for u, row in enumerate(firsts):
            prompts[u, : lengths[row]] = group[row][1][0]
            prefill_mask[u, : lengths[row]] = 1
        budgets, generators = [], []
        for (request, _), n in zip(group, lengths, strict=True):
            budgets.append(min(request.max_tokens, limit - n) if limit is not None else request.max_tokens)
            generator = None
            if request.temperature > 0:
                generator = torch.Generator(device=self._device)
                generator.manual_seed(request.seed if request.seed is not None else 0)
            generators.append(generator)
        cache = self._new_cache()[self._cache_keyword]
        logits = self._rows_logits(
            [lengths[row] - 1 for row in firsts],
            input_ids=prompts,
            attention_mask=prefill_mask,
            use_cache=True,
            **{self._cache_keyword: cache},
        )
        index = torch.tensor(owners, device=self._device)
        if len(unique) < rows:
            cache.reorder_cache(index)
            logits = logits[index]
        mask = prefill_mask[index]
        new_tokens: list[list[int]] = [[] for _ in group]
        active = [budget > 0 for budget in budgets]
        positions = torch.tensor(lengths, device=self._device)
        for step in range(max(budgets)):
            if step:
                fed = [new_tokens[row][-1] if new_tokens[row] else pad for row in range(rows)]
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=self._device)], dim=1)
                out = self._forward(
                    input_ids=torch.tensor(fed, device=self._device)[:, None],
                    attention_mask=mask,
                    position_ids=(positions + step - 1)[:, None],
                    use_cache=True,
                    **{self._cache_keyword: cache},
                    **self._forward_kwargs,
                )
                logits = out.logits[:, -1]
            for row, ((request, _), generator) in enumerate(zip(group, generators, strict=True)):
                if not active[row]:
                    continue
                if generator is None:
                    token = int(torch.argmax(logits[row]))
                else:
                    probs = torch.softmax(logits[row].float() / request.temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                if token in eos:
                    active[row] = False
                    continue
                new_tokens[row].append(token)
                if len(new_tokens[row]) >= budgets[row]:
                    active[row] = False
            if not any(active):
                break
        shared = set(range(rows)) - set(firsts)
        return [
            Completion(
                text=self._tokenizer.decode(tokens, skip_special_tokens=True),
                input_tokens=n,
                output_tokens=len(tokens),
                cached_input_tokens=n if row in shared else 0,
            )
            for row, (tokens, n) in enumerate(zip(new_tokens, lengths, strict=True))
        ]

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


@dataclass
class _Branches:
    """A branched request, encoded: its unbranched requests, their token ids, and the prefix they share."""

    subs: list[Request]
    encoded: list[Any]
    shared: int
    start: int
    """Tokens of the shared prefix computed once (each branch keeps at least one of its own)."""


def _joined(scored: list[Completion]) -> Completion:
    """The completion of a branched request, from its branches' completions in order."""
    return Completion(
        text=" ".join(c.text for c in scored),
        input_tokens=sum(c.input_tokens for c in scored),
        output_tokens=len(scored),
        cached_input_tokens=sum(c.cached_input_tokens for c in scored),
        branch_logprobs=tuple(c.choice_logprobs for c in scored),
    )


def _length_chunks(lengths: Sequence[int], most: int) -> list[list[int]]:
    """Indices of `lengths` in as few chunks of at most `most` as fit, shortest first and of equal
    size, so that each padded pass pads its rows only to the longest of similar lengths.

    40 branches by 32 at most: two passes of 20 (sorted) rather than 32 and 8 (in order); with the
    output head on one position per row, 1.13x the previous one-pair vote rate on the 2-core CPU,
    same votes (bench/results/vote_bound_cpu.json)."""
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    size = math.ceil(len(order) / math.ceil(len(order) / most))
    return [order[lo : lo + size] for lo in range(0, len(order), size)]


def _runs(requests: Sequence[Request]) -> list[tuple[str, list[int]]]:
    """Maximal runs of consecutive requests of one kind: "branched", "choice" or "generate"."""
    runs: list[tuple[str, list[int]]] = []
    for i, request in enumerate(requests):
        kind = "branched" if request.branches else "choice" if request.choices else "generate"
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(i)
        else:
            runs.append((kind, [i]))
    return runs
