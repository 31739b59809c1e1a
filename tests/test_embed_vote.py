"""The embedding scorer and the cascade: fast tests use the hashing embedder and scripted fakes."""

import json

import numpy as np
import pytest

from icai.config import RunConfig
from icai.embed import HashingEmbedder
from icai.embed_vote import (
    SKIPPED,
    CascadeStats,
    cascade_vote,
    embedding_pick,
    relevance_filter,
    similarities,
    vote_by_embedding,
)
from icai.io import load_comparisons
from icai.llm import LLM, Request
from icai.llm.fake import FakeProvider, fake_provider
from icai.pipeline import run
from icai.style import style_principles
from icai.types import Comparison, Principle

CAT_TEXT = "The cat purred and the cat slept on the warm windowsill."
DOG_TEXT = "The dog barked and the dog ran after the red ball."
PAIRS = [
    Comparison("c1", CAT_TEXT, DOG_TEXT, "a", prompt="Write about a pet."),
    Comparison("c2", DOG_TEXT, CAT_TEXT, "b", prompt="Write about a pet."),
    Comparison("c3", DOG_TEXT, CAT_TEXT, "a", prompt="Write about a pet."),
]
CAT = Principle.from_text("Select the response that is about a cat that purred.")
SHIRT = Principle.from_text("Select the response that recommends a blue shirt for summer.")
# The hashing embedder's cosine scale is not MiniLM's: tests pass thresholds that fit it.
HASH = {"margin": 0.05, "floor": 0.2}


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        return super().encode(texts)


def test_cat_principle_votes_for_the_cat_response_in_the_pairs_own_sides():
    votes = {v.comparison_id: v for v in vote_by_embedding(PAIRS, [CAT], HashingEmbedder(), **HASH)}
    assert votes["c1"].picks == ("a",) and votes["c1"].value == "for"
    assert votes["c2"].picks == ("b",) and votes["c2"].value == "for"
    assert votes["c3"].picks == ("b",) and votes["c3"].value == "against"  # the human preferred the dog here
    assert "sim_a=" in votes["c1"].raw


def test_principle_about_neither_response_abstains():
    votes = vote_by_embedding(PAIRS, [SHIRT], HashingEmbedder(), **HASH)
    assert {v.value for v in votes} == {"abstain"}
    assert {v.picks for v in votes} == {("neither",)}


def test_embedding_pick_rule():
    assert embedding_pick(0.5, 0.4, margin=0.03, floor=0.25) == "a"
    assert embedding_pick(0.4, 0.5, margin=0.03, floor=0.25) == "b"
    assert embedding_pick(0.5, 0.49, margin=0.03, floor=0.25) == "neither"  # gap within the margin
    assert embedding_pick(0.2, 0.05, margin=0.03, floor=0.25) == "neither"  # about neither response


def test_the_frame_is_stripped_before_embedding_and_each_text_is_encoded_once():
    embedder = CountingEmbedder()
    other = Principle.from_text("Select the response that talks about a dog and a ball.")
    sims = similarities(PAIRS, [CAT, other, SHIRT], embedder)
    assert sims.a.shape == sims.b.shape == (3, 3)
    assert sorted(embedder.seen) == sorted(
        [CAT_TEXT, DOG_TEXT, "is about a cat that purred", "talks about a dog and a ball", "recommends a blue shirt for summer"]
    )
    # the same text in another comparison reuses its vector
    assert np.allclose(sims.a[0], sims.b[1])


def _answer_all_a(request: Request) -> str:
    rules = [line for line in request.prompt_text.splitlines() if line[:1].isdigit() and ". " in line]
    return json.dumps({str(i): "A" for i in range(1, len(rules) + 1)})


