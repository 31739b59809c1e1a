"""Label-free proposals (icai.propose.propose_unlabelled) and their parser, with the packaged fake annotator."""

from __future__ import annotations

import json

from icai.llm.client import LLM
from icai.llm.fake import FakeProvider, fake_provider
from icai.parse import parse_differences
from icai.prompts import EXAMPLE_DIFFERENCES, EXAMPLE_PRINCIPLES
from icai.propose import HINT_KINDS, propose, propose_unlabelled
from icai.types import Comparison
from icai.vote import vote

PAIRS = [
    Comparison("p1", "The cat sat on the warm mat.", "A dog ran across the park.", "a", prompt="Tell a story."),
    Comparison("p2", "Apples grow on trees.", "Bananas grow in bunches.", "b", prompt="Name a fruit."),
]


def test_each_difference_becomes_a_rule_and_its_opposite() -> None:
    fake = fake_provider("keyword")
    principles = propose_unlabelled(PAIRS, LLM(fake, progress=False), per_pair=2)
    texts = [p.text for p in principles]
    assert "Select the response that mentions 'cat' in its text." in texts
    assert "Select the response that does not mention 'cat' in its text." in texts
    assert len(texts) == 8  # 2 pairs x 2 differences x 2 directions
    assert all(p.hint == "differences" and HINT_KINDS.match(p.hint) for p in principles)
    assert {p.source_ids for p in principles} == {("p1",), ("p2",)}
    # the model saw no label: no prompt names a preferred response
    assert all("[PREFERRED]" not in r.prompt_text for r in fake.requests)
    # the labels do not matter: flipping them proposes the same rules
    flipped = propose_unlabelled([c.with_preferred(c.rejected) for c in PAIRS], LLM(fake_provider("keyword"), progress=False), per_pair=2)
    assert [p.text for p in flipped] == texts


def test_the_two_directions_vote_for_opposite_sides() -> None:
    llm = LLM(fake_provider("keyword"), progress=False)
    principles = propose_unlabelled(PAIRS[:1], llm, per_pair=1)
    votes = {v.principle_id: v for v in vote(PAIRS[:1], principles, llm)}
    picks = sorted(votes[p.id].picks for p in principles)
    assert picks == [("a", "a"), ("b", "b")]


def test_with_labels_the_labelled_proposal_is_unchanged() -> None:
    # the labelled stage still sends the preferred/other prompt and reads {"principles": [...]}
    fake = fake_provider("keyword")
    principles = propose(PAIRS, LLM(fake, progress=False))
    assert all("[PREFERRED]" in r.prompt_text for r in fake.requests)
    assert all(p.hint == "" for p in principles)


def test_parse_differences_reads_pairs_lists_and_rejects_echoes() -> None:
    good = {"a": "Select the response that gives a worked example.", "b": "Select the response that gives no example at all."}
    echo = {"a": EXAMPLE_PRINCIPLES[0], "b": EXAMPLE_DIFFERENCES[0]}
    half = {"a": "Select the response that uses a numbered list.", "b": "short"}
    text = "```json\n" + json.dumps({"differences": [good, echo, half, good]}) + "\n```"
    assert parse_differences(text) == [
        (good["a"], good["b"]),
        ("Select the response that uses a numbered list.", None),
    ]
    flat = '{"principles": ["Select the response that cites a source for its claims."]}'
    assert parse_differences(flat) == [("Select the response that cites a source for its claims.", None)]
    assert parse_differences("no idea") == []


def test_a_model_that_answers_nothing_usable_gives_no_principles() -> None:
    llm = LLM(FakeProvider([("Nobody has said", "I cannot tell.")]), progress=False)
    assert propose_unlabelled(PAIRS, llm) == []
