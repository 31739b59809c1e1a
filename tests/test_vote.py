"""icai.vote: both orders and batches per call, position bias, unreadable answers, log-prob calibration, and the
vote mode `auto` resolves to against a server (tests/fault_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_server import FaultServer
from testdata import CAT, DOG, PAIRS

from icai.llm import LLM, LLMError, Request
from icai.llm.base import Completion
from icai.llm.fake import FakeProvider, keyword_responder
from icai.llm.openai_provider import OpenAIProvider
from icai.vote import calibrated_margins, resolve_vote_mode, vote

KEY = "sk-dummy-not-a-secret"


def test_vote_both_orders_and_batches():
    provider = FakeProvider(keyword_responder)
    votes = vote(PAIRS, [CAT, DOG], LLM(provider, progress=False), batch_size=1)
    assert len(provider.requests) == len(PAIRS) * 2 * 2  # pairs x batches x orders
    by = {(v.comparison_id, v.principle_id): v for v in votes}
    assert by[("p1", CAT.id)].value == "for" and by[("p1", CAT.id)].picks == ("a", "a")
    assert by[("p2", CAT.id)].value == "for"
    assert by[("p1", DOG.id)].value == "against"


def test_position_biased_annotator_abstains():
    provider = FakeProvider([("Rules:", '{"1": "A", "2": "A"}')])
    votes = vote(PAIRS, [CAT, DOG], LLM(provider, progress=False))
    assert {v.value for v in votes} == {"abstain"}


def test_unreadable_answers_are_invalid_with_raw_kept():
    provider = FakeProvider([("Rules:", "I refuse")])
    votes = vote(PAIRS[:1], [CAT], LLM(provider, progress=False))
    assert votes[0].value == "invalid"
    assert "I refuse" in votes[0].raw


class Broken:
    model = "fake/broken"

    def complete(self, request: Request) -> Completion:
        raise LLMError("connection refused")


def test_network_failure_is_raised_not_counted_as_invalid():
    with pytest.raises(LLMError):
        vote(PAIRS, [CAT], LLM(Broken(), progress=False))


def test_calibration_subtracts_the_mean_readable_margin() -> None:
    assert calibrated_margins([2.0, 0.0, None, 1.0]) == [1.0, -1.0, None, 0.0]
    assert calibrated_margins([None]) == [None]


def test_resolve_vote_mode_probes_once_and_keeps_the_verdict(tmp_path: Path) -> None:
    with FaultServer(logprobs="omit") as server:
        llm = LLM(OpenAIProvider("fake", base_url=server.base_url, api_key=KEY), progress=False)
        assert resolve_vote_mode("logprob", llm) == "generate"
        assert resolve_vote_mode("logprob", llm) == "generate"
        assert resolve_vote_mode("generate", llm) == "generate"
    assert len(server.entries()) == 1
    with FaultServer() as server:
        llm = LLM(OpenAIProvider("fake", base_url=server.base_url, api_key=KEY), progress=False)
        assert resolve_vote_mode("logprob", llm) == "logprob"
        assert resolve_vote_mode("auto", llm) == "logprob"  # a self-hosted server that returns log-probs
    assert len(server.entries()) == 1


@pytest.mark.parametrize("logprobs", ["return", "omit", "reject"])
def test_auto_votes_with_the_log_probs_a_server_at_a_base_url_returns(logprobs: str) -> None:
    """--vote-mode auto asks a server at a base_url once; log-prob votes when it returns them, else generated ones."""
    with FaultServer(logprobs=logprobs) as server:
        llm = LLM(OpenAIProvider("fake", base_url=server.base_url, api_key=KEY), progress=False)
        assert llm.capabilities.logprob_votes
        expected = "logprob" if logprobs == "return" else "generate"
        assert resolve_vote_mode("auto", llm) == expected
        assert resolve_vote_mode("auto", llm) == expected
        assert len([e for e in server.entries() if e.logprobs]) == 1  # the probe, once


def test_auto_keeps_generated_votes_on_the_openai_api() -> None:
    """On api.openai.com a log-prob vote would cost a call per principle: auto stays with generated votes, asking nothing."""
    for base_url in (None, "https://api.openai.com/v1"):
        llm = LLM(OpenAIProvider("gpt-4o-mini", base_url=base_url, api_key=KEY), progress=False)
        assert llm.capabilities.choice_logprobs and not llm.capabilities.logprob_votes
        assert resolve_vote_mode("auto", llm) == "generate"
        assert llm.usage.calls == 0
