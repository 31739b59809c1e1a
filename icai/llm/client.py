"""The one wrapper every provider goes through: cache, retries, concurrency, usage."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import cast

from icai.errors import BudgetExceeded, ConfigError, LLMError, TransientError
from icai.executor import DEFAULT_SHARD_SIZE, Executor, LocalExecutor, WorkerRecipe, cut_shards
from icai.llm.base import (
    BatchingProvider,
    Capabilities,
    Completion,
    InProcessProvider,
    Provider,
    Request,
    capabilities_of,
)
from icai.llm.cache import ResponseCache
from icai.llm.prices import Price, estimate_tokens

log = logging.getLogger(__name__)


CACHE_FLUSH_CALLS = 512
"""`LLM.map` writes its completions to the cache in one transaction per this many."""
CACHE_FLUSH_S = 2.0
"""... or at least this often, so a stopped run loses at most a few seconds of answers."""


class _CacheWrites:
    """Completions waiting to be written to the cache together (thread-safe).

    A batch is written once it holds `CACHE_FLUSH_CALLS` completions or `CACHE_FLUSH_S` seconds after its
    first one arrived (a timer thread, so answers are committed while the run waits on slow calls).
    """

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self._rows: list[tuple[str, str, Completion]] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._timer: threading.Timer | None = None

    def add(self, key: str, model: str, completion: Completion) -> None:
        with self._lock:
            self._rows.append((key, model, completion))
            due = len(self._rows) >= CACHE_FLUSH_CALLS
            if not due and self._timer is None:
                self._timer = threading.Timer(CACHE_FLUSH_S, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if due:
            self.flush()

    def flush(self) -> None:
        with self._writing:  # a timer's write in progress ends before the final flush returns
            with self._lock:
                rows, self._rows = self._rows, []
                timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            self.cache.put_many(rows)


@dataclass
class Usage:
    calls: int = 0
    """Requests that reached the provider and succeeded."""
    cache_hits: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _log_ends(desc: str, done: int, total: int) -> None:
    """What `LLM.map` reports without an observer: "<desc>: k/n calls" at INFO as it starts and ends."""
    if done in (0, total):
        log.info("%s: %d/%d calls", desc, done, total)


class LLM:
    """A provider wrapped with a response cache, retries, a thread pool and usage counters.

    Args:
        provider: the object that talks to the model.
        cache: where completed responses are committed; None disables caching.
        max_attempts: attempts per request before the run stops with LLMError.
        backoff_initial: seconds before the first retry of a failure without Retry-After;
            the wait doubles (with as much jitter) up to `backoff_max`.
        concurrency: threads used by `map`.
        batch_size: for a provider with `Capabilities.batching`, how many uncached
            requests `map` sends to it at once.
        executor: where `map` runs its shards (`icai.executor`); default in this process.
        recipe: how a remote worker rebuilds this LLM's provider (set by `get_llm`;
            needed by a Ray executor).
        shard_size: about how many uncached requests go in one shard.
        max_calls: stop before making more than this many provider calls.
        price: the model's price, for `cost_usd` and `max_cost`; None when unknown.
        max_cost: stop before a call could take the spend above this many USD
            (the call's prompt at ~4 characters a token plus its `max_tokens`).
        progress: where no `observer` is set, log a line as each `map` with a desc starts and ends (the CLI sets
            an observer from `icai.progress`: a live bar on a terminal, plain lines otherwise).
    """

    def __init__(
        self,
        provider: Provider,
        *,
        cache: ResponseCache | None = None,
        max_attempts: int = 6,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        concurrency: int = 1,
        max_calls: int | None = None,
        price: Price | None = None,
        max_cost: float | None = None,
        progress: bool = True,
        batch_size: int = 32,
        executor: Executor | None = None,
        recipe: WorkerRecipe | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
    ) -> None:
        if max_cost is not None and price is None:
            raise ConfigError(
                f"no price is known for {provider.model}, so a cost budget cannot be kept; "
                "use --max-calls, or state its price with --price IN,OUT"
            )
        self.provider = provider
        self.cache = cache
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.concurrency = max(1, concurrency)
        self.max_calls = max_calls
        self.price = price
        self.max_cost = max_cost
        self.progress = progress
        self.batch_size = max(1, batch_size)
        self.executor: Executor = executor if executor is not None else LocalExecutor()
        self.recipe = recipe
        self.shard_size = max(1, shard_size)
        self.usage = Usage()
        self.observer: Callable[[str, int, int], None] | None = None
        """Told (desc, requests done, requests in all) as each `map` with a desc starts and
        progresses (e.g. `icai.progress.RunProgress`: stages done / total and an ETA)."""
        self._lock = threading.Lock()
        self._reserved = 0
        self._spent = 0.0
        self._committed = 0.0
        """Upper bounds of the calls in flight, held against max_cost."""

    @property
    def cost_usd(self) -> float | None:
        """USD spent on provider calls so far (cache hits are free); None when the price is unknown."""
        return self._spent if self.price is not None else None

    @property
    def model(self) -> str:
        return self.provider.model

    @property
    def capabilities(self) -> Capabilities:
        """What the provider declares it can do (`icai.llm.base.Capabilities`); stages ask this."""
        return capabilities_of(self.provider)

    def __repr__(self) -> str:
        return f"LLM({self.model!r})"

    def _cache_hit(self, key: str) -> Completion | None:
        """The cached completion for `key`, counted as a hit; None when there is none."""
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            with self._lock:
                self.usage.cache_hits += 1
        return hit

    def complete(self, request: Request) -> Completion:
        key = request.cache_key(self.model)
        hit = self._cache_hit(key)
        if hit is not None:
            return hit
        bound = self._reserve_call(request)
        try:
            completion = self._call_with_retries(request)
        except BaseException:
            with self._lock:
                self._committed -= bound
            raise
        self._commit(key, request, completion, bound)
        return completion

    def _commit(
        self, key: str, request: Request, completion: Completion, bound: float, writes: _CacheWrites | None = None
    ) -> None:
        """Cache a provider's completion (at once, or in `writes`' next batch) and count it; releases its cost bound."""
        if self.cache is not None:
            if writes is None:
                self.cache.put(key, self.model, completion)
            else:
                writes.add(key, self.model, completion)
        with self._lock:
            self._committed -= bound
            self._spent += self._cost(request, completion)
            self.usage.calls += 1
            self.usage.input_tokens += completion.input_tokens
            self.usage.output_tokens += completion.output_tokens
            self.usage.cached_input_tokens += completion.cached_input_tokens

    def map(
        self, requests: Sequence[Request], *, desc: str | None = None, keys: Sequence[Hashable] | None = None
    ) -> list[Completion]:
        """Complete many requests, in order, telling `observer` (with a `desc`) as they complete.

        Cache hits are served first; the rest is cut into shards (`keys`, e.g. a
        comparison id per request, keeps one pair's requests in one shard) and run by
        `executor`: here, on `concurrency` threads or through the provider's
        `complete_many`, or on Ray workers. Each completion is cached and counted here,
        in the calling process, as soon as it arrives; the first failure is raised,
        and everything completed before it is already in the cache.
        """
        results: list[Completion | None] = [None] * len(requests)
        observer = self.observer if desc is not None else None
        if observer is None and self.progress and desc is not None:
            observer = _log_ends  # no observer set (the Python API): one log line as the map starts and ends
        done = [0]
        told = threading.Lock()  # completions arrive on worker threads; the observer hears one at a time

        def advance() -> None:
            if observer is not None:
                with told:
                    done[0] += 1
                    observer(str(desc), done[0], len(requests))

        if observer is not None:
            observer(str(desc), 0, len(requests))
        writes = _CacheWrites(self.cache) if self.cache is not None else None
        try:
            request_keys = [r.cache_key(self.model) for r in requests]
            pending: list[int] = []
            first: set[str] = set()
            duplicates: list[int] = []
            cached = self.cache.get_many(request_keys) if self.cache is not None else {}
            for i, key in enumerate(request_keys):
                hit = cached.get(key)
                if hit is not None:
                    with self._lock:
                        self.usage.cache_hits += 1
                    results[i] = hit
                    advance()
                elif self.cache is not None and key in first:
                    duplicates.append(i)  # served from the cache once its first copy is done
                else:
                    first.add(key)
                    pending.append(i)
            shard_keys = [keys[i] for i in pending] if keys is not None else pending
            shards = [[pending[j] for j in shard] for shard in cut_shards(shard_keys, self.shard_size)]
            bounds: dict[int, float] = {}
            over: list[BudgetExceeded] = []

            def dispatched() -> Iterator[list[Request]]:
                # Budgets are held per shard as it is sent, so only work in flight is reserved.
                for shard in shards:
                    allowed = []
                    for i in shard:
                        try:
                            bounds[i] = self._reserve_call(requests[i])
                        except BudgetExceeded as exc:
                            over.append(exc)
                            break
                        allowed.append(i)
                    if allowed:
                        sent.append(allowed)
                        yield [requests[i] for i in allowed]
                    if over:
                        return

            def on_result(s: int, k: int, completion: Completion) -> None:
                i = sent[s][k]
                self._commit(request_keys[i], requests[i], completion, bounds.pop(i), writes)
                results[i] = completion
                advance()

            sent: list[list[int]] = []
            try:
                remote_retries = self.executor.run(self.recipe, dispatched(), self.run_shard, on_result)
            finally:
                with self._lock:
                    self._committed -= sum(bounds.values())
                if writes is not None:
                    writes.flush()  # everything answered so far, before duplicates read it or an error leaves
            with self._lock:
                self.usage.retries += remote_retries
            if over:
                raise over[0]
            for i in duplicates:
                results[i] = self.complete(requests[i])
                advance()
        finally:
            if writes is not None:
                writes.flush()
        return [r for r in results if r is not None]

    def run_shard(self, requests: Sequence[Request], on_result: Callable[[int, Completion], None]) -> None:
        """Call the provider for every request of one shard (no cache, no budget: the caller
        holds those), reporting each completion as soon as it is done.

        A provider with `Capabilities.batching` (a local model: one forward pass for many
        prompts; threads would only queue on its lock) gets chunks of `batch_size` through
        `complete_many`; otherwise one request per call, on `concurrency` threads (one after
        another for a provider that declares no use for them, `Capabilities.threads`). An
        in-process provider's `forget_prefix` is called first, so a shard computes the same
        here as on a fresh worker.
        """
        capabilities = self.capabilities
        if capabilities.in_process:
            cast(InProcessProvider, self.provider).forget_prefix()
        if capabilities.batching:
            for offset in range(0, len(requests), self.batch_size):
                chunk = list(requests[offset : offset + self.batch_size])
                completions = self._complete_many(chunk)
                for k, request in enumerate(chunk):
                    completion = completions[k] if completions is not None else self._call_with_retries(request)
                    on_result(offset + k, completion)
        elif self.concurrency == 1 or not capabilities.threads:
            for k, request in enumerate(requests):
                on_result(k, self._call_with_retries(request))
        else:

            def one(k: int, request: Request) -> None:
                # Reported from the worker thread: calls still in flight when another
                # fails are kept too.
                on_result(k, self._call_with_retries(request))

            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                pending = {pool.submit(one, k, request) for k, request in enumerate(requests)}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        exc = fut.exception()
                        if exc is not None:
                            for other in pending:
                                other.cancel()
                            raise exc

    def _complete_many(self, requests: list[Request]) -> list[Completion] | None:
        """One `complete_many` call; None when it failed, to send each request alone with the usual retries."""
        if len(requests) < 2:
            return None
        try:
            completions = list(cast(BatchingProvider, self.provider).complete_many(requests))
        except LLMError as exc:
            log.warning("%s: a batch of %d failed (%s); sending its requests one by one", self.model, len(requests), exc)
            return None
        if len(completions) != len(requests):
            log.warning("%s: a batch of %d returned %d completions; sending one by one", self.model, len(requests), len(completions))
            return None
        return completions

    def _reserve_call(self, request: Request) -> float:
        """Count the call against the budgets; returns the cost bound held until it completes."""
        if request.branches and not self.capabilities.branches:
            raise ConfigError(f"{self.model} does not take requests with branches; send one per branch (Request.branch)")
        bound = 0.0
        if self.price is not None and self.max_cost is not None:
            bound = self.price.cost(estimate_tokens(request.prompt_text), request.max_tokens)
        with self._lock:
            if self.max_calls is not None and self._reserved >= self.max_calls:
                raise BudgetExceeded(
                    f"the call budget of {self.max_calls} calls is spent; completed calls are cached, "
                    "rerun the same command with a larger --max-calls to resume"
                )
            if self.max_cost is not None and self._spent + self._committed + bound > self.max_cost:
                raise BudgetExceeded(
                    f"the next call could take the spend above the cost budget of ${self.max_cost:g} "
                    f"(${self._spent:.4f} spent); completed calls are cached, "
                    "rerun the same command with a larger --max-cost to resume"
                )
            self._reserved += 1
            self._committed += bound
        return bound

    def _cost(self, request: Request, completion: Completion) -> float:
        if self.price is None:
            return 0.0
        # Providers that report no usage (some local servers) are charged by the estimate.
        input_tokens = completion.input_tokens or estimate_tokens(request.prompt_text)
        output_tokens = completion.output_tokens or estimate_tokens(completion.text)
        return self.price.cost(input_tokens, output_tokens)

    def _call_with_retries(self, request: Request) -> Completion:
        """`provider.complete(request)`, retried on TransientError up to `max_attempts` attempts in all.

        The wait before a retry is the error's Retry-After (at most `backoff_max`), else `backoff_initial`
        doubling with each attempt plus as much jitter, at most `backoff_max`. A call that succeeds at once
        (nearly all of them) costs nothing beyond the call: at a million pairs this loop runs two million times.
        """
        attempt = 1
        while True:
            try:
                return self.provider.complete(request)
            except TransientError as exc:
                if attempt >= self.max_attempts:
                    raise LLMError(f"{self.model}: giving up after {self.max_attempts} attempts: {exc}") from exc
                with self._lock:
                    self.usage.retries += 1
                log.warning("%s: attempt %d failed (%s); retrying", self.model, attempt, exc)
                time.sleep(self._backoff(attempt, exc))
                attempt += 1

    def _backoff(self, attempt: int, exc: TransientError) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if exc.retry_after is not None:
            return min(exc.retry_after, self.backoff_max)
        wait = self.backoff_initial * 2 ** (attempt - 1) + random.uniform(0, self.backoff_initial)
        return max(0.0, min(wait, self.backoff_max))
