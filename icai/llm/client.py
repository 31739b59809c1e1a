"""The one wrapper every provider goes through: cache, retries, concurrency, usage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tqdm.auto import tqdm

from icai.llm.base import Completion, LLMError, Provider, Request, TransientError
from icai.llm.cache import ResponseCache

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
    """The next call would exceed --max-calls; work done so far is kept in the cache."""


class LLM:
    """A provider wrapped with a response cache, retries, a thread pool and usage counters.

    Args:
        provider: the object that talks to the model.
        cache: where completed responses are committed; None disables caching.
        max_attempts: attempts per request before the run stops with LLMError.
        concurrency: threads used by `map`.
        max_calls: stop before making more than this many provider calls.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        cache: ResponseCache | None = None,
        max_attempts: int = 6,
        backoff_max: float = 60.0,
        concurrency: int = 1,
        max_calls: int | None = None,
        progress: bool = True,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        self.concurrency = max(1, concurrency)
        self.max_calls = max_calls
        self.progress = progress
        self.usage = Usage()
        self._lock = threading.Lock()
        self._reserved = 0

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
        self._reserve_call()
        completion = self._call_with_retries(request)
        if self.cache is not None:
            self.cache.put(key, self.model, completion)
        with self._lock:
            self.usage.calls += 1
            self.usage.input_tokens += completion.input_tokens
            self.usage.output_tokens += completion.output_tokens
            self.usage.cached_input_tokens += completion.cached_input_tokens
        return completion

    def map(self, requests: Sequence[Request], *, desc: str | None = None) -> list[Completion]:
        """Complete many requests, in order, on `concurrency` threads with a progress bar.

        The first failure cancels what has not started and is raised; every
        completion finished before it is already in the cache.
        """
        results: list[Completion | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc=desc, unit="call", disable=not self.progress or desc is None)
        try:
            if self.concurrency == 1:
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

    def _reserve_call(self) -> None:
        with self._lock:
            if self.max_calls is not None and self._reserved >= self.max_calls:
                raise BudgetExceeded(
                    f"the call budget of {self.max_calls} calls is spent; completed calls are cached, "
                    "rerun with a larger --max-calls to resume"
                )
            self._reserved += 1

    def _call_with_retries(self, request: Request) -> Completion:
        def wait_for(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                return min(exc.retry_after, self.backoff_max)
            return float(wait_exponential_jitter(initial=0.5, max=self.backoff_max)(state))

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
