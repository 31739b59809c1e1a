"""End to end through the orchestrator with the packaged keyword fake: tests the machinery, not a model."""

import json
import re

from apprun import keyword_llm

from icai.config import RunConfig
from icai.embed import HashingEmbedder
from icai.llm import LLM, ResponseCache
from icai.llm.fake import fake_provider
from icai.pipeline import run
from icai.store import RunStore
from icai.types import Constitution

RULES = {"cat": re.compile(r"\bcat\b|feline|kitten"), "blue": re.compile(r"\bblue\b"), "lemon": re.compile(r"\blemon")}


# The recovery tests below are about the keyword fake's own principles, so they leave the style principles out: on
# this set the shorter story is the preferred one in 21 of 30 pairs, and "is shorter" takes the cat rule's place
# (tests/test_style.py shows it).


def recovered(constitution: Constitution, top: int = 5) -> set[str]:
    texts = [t.lower() for t in constitution.texts[:top]]
    return {rule for rule, pattern in RULES.items() if any(pattern.search(t) for t in texts)}



def test_recovers_the_three_hidden_rules(orthogonal, tmp_path):
    store = RunStore(tmp_path / "run")
    result = run(orthogonal, llm=keyword_llm(), embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", style_principles=False), store=store)
    assert recovered(result.constitution) == {"cat", "blue", "lemon"}
    for s in result.constitution.stats:
        assert s.agreement is not None and s.agreement > 0.5
    saved = Constitution.load(tmp_path / "run" / "constitution.json")
    assert saved.texts == result.constitution.texts
    assert saved.metadata["dataset_hash"] == result.constitution.metadata["dataset_hash"]
    assert saved.metadata["usage"]["calls"] > 0
    for name in ("principles.csv", "votes.csv", "comparisons.csv", "config.json", "proposals.json", "clusters.json"):
        assert (tmp_path / "run" / name).exists(), name


def test_held_out_evaluation_and_flip_check(orthogonal, tmp_path):
    config = RunConfig(model="fake/keyword", test_size=0.3, flip_check=True)
    result = run(orthogonal, llm=keyword_llm(), embedder=HashingEmbedder(), config=config, store=RunStore(tmp_path))
    assert result.evaluation is not None
    scores = {s.name: s for s in result.evaluation.scores}
    assert scores["constitution"].agreement > scores["default"].agreement
    assert scores["constitution_vs_flipped_labels"].agreement < 0.5
    flipped_texts = " ".join(result.flipped.constitution.texts).lower()  # type: ignore[union-attr]
    assert any(w in flipped_texts for w in ("dog", "green", "raspberry"))
    assert json.loads((tmp_path / "evaluation.json").read_text())["curve"]["agreement"]
    assert len(result.train) + len(result.test) == len(orthogonal)


def test_second_run_makes_no_model_calls(orthogonal, tmp_path):
    cache_path = tmp_path / "cache.sqlite"
    first = keyword_llm(ResponseCache(cache_path))
    a = run(orthogonal, llm=first, embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", style_principles=False))
    assert first.usage.calls > 0
    second = keyword_llm(ResponseCache(cache_path))
    b = run(orthogonal, llm=second, embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", style_principles=False))
    assert second.usage.calls == 0
    assert second.usage.cache_hits == first.usage.calls
    assert a.constitution.texts == b.constitution.texts


def test_rerun_on_a_store_reuses_stage_checkpoints(orthogonal, tmp_path):
    store = RunStore(tmp_path)
    run(orthogonal, llm=keyword_llm(), embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", style_principles=False), store=store)
    provider = fake_provider("keyword")
    again = run(
        orthogonal, llm=LLM(provider, progress=False), embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", style_principles=False), store=store
    )
    assert provider.requests == []  # propose, cluster and vote all came from the checkpoints
    assert recovered(again.constitution) == {"cat", "blue", "lemon"}
    # a changed option invalidates the stages it affects, and only those
    provider = fake_provider("keyword")
    run(
        orthogonal,
        llm=LLM(provider, progress=False),
        embedder=HashingEmbedder(),
        config=RunConfig(model="fake/keyword", style_principles=False, vote_batch_size=7),
        store=store,
    )
    assert provider.requests and all("[PREFERRED]" not in r.prompt_text for r in provider.requests)


def test_same_seed_same_constitution(orthogonal):
    texts = [
        run(orthogonal, llm=keyword_llm(), embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", n_clusters=10)).constitution.texts
        for _ in range(2)
    ]
    assert texts[0] == texts[1]
