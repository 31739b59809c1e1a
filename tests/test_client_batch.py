"""LLM.map through a provider's optional complete_many: cache, usage, order, budget, fallback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from icai.llm.base import Capabilities, Completion, Request, TransientError
from icai.llm.cache import ResponseCache
from icai.llm.client import LLM, BudgetExceeded


class Batching:
    """Echoes each prompt; records every complete and complete_many call."""

    model = "fake/batching"
    capabilities = Capabilities(batching=True)

    def __init__(self, *, fail_batches: bool = False) -> None:
        self.fail_batches = fail_batches
        self.single: list[str] = []
        self.batches: list[list[str]] = []

    def complete(self, request: Request) -> Completion:
        self.single.append(request.prompt_text)
        return self._answer(request)

    def complete_many(self, requests: Sequence[Request]) -> list[Completion]:
        self.batches.append([r.prompt_text for r in requests])
        if self.fail_batches:
            raise TransientError("batch refused")
        return [self._answer(r) for r in requests]

    @staticmethod
    def _answer(request: Request) -> Completion:
        n = len(request.prompt_text)
        return Completion(text=request.prompt_text.upper(), input_tokens=n, output_tokens=1, cached_input_tokens=n // 2)


def _requests(n: int) -> list[Request]:
    return [Request.chat(f"prompt {i:02d}", choices=("A", "B")) for i in range(n)]


def test_cache_hits_are_not_resent_and_usage_matches(tmp_path: Path) -> None:
    provider = Batching()
    assert LLM(provider).capabilities.batching
    reqs = _requests(10)
    warm = LLM(provider, cache=ResponseCache(tmp_path / "c.sqlite"), progress=False, batch_size=4)
    warm.map([reqs[1], reqs[6]])
    provider.batches.clear()

    llm = LLM(provider, cache=ResponseCache(tmp_path / "c.sqlite"), progress=False, batch_size=4)
    out = llm.map(reqs)
    assert [c.text for c in out] == [r.prompt_text.upper() for r in reqs]  # order preserved
    sent = [p for batch in provider.batches for p in batch]
    assert sent == [r.prompt_text for i, r in enumerate(reqs) if i not in (1, 6)]
    assert [len(b) for b in provider.batches] == [4, 4]
    assert provider.single == []

    # The same counts as one complete() per request.
    reference = LLM(Batching(), cache=None, progress=False)
    expected = [reference.complete(r) for i, r in enumerate(reqs) if i not in (1, 6)]
    assert llm.usage.calls == 8 and llm.usage.cache_hits == 2
    assert llm.usage.input_tokens == sum(c.input_tokens for c in expected)
    assert llm.usage.output_tokens == 8
    assert llm.usage.cached_input_tokens == sum(c.cached_input_tokens for c in expected)

    # Everything is cached now: nothing reaches the provider.
    provider.batches.clear()
    again = LLM(provider, cache=ResponseCache(tmp_path / "c.sqlite"), progress=False)
    assert [c.text for c in again.map(reqs)] == [c.text for c in out]
    assert provider.batches == [] and again.usage.cache_hits == 10 and again.usage.calls == 0


def test_duplicates_are_sent_once_with_a_cache(tmp_path: Path) -> None:
    provider = Batching()
    reqs = _requests(3)
    llm = LLM(provider, cache=ResponseCache(tmp_path / "c.sqlite"), progress=False)
    out = llm.map([reqs[0], reqs[1], reqs[0], reqs[2]])
    assert [c.text for c in out] == ["PROMPT 00", "PROMPT 01", "PROMPT 00", "PROMPT 02"]
    assert provider.batches == [["prompt 00", "prompt 01", "prompt 02"]]
    assert llm.usage.calls == 3 and llm.usage.cache_hits == 1


def test_call_budget_stops_midway_with_work_kept(tmp_path: Path) -> None:
    provider = Batching()
    reqs = _requests(5)
    cache = ResponseCache(tmp_path / "c.sqlite")
    llm = LLM(provider, cache=cache, progress=False, max_calls=3)
    with pytest.raises(BudgetExceeded):
        llm.map(reqs)
    assert provider.batches == [["prompt 00", "prompt 01", "prompt 02"]]
    assert llm.usage.calls == 3
    assert all(cache.get(r.cache_key(provider.model)) is not None for r in reqs[:3])


def test_failed_batch_falls_back_to_single_calls() -> None:
    provider = Batching(fail_batches=True)
    reqs = _requests(3)
    llm = LLM(provider, cache=None, progress=False)
    out = llm.map(reqs)
    assert [c.text for c in out] == ["PROMPT 00", "PROMPT 01", "PROMPT 02"]
    assert provider.single == ["prompt 00", "prompt 01", "prompt 02"]
    assert llm.usage.calls == 3


@pytest.mark.parametrize(("delay", "threaded"), [(0.0, False), (0.002, True)])
def test_threads_only_for_providers_that_wait(delay: float, threaded: bool) -> None:
    """A CPU-bound in-process fake runs its calls on the calling thread whatever `concurrency` says; one that stands
    in for a network round trip (a delay) runs on `concurrency` threads."""
    import threading

    from icai.llm.fake import FakeProvider

    seen: set[int] = set()

    def answer(request: Request) -> str:
        seen.add(threading.get_ident())
        return "ok"

    provider = FakeProvider(answer, delay=delay)
    assert provider.capabilities.threads is threaded
    out = LLM(provider, concurrency=4, progress=False).map(_requests(40))
    assert [c.text for c in out] == ["ok"] * 40
    assert (seen == {threading.get_ident()}) is not threaded
    assert (len(seen) > 1) is threaded
