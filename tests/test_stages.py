import json

from apprun import keyword_llm
from testdata import CAT, DOG, PAIRS

from icai.cluster import cluster
from icai.debias import combine_picks
from icai.embed import HashingEmbedder
from icai.llm import LLM
from icai.llm.fake import FakeProvider
from icai.propose import propose
from icai.select import select
from icai.types import Principle, Vote
from icai.vote import vote


def test_combine_picks_cancels_position_bias():
    assert combine_picks(["a", "b"], "a") == "abstain"  # said "first" both times
    assert combine_picks(["a", "a"], "a") == "for"
    assert combine_picks(["b", "invalid"], "a") == "against"
    assert combine_picks(["invalid", "invalid"], "a") == "invalid"
    assert combine_picks(["neither", "neither"], "b") == "abstain"


def test_propose_one_call_per_pair_and_merges_sources():
    answer = json.dumps({"principles": ["Select the response that features a cat as the pet."]})
    provider = FakeProvider([("[PREFERRED]", answer)])
    principles = propose(PAIRS, LLM(provider, progress=False))
    assert len(provider.requests) == len(PAIRS)
    assert [p.text for p in principles] == ["Select the response that features a cat as the pet."]
    assert principles[0].source_ids == ("p1", "p2", "p3")


def test_propose_drops_template_echoes():
    provider = FakeProvider([("[PREFERRED]", '{"principles": ["Select the response that <YOUR PRINCIPLE TEXT>"]}')])
    assert propose(PAIRS, LLM(provider, progress=False)) == []


def test_cluster_is_seeded_and_keeps_one_per_cluster():
    texts = [
        "Select the response that mentions a cat by name.",
        "Select the response that mentions a cat by its name.",
        "Select the response that uses a blue colour for the shirt.",
        "Select the response that uses the blue colour for a shirt.",
    ]
    principles = [Principle.from_text(t, source_ids=[f"s{i}"]) for i, t in enumerate(texts)]
    first = cluster(principles, HashingEmbedder(), n_clusters=2, seed=3)
    again = cluster(principles, HashingEmbedder(), n_clusters=2, seed=3)
    assert first == again
    assert len(first.representatives) == 2
    assert sorted(r.cluster_size for r in first.representatives) == [2, 2]
    assert sorted(s for r in first.representatives for s in r.source_ids) == ["s0", "s1", "s2", "s3"]
    cat_rep = next(r for r in first.representatives if "cat" in r.text)
    assert {p.cluster for p in first.candidates if "cat" in p.text} == {cat_rep.cluster}


def test_cluster_with_fewer_principles_than_clusters():
    p = [Principle.from_text("Select the response that mentions a cat by name.")]
    result = cluster(p, HashingEmbedder(), n_clusters=40)
    assert len(result.representatives) == 1


def test_select_ranks_by_strength_and_filters():
    votes = vote(PAIRS, [CAT, DOG], keyword_llm())
    constitution, stats, _ = select([CAT, DOG], PAIRS, votes, max_principles=5)
    assert constitution.texts == [CAT.text]  # dog always disagrees with the labels
    assert {s.principle_id for s in stats} == {CAT.id, DOG.id}
    cat = constitution.stats_for(CAT.id)
    assert cat is not None and cat.n_for == 3 and cat.agreement == 1.0


def test_select_handles_no_votes_and_ties():
    tie_votes = [Vote("p1", CAT.id, "for", ("a", "a")), Vote("p2", CAT.id, "against", ("a", "a"))]
    constitution, _, _ = select([CAT], PAIRS, tie_votes)
    assert len(constitution) == 0  # 50% agreement is not better than chance
    empty, stats, _ = select([], PAIRS, [])
    assert len(empty) == 0 and stats == []
