"""OpenAI-compatible servers as they really differ (tests/fault_server.py dialects).

The structured-output form (json_schema, json_object with a schema, or none) and
log-probs are negotiated once per provider: a run against any dialect completes with
the votes of a server that takes everything, meets each rejection once (not once per
call or per thread), and counts no rejection as a retry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from fault_server import FaultServer, LogEntry

from icai.config import RunConfig
from icai.embed import HashingEmbedder
from icai.io import load_comparisons
from icai.llm import LLM, LLMError, Request, ResponseCache
from icai.llm.fake import keyword_responder
from icai.llm.openai_provider import OpenAIProvider
from icai.pipeline import RunResult, run
from icai.store import RunStore
from icai.style import STYLE_ORIGIN
from icai.types import Comparison, Principle

KEY = "sk-dummy-not-a-secret"
def asked_by_model(result: RunResult) -> list[Principle]:
    """The tested principles the model votes on (style principles are counted, not asked)."""
    return [p for p in result.tested if p.origin != STYLE_ORIGIN]


CONFIG = RunConfig(
    model="openai/fake", embedder="hash", seed=0, vote_batch_size=20, n_clusters=8, max_principles=3, vote_mode="generate"
)
"""Generated votes: these tests are about structured output (auto would vote with the server's log-probs)."""
N_PAIRS = 16

FORM_SENT = {"json_schema": "json_schema", "json_object": "json_object", "none": None}
"""The response_format type a dialect ends up receiving."""
REJECTIONS = {"json_schema": 0, "json_object": 1, "none": 2}
"""Forms each dialect refuses before one works: once per form, not once per call."""


@pytest.fixture(scope="module")
def pairs() -> list[Comparison]:
    from testdata import data_file

    return load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))[:N_PAIRS]


def through(
    server: FaultServer, out: Path, pairs: Sequence[Comparison], *, config: RunConfig = CONFIG, concurrency: int = 4
) -> tuple[RunResult, LLM]:
    store = RunStore(out)
    llm = LLM(
        OpenAIProvider("fake", base_url=server.base_url, api_key=KEY, timeout=5.0),
        cache=ResponseCache(store.cache_path),
        concurrency=concurrency,
        backoff_initial=0.01,
        backoff_max=0.05,
        progress=False,
    )
    return run(pairs, llm=llm, embedder=HashingEmbedder(), config=config, store=store), llm


def vote_values(result: RunResult) -> dict[tuple[str, str], str]:
    return {(v.comparison_id, v.principle_id): v.value for v in result.votes}


