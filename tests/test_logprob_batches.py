"""Log-prob voting with several principles per call (request branches) and in one calibrated order."""

import math
import re
from pathlib import Path

import pytest

from icai.adaptive import vote_adaptive
from icai.llm import LLM, Request
from icai.llm.base import Capabilities, Completion
from icai.llm.cache import ResponseCache
from icai.prompts import VoteLayout, vote_branches_request, vote_one_request
from icai.types import Comparison, Principle
from icai.vote import vote

WORDS = ["cat", "blue", "lemon", "rain", "piano", "salt"]
BIAS = 3.0
"""The fake model's constant preference for slot A, in log-odds."""
SIGNAL = 2.0


class LogprobAnnotator:
    """Scores "A"/"B" after a rule "mentions <word>": +-SIGNAL for the slot whose response has the word, plus BIAS for A."""

    model = "fake/logprob"

    def __init__(self, *, branches: bool) -> None:
        self.capabilities = Capabilities(choice_logprobs=True, branches=branches)
        self.requests: list[Request] = []

    def complete(self, request: Request) -> Completion:
        self.requests.append(request)
        if request.branches:
            scored = [self._score(request.branch(i)) for i in range(len(request.branches))]
            return Completion(" ".join(c.text for c in scored), branch_logprobs=tuple(c.choice_logprobs for c in scored))
        return self._score(request)

    def _score(self, request: Request) -> Completion:
        prompt = request.prompt_text
        a = re.search(r"\[RESPONSE A\]\n(.*?)\n\[/RESPONSE A\]", prompt, re.DOTALL).group(1)  # type: ignore[union-attr]
        b = re.search(r"\[RESPONSE B\]\n(.*?)\n\[/RESPONSE B\]", prompt, re.DOTALL).group(1)  # type: ignore[union-attr]
        word = re.search(r"Rule: Select the response that mentions (\w+)\.", prompt).group(1)  # type: ignore[union-attr]
        margin = BIAS + SIGNAL * ((word in a.split()) - (word in b.split()))
        logprobs = {"A": -math.log1p(math.exp(-margin)), "B": -math.log1p(math.exp(margin))}
        return Completion(max(logprobs, key=logprobs.__getitem__), input_tokens=len(prompt) // 4, output_tokens=1, choice_logprobs=logprobs)


def pairs(n: int = 24) -> list[Comparison]:
    out = []
    for i in range(n):
        a = " ".join(WORDS[j] for j in range(len(WORDS)) if (i >> j) % 2)
        b = " ".join(WORDS[j] for j in range(len(WORDS)) if (i * 7 + 3 >> j) % 2)
        out.append(Comparison(f"c{i}", f"words: {a}", f"words: {b}", "a" if i % 3 else "b", prompt="List some words."))
    return out


def rules() -> list[Principle]:
    return [Principle.from_text(f"Select the response that mentions {w}.") for w in WORDS]


def truth(c: Comparison, p: Principle) -> str:
    word = p.text.rsplit(" ", 1)[1].rstrip(".")
    side = (word in c.text_a.split()) - (word in c.text_b.split())
    if side == 0:
        return "abstain"
    return "for" if (side > 0) == (c.preferred == "a") else "against"


@pytest.mark.parametrize("layout", ["rule-first", "rule-last"])
def test_a_branch_is_the_single_rule_request(layout: VoteLayout) -> None:
    request = vote_branches_request("p {x}", "a", "b", ["Rule one {y}", "Rule two"], layout=layout)
    assert request.branches and len(request.branches) == 2
    assert [request.branch(i) for i in range(2)] == [
        vote_one_request("p {x}", "a", "b", r, layout=layout) for r in ("Rule one {y}", "Rule two")
    ]
    assert vote_branches_request("p", "a", "b", ["only"], layout=layout) == vote_one_request("p", "a", "b", "only", layout=layout)
    assert request.cache_key("m") != request.branch(0).cache_key("m")


def test_rule_last_puts_the_question_in_the_shared_prefix_and_the_rule_at_the_end() -> None:
    first = vote_one_request("p", "a", "b", "Select the response that is kind.", layout="rule-first").messages[-1].content
    last = vote_one_request("p", "a", "b", "Select the response that is kind.", layout="rule-last").messages[-1].content
    question = "Answer with one letter, A or B."
    assert first.index("Rule: Select the response that is kind.") < first.index(question)
    assert last.index(question) < last.index("Rule: Select the response that is kind.")
    assert last.endswith("Rule: Select the response that is kind.\n")
    branched = vote_branches_request("p", "a", "b", ["Select the response that is kind.", "Rule two"], layout="rule-last")
    assert question in branched.messages[-1].content and all(question not in b for b in branched.branches)
    with pytest.raises(ValueError, match="unknown vote layout"):
        vote_one_request("p", "a", "b", "r", layout="sideways")  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_size", [1, 4, 40])
def test_branched_calls_give_the_votes_of_one_call_per_rule(batch_size: int) -> None:
    comparisons, principles = pairs(), rules()
    single = LogprobAnnotator(branches=False)
    expected = vote(comparisons, principles, LLM(single, progress=False), mode="logprob", batch_size=batch_size)
    assert len(single.requests) == len(comparisons) * 2 * len(principles)  # no branches: one call per rule and order

    branched = LogprobAnnotator(branches=True)
    llm = LLM(branched, progress=False)
    got = vote(comparisons, principles, llm, mode="logprob", batch_size=batch_size)
    per_pair = 2 * math.ceil(len(principles) / batch_size)
    assert llm.usage.calls == len(branched.requests) == len(comparisons) * per_pair
    assert [(v.comparison_id, v.principle_id, v.value) for v in got] == [(v.comparison_id, v.principle_id, v.value) for v in expected]
    assert [v.value for v in got] == [truth(c, p) for c in comparisons for p in principles]  # both orders cancel BIAS


def test_a_provider_without_branches_refuses_a_branched_request() -> None:
    from icai.llm.base import ConfigError

    request = vote_branches_request("p", "a", "b", ["Select the response that mentions cat.", "Select the response that mentions salt."])
    llm = LLM(LogprobAnnotator(branches=False), progress=False)
    with pytest.raises(ConfigError, match="branches"):
        llm.complete(request)
    with pytest.raises(ConfigError, match="branches"):
        llm.map([request])
    assert llm.usage.calls == 0


def test_branch_logprobs_survive_the_response_cache(tmp_path: Path) -> None:
    comparisons, principles = pairs(8), rules()
    first = LLM(LogprobAnnotator(branches=True), cache=ResponseCache(tmp_path / "c.sqlite"), progress=False)
    votes = vote(comparisons, principles, first, mode="logprob")
    again = LLM(LogprobAnnotator(branches=True), cache=ResponseCache(tmp_path / "c.sqlite"), progress=False)
    assert vote(comparisons, principles, again, mode="logprob") == votes
    assert (again.usage.calls, again.usage.cache_hits) == (0, first.usage.calls)


def test_one_order_log_prob_votes_are_calibrated_for_position_bias() -> None:
    comparisons, principles = pairs(), rules()
    annotator = LogprobAnnotator(branches=True)
    llm = LLM(annotator, progress=False)
    result = vote_adaptive(
        comparisons, principles, llm, mode="logprob", both_orders=False, min_pairs=len(comparisons), k=2, seed=3
    )
    # one call per pair (all rules as branches), each pair shown once, in a random order
    assert result.calls == llm.usage.calls == len(comparisons)
    shown = [re.findall(r"\[RESPONSE [AB]\]\n(.*?)\n", r.prompt_text) for r in annotator.requests]
    swapped = sum([c.text_b, c.text_a] in shown for c in comparisons)
    assert 0 < swapped < len(comparisons)
    by = {(c.id, p.id): truth(c, p) for c in comparisons for p in principles}
    decisive = [v for v in result.votes if by[(v.comparison_id, v.principle_id)] != "abstain"]
    # BIAS > SIGNAL: uncalibrated, every vote would pick slot A; calibrated, each decisive vote follows its rule
    assert decisive and all(v.value == by[(v.comparison_id, v.principle_id)] for v in decisive)
    assert all(len(v.picks) == 1 for v in result.votes)