def test_cascade_skips_irrelevant_items_and_never_sends_them():
    provider = FakeProvider(_answer_all_a)
    votes, stats = cascade_vote(PAIRS, [CAT, SHIRT], LLM(provider, progress=False), HashingEmbedder(), floor=0.2, batch_size=5)
    assert stats == CascadeStats(n_items=6, n_skipped=3)
    assert stats.n_sent == 3 and stats.skip_rate == pytest.approx(0.5)
    assert all(SHIRT.text not in r.prompt_text for r in provider.requests)
    assert len(provider.requests) == len(PAIRS) * 2  # one batch per pair, both orders
    by = {(v.comparison_id, v.principle_id): v for v in votes}
    assert len(votes) == 6 and [(v.comparison_id, v.principle_id) for v in votes][:2] == [("c1", CAT.id), ("c1", SHIRT.id)]
    for c in PAIRS:
        skipped = by[(c.id, SHIRT.id)]
        assert skipped.value == "abstain" and skipped.picks == ("neither",) and skipped.raw.startswith(SKIPPED)
        assert by[(c.id, CAT.id)].picks == ("a", "b")  # the fake always says "A": position bias cancels
    assert CascadeStats.from_votes(votes) == stats


def test_relevance_filter_tiny_gap_rule():
    same = Comparison("s", CAT_TEXT, CAT_TEXT + " ", "a")
    skip, stats = relevance_filter([same], [CAT], HashingEmbedder(), floor=0.0, min_gap=0.01)
    assert (same.id, CAT.id) in skip and stats.n_skipped == 1


def test_pipeline_records_the_cascade_and_embedding_mode_makes_no_vote_calls(orthogonal_csv):
    comparisons = load_comparisons(orthogonal_csv)
    provider = fake_provider("keyword")
    cascade = run(
        comparisons, llm=LLM(provider, progress=False), embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", cascade=True)
    )
    meta = cascade.constitution.metadata
    assert meta["cascade"]["n_items"] == len(cascade.votes)
    assert meta["cascade"]["n_skipped"] == sum(v.raw.startswith(SKIPPED) for v in cascade.votes)
    n_style = len(style_principles())
    assert meta["candidate_origins"] == {"llm": len(cascade.candidates) - n_style, "surface": n_style}
    # the cascade never skips a style principle: they are voted exactly, with no call
    style_ids = {p.id for p in style_principles()}
    style_votes = [v for v in cascade.votes if v.principle_id in style_ids]
    assert len(style_votes) == n_style * len(comparisons) and not any(v.raw.startswith(SKIPPED) for v in style_votes)
    assert sum(v.value in ("for", "against") for v in style_votes) > len(comparisons)

    provider = fake_provider("keyword")
    embedding = run(
        comparisons,
        llm=LLM(provider, progress=False),
        embedder=HashingEmbedder(),
        config=RunConfig(model="fake/keyword", vote_mode="embedding"),
    )
    assert len(provider.requests) == len(comparisons)  # proposals only
    assert "cascade" not in embedding.constitution.metadata
    assert len(embedding.votes) == len(embedding.tested) * len(comparisons)


@pytest.mark.slow
def test_minilm_scorer_on_hand_made_pairs():
    from icai.embed import get_embedder

    embedder = get_embedder("minilm", device="cpu")
    cat_story = "Mittens the cat knocked a cup off the table, then purred innocently and curled up in the sun."
    dog_story = "Rex the dog chewed a slipper, wagged his tail and fetched the ball for the whole afternoon."
    pairs = [Comparison("x", dog_story, cat_story, "b"), Comparison("y", cat_story, dog_story, "b")]
    cat = Principle.from_text("Select the response that features a cat as the pet.")
    lemon = Principle.from_text("Select the response that recommends lemon ice cream.")
    votes = {(v.comparison_id, v.principle_id): v for v in vote_by_embedding(pairs, [cat, lemon], embedder)}
    assert votes[("x", cat.id)].picks == ("b",) and votes[("x", cat.id)].value == "for"
    assert votes[("y", cat.id)].picks == ("a",) and votes[("y", cat.id)].value == "against"
    assert {votes[(c.id, lemon.id)].value for c in pairs} == {"abstain"}
    skip, stats = relevance_filter(pairs, [cat, lemon], embedder)
    assert set(skip) == {("x", lemon.id), ("y", lemon.id)} and stats.n_skipped == 2