@pytest.fixture(scope="module")
def reference(pairs: list[Comparison], tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A run against a server that takes json_schema and returns log-probs."""
    with FaultServer() as server:
        result, llm = through(server, tmp_path_factory.mktemp("reference"), pairs)
    assert server.counts() == {"ok": llm.usage.calls}
    assert {e.response_format for e in server.entries()} == {"json_schema"}
    return result


def rejected(entries: Sequence[LogEntry]) -> list[LogEntry]:
    return [e for e in entries if e.outcome == "rejected"]


@pytest.mark.parametrize("dialect", ["json_schema", "json_object", "none"])
def test_each_dialect_gives_the_reference_votes_after_one_rejection_per_form(
    dialect: str,
    pairs: list[Comparison],
    reference: RunResult,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="icai.llm.openai_provider"), FaultServer(dialect=dialect) as server:
        result, llm = through(server, tmp_path / "run", pairs)

    entries = server.entries()
    assert len(rejected(entries)) == REJECTIONS[dialect]
    ok = [e for e in entries if e.outcome == "ok"]
    assert ok and {e.response_format for e in ok} == {FORM_SENT[dialect]}
    assert llm.usage.retries == 0 and llm.usage.calls == len(ok)
    assert llm.provider.structured_output == {"json_schema": "json_schema", "json_object": "json_object", "none": "prompt"}[dialect]  # type: ignore[attr-defined]
    assert vote_values(result) == vote_values(reference)
    assert result.constitution.texts == reference.constitution.texts
    # the form in use is said once; each fallback once
    said = [r for r in caplog.records if "structured output as" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert sum("rejected response_format" in r.getMessage() for r in caplog.records) == REJECTIONS[dialect]


def test_rejections_are_not_retries_among_real_faults(pairs: list[Comparison], reference: RunResult, tmp_path: Path) -> None:
    # 500s and 503s that do not name response_format are retried and counted; the
    # dialect's 500 that names it is neither.
    with FaultServer(dialect="json_object", fault_rate=0.2, faults=["500", "503", "429"], seed=3) as server:
        result, llm = through(server, tmp_path / "run", pairs)
    entries = server.entries()
    assert len(rejected(entries)) == 1
    assert server.n_faults > 0
    assert llm.usage.retries == server.n_faults
    assert vote_values(result) == vote_values(reference)


@pytest.mark.parametrize("dialect", ["json_object", "none"])
def test_concurrent_first_calls_meet_each_rejection_once(dialect: str) -> None:
    schema = {"type": "object", "properties": {"preferred": {"type": "string"}}, "required": ["preferred"]}
    seen: list[object] = []

    def responder(request: Request) -> str:
        seen.append(request.json_schema)  # json_schema's or json_object's schema, as the server read it
        return keyword_responder(request)

    with FaultServer(responder, dialect=dialect, latency=0.05) as server:
        provider = OpenAIProvider("fake", base_url=server.base_url, api_key=KEY, timeout=30.0)
        requests = [Request.chat(f"[RESPONSE A]\nx{i}\n[/RESPONSE A]", json_schema=schema) for i in range(16)]
        barrier = threading.Barrier(len(requests))
        errors: list[BaseException] = []

        def one(request: Request) -> None:
            barrier.wait()
            try:
                provider.complete(request)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(r,)) for r in requests]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert not errors, [repr(e) for e in errors]
    assert server.counts() == {"rejected": REJECTIONS[dialect], "ok": 16}
    assert seen == [schema if dialect == "json_object" else None] * 16


def test_the_cache_outlives_the_negotiated_form(pairs: list[Comparison], tmp_path: Path) -> None:
    # The form is not in the cache key: a run cached against a json_schema server
    # resumes against a json_object one (say, after switching servers) without a call.
    out = tmp_path / "run"
    with FaultServer() as first:
        through(first, out, pairs)
    with FaultServer(dialect="json_object") as second:
        _, llm = through(second, out, pairs)
    assert second.entries() == [] and llm.usage.calls == 0


@pytest.mark.parametrize("logprobs", ["reject", "omit"])
def test_logprob_votes_fall_back_to_generated_votes_when_the_server_has_none(
    logprobs: str,
    pairs: list[Comparison],
    reference: RunResult,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = RunConfig(**{**CONFIG.to_dict(), "vote_mode": "logprob"})
    with caplog.at_level(logging.INFO), FaultServer(dialect="json_object", logprobs=logprobs) as server:
        result, llm = through(server, tmp_path / "run", pairs, config=config)
    entries = server.entries()
    asked = [e for e in entries if e.logprobs]
    assert len(asked) == 1  # the probe; no vote asked for log-probs
    assert len(rejected(entries)) == 1 + (logprobs == "reject")  # json_schema once, logprobs once
    assert llm.usage.retries == 0
    assert llm.provider.logprobs_available is False  # type: ignore[attr-defined]
    assert vote_values(result) == vote_values(reference)
    warned = [r for r in caplog.records if "log-prob votes fall back" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    # a direct log-prob request now fails at once, without a call
    with pytest.raises(LLMError, match="no log-probabilities"):
        llm.provider.complete(Request.chat("A or B?", max_tokens=1, choices=("A", "B")))
    assert len(server.entries()) == len(entries)


def test_logprob_votes_use_logprobs_the_server_returns(pairs: list[Comparison], reference: RunResult, tmp_path: Path) -> None:
    config = RunConfig(**{**CONFIG.to_dict(), "vote_mode": "logprob"})
    with FaultServer(dialect="json_object") as server:
        result, llm = through(server, tmp_path / "run", pairs, config=config)
    assert llm.provider.logprobs_available is True  # type: ignore[attr-defined]
    asked = [e for e in server.entries() if e.logprobs]
    assert len(asked) == 1 + 2 * len(result.train) * len(asked_by_model(result))  # the probe, then every vote
    assert vote_values(result) == vote_values(reference)


def test_a_run_under_auto_votes_with_server_log_probs(pairs: list[Comparison], reference: RunResult, tmp_path: Path) -> None:
    config = RunConfig(**{**CONFIG.to_dict(), "vote_mode": "auto"})
    with FaultServer(dialect="json_object") as server:
        result, llm = through(server, tmp_path / "run", pairs, config=config)
    asked = [e for e in server.entries() if e.logprobs]
    assert len(asked) == 1 + 2 * len(result.train) * len(asked_by_model(result))  # the probe, then every vote
    assert vote_values(result) == vote_values(reference)
