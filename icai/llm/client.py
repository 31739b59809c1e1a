"""The one wrapper every provider goes through: cache, retries, concurrency, usage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tqdm.auto import tqdm

from icai.llm.base import (
    Completion,
    ConfigError,
    LLMError,
    Provider,
    Request,
    TransientError,
    supports_batching,
)
from icai.llm.cache import ResponseCache

if TYPE_CHECKING:
    from icai.cost import Price

log = logging.getLogger(__name__)


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


class BudgetExceeded(LLMError):
    """The next call would exceed --max-calls or --max-cost; work done so far is kept in the cache."""


class LLM:
    """A provider wrapped with a response cache, retries, a thread pool and usage counters.

    Args:
        provider: the object that talks to the model.
        cache: where completed responses are committed; None disables caching.
        max_attempts: attempts per request before the run stops with LLMError.
        backoff_initial: seconds before the first retry of a failure without Retry-After;
            the wait doubles (with as much jitter) up to `backoff_max`.
        concurrency: threads used by `map`.
        batch_size: with one thread and a provider that has `complete_many`, how many
            uncached requests `map` sends to it at once.
        max_calls: stop before making more than this many provider calls.
        price: the model's price, for `cost_usd` and `max_cost`; None when unknown.
        max_cost: stop before a call could take the spend above this many USD
            (the call's prompt at ~4 characters a token plus its `max_tokens`).
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
    ) -> None:
        if max_cost is not None and price is None:
            raise ConfigError(f"no price is known for {provider.model}, so a cost budget cannot be kept; use --max-calls")
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
        self.usage = Usage()
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

    def __repr__(self) -> str:
        return f"LLM({self.model!r})"

    def complete(self, request: Request) -> Completion:
        key = request.cache_key(self.model)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                with self._lock:
                    self.usage.cache_hits += 1
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

    def _commit(self, key: str, request: Request, completion: Completion, bound: float) -> None:
        """Cache a provider's completion and count it; releases its reserved cost bound."""
        if self.cache is not None:
            self.cache.put(key, self.model, completion)
        with self._lock:
            self._committed -= bound
            self._spent += self._cost(request, completion)
            self.usage.calls += 1
            self.usage.input_tokens += completion.input_tokens
            self.usage.output_tokens += completion.output_tokens
            self.usage.cached_input_tokens += completion.cached_input_tokens

    def map(self, requests: Sequence[Request], *, desc: str | None = None) -> list[Completion]:
        """Complete many requests, in order, on `concurrency` threads with a progress bar.

        The first failure cancels what has not started and is raised; every
        completion finished before it is already in the cache.
        """
        results: list[Completion | None] = [None] * len(requests)
        # disable=None: no bar when stderr is not a terminal (logs, CI, pipes)
        bar = tqdm(total=len(requests), desc=desc, unit="call", disable=True if not self.progress or desc is None else None)
        try:
            if self.concurrency == 1 and supports_batching(self.provider):
                self._map_batched(requests, results, bar)
            elif self.concurrency == 1:
                for i, req in enumerate(requests):
                    results[i] = self.complete(req)
                    bar.update(1)
            else:
                with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                    futures = {pool.submit(self.complete, req): i for i, req in enumerate(requests)}
                    pending = set(futures)
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                        for fut in done:
                            exc = fut.exception()
                            if exc is not None:
                                for other in pending:
                                    other.cancel()
                                raise exc
                            results[futures[fut]] = fut.result()
                            bar.update(1)
        finally:
            bar.close()
        return [r for r in results if r is not None]

    def _map_batched(self, requests: Sequence[Request], results: list[Completion | None], bar: tqdm) -> None:
        """`map` through the provider's `complete_many`: cache hits are served first, the rest
        go in chunks of `batch_size`, each request reserved, cached and counted as `complete` does.
        """
        keys = [r.cache_key(self.model) for r in requests]
        pending: list[int] = []
        first: dict[str, int] = {}
        duplicates: list[int] = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                with self._lock:
                    self.usage.cache_hits += 1
                results[i] = hit
                bar.update(1)
            elif self.cache is not None and key in first:
                duplicates.append(i)  # served from the cache once its first copy is done
            else:
                first.setdefault(key, i)
                pending.append(i)
        for offset in range(0, len(pending), self.batch_size):
            chunk = pending[offset : offset + self.batch_size]
            bounds: list[float] = []
            over: BudgetExceeded | None = None
            for i in chunk:
                try:
                    bounds.append(self._reserve_call(requests[i]))
                except BudgetExceeded as exc:
                    over = exc
                    break
            chunk = chunk[: len(bounds)]
            done = 0
            try:
                completions = self._complete_many([requests[i] for i in chunk])
                for k, i in enumerate(chunk):
                    completion = completions[k] if completions is not None else self._call_with_retries(requests[i])
                    self._commit(keys[i], requests[i], completion, bounds[k])
                    results[i] = completion
                    done += 1
                    bar.update(1)
            finally:
                with self._lock:
                    self._committed -= sum(bounds[done:])
            if over is not None:
                raise over
        for i in duplicates:
            results[i] = self.complete(requests[i])
            bar.update(1)

    def _complete_many(self, requests: list[Request]) -> list[Completion] | None:
        """One `complete_many` call; None when it failed, to send each request alone with the usual retries."""
        if len(requests) < 2:
            return None
        try:
            completions = list(self.provider.complete_many(requests))  # type: ignore[attr-defined]
        except LLMError as exc:
            log.warning("%s: a batch of %d failed (%s); sending its requests one by one", self.model, len(requests), exc)
            return None
        if len(completions) != len(requests):
            log.warning("%s: a batch of %d returned %d completions; sending one by one", self.model, len(requests), len(completions))
            return None
        return completions

    def _reserve_call(self, request: Request) -> float:
        """Count the call against the budgets; returns the cost bound held until it completes."""
        bound = 0.0
        if self.price is not None and self.max_cost is not None:
            bound = self.price.cost(_tokens(request.prompt_text), request.max_tokens)
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
        input_tokens = completion.input_tokens or _tokens(request.prompt_text)
        output_tokens = completion.output_tokens or _tokens(completion.text)
        return self.price.cost(input_tokens, output_tokens)

    def _call_with_retries(self, request: Request) -> Completion:
        def wait_for(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                return min(exc.retry_after, self.backoff_max)
            return float(wait_exponential_jitter(initial=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_initial)(state))

        def before_sleep(state: RetryCallState) -> None:
            with self._lock:
                self.usage.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s: attempt %d failed (%s); retrying", self.model, state.attempt_number, exc)

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_for,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self.provider.complete, request)
        except TransientError as exc:
            raise LLMError(
                f"{self.model}: giving up after {self.max_attempts} attempts: {exc}"
            ) from exc


def _tokens(text: str) -> int:
    """About four characters a token (icai.cost.CHARS_PER_TOKEN)."""
    return -(-len(text) // 4)
