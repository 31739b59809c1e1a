"""Adaptive voting, prompt-prefix caching and large-scale clustering, with simulated annotators."""

import json
import os
import re

import numpy as np
import pytest

from icai.adaptive import BettingInterval, Interval, decide, hoeffding_serfling_radius, schedule, vote_adaptive
from icai.cluster import cluster
from icai.embed import HashingEmbedder
from icai.llm import LLM, Request
from icai.llm.base import Completion
from icai.select import select
from icai.types import Comparison, Principle
from icai.vote import vote

N_PAIRS = 240
# (relevance, agreement) per principle: three clearly good, two middling, five useless or harmful
PROFILES = [(0.9, 0.95), (0.8, 0.95), (0.85, 0.9), (0.5, 0.7), (0.4, 0.65)] + [(0.5, 0.5)] * 3 + [(0.3, 0.2)] * 2


def make_pairs(n: int = N_PAIRS) -> list[Comparison]:
    return [Comparison(f"c{i}", f"answer a{i}", f"answer b{i}", "a" if i % 2 else "b", prompt="p") for i in range(n)]


def make_principles(n: int = len(PROFILES)) -> list[Principle]:
    return [Principle.from_text(f"Select the response that has hidden property number {j}.") for j in range(n)]


def direction_matrix(pairs: list[Comparison], seed: int = 1) -> np.ndarray:
    """+1 when principle j picks pair i's preferred side, -1 the other, 0 neither."""
    rng = np.random.default_rng(seed)
    rel = np.array([r for r, _ in PROFILES])
    agr = np.array([a for _, a in PROFILES])
    relevant = rng.random((len(pairs), len(PROFILES))) < rel
    agrees = rng.random((len(pairs), len(PROFILES))) < agr
    return np.where(relevant, np.where(agrees, 1, -1), 0)


class MatrixAnnotator:
    """Answers icai's batched vote prompts from a fixed direction matrix, in whichever order the pair is shown."""

    model = "fake/matrix"

    def __init__(self, pairs: list[Comparison], matrix: np.ndarray) -> None:
        self.pairs = {c.text_a: (i, c) for i, c in enumerate(pairs)} | {c.text_b: (i, c) for i, c in enumerate(pairs)}
        self.matrix = matrix
        self.requests: list[Request] = []

    def complete(self, request: Request) -> Completion:
        self.requests.append(request)
        prompt = request.prompt_text
        shown_a = re.search(r"\[RESPONSE A\]\n(.*?)\n\[/RESPONSE A\]", prompt, re.DOTALL).group(1)  # type: ignore[union-attr]
        i, comp = self.pairs[shown_a]
        a_is_a = shown_a == comp.text_a
        rules = re.findall(r"^\d+\. .*number (\d+)\.$", prompt, re.MULTILINE)
        answer = {}
        for n, j in enumerate(rules, start=1):
            d = self.matrix[i, int(j)]
            side = comp.preferred if d > 0 else comp.rejected if d < 0 else None
            answer[str(n)] = "neither" if side is None else ("A" if (side == "a") == a_is_a else "B")
        return Completion(json.dumps(answer), input_tokens=len(prompt) // 4, output_tokens=8 * len(rules))


@pytest.fixture
def setup() -> tuple[list[Comparison], list[Principle], MatrixAnnotator]:
    pairs = make_pairs()
    return pairs, make_principles(), MatrixAnnotator(pairs, direction_matrix(pairs))


def top_k_exhaustive(pairs, principles, annotator, k):
    votes = vote(pairs, principles, LLM(annotator, progress=False), batch_size=20)
    constitution, _, _ = select(principles, pairs, votes, max_principles=k, method="strength", duplicate_agreement=1.01)
    return {p.id for p in constitution.principles}, len(votes)


def test_adaptive_stops_bad_principles_early_and_keeps_good_ones(setup):
    pairs, principles, annotator = setup
    result = vote_adaptive(pairs, principles, LLM(annotator, progress=False), k=3, min_pairs=20, round_size=20)
    good, bad = [p.id for p in principles[:3]], [p.id for p in principles[5:]]
    assert all(result.decisions[pid] == "in" for pid in good)
    assert all(result.decisions[pid] == "out" for pid in bad)
    assert all(result.pairs_tested[pid] < len(pairs) for pid in bad)
    assert len(result.votes) < len(pairs) * len(principles)
    assert sum(result.pairs_tested.values()) == len(result.votes)
    assert result.calls == len(annotator.requests)


def test_adaptive_reaches_the_exhaustive_top_k(setup):
    pairs, principles, annotator = setup
    k = 3
    expected, n_exhaustive = top_k_exhaustive(pairs, principles, annotator, k)
    result = vote_adaptive(pairs, principles, LLM(annotator, progress=False), k=k, min_pairs=20, round_size=20)
    assert set(result.top) == expected
    constitution, stats, _ = select(principles, pairs, list(result.votes), max_principles=k, method="strength", duplicate_agreement=1.01)
    assert {p.id for p in constitution.principles} == expected
    assert len(result.votes) < n_exhaustive
    # the stored per-principle count says how many pairs each was tested on
    assert {s.principle_id: s.n_pairs_tested for s in stats} == dict(result.pairs_tested)


def test_adaptive_is_seeded(setup):
    pairs, principles, annotator = setup
    runs = [
        vote_adaptive(pairs, principles, LLM(annotator, progress=False), k=3, min_pairs=20, round_size=20, seed=s)
        for s in (7, 7, 8)
    ]
    assert runs[0].votes == runs[1].votes
    assert runs[0].pairs_tested == runs[1].pairs_tested
    first_pairs = [v.comparison_id for v in runs[0].votes[:20]]
    assert first_pairs != [v.comparison_id for v in runs[2].votes[:20]]


def test_adaptive_respects_min_pairs(setup):
    pairs, principles, annotator = setup
    result = vote_adaptive(pairs, principles, LLM(annotator, progress=False), k=3, min_pairs=100, round_size=10)
    assert min(result.pairs_tested.values()) >= 100
    few = pairs[:30]
    small = vote_adaptive(few, principles, LLM(annotator, progress=False), k=3, min_pairs=50)
    assert set(small.pairs_tested.values()) == {30}
    assert small.rounds == 1


def test_adaptive_one_order_halves_calls_and_keeps_picks_in_the_pairs_own_sides(setup):
    pairs, principles, annotator = setup
    both = vote_adaptive(pairs, principles, LLM(annotator, progress=False), k=3, min_pairs=20, round_size=20)
    n_both = len(annotator.requests)
    annotator.requests.clear()
    one = vote_adaptive(
        pairs, principles, LLM(annotator, progress=False), k=3, min_pairs=20, round_size=20, both_orders=False
    )
    assert one.calls == len(annotator.requests)
    # all principles fit one batch: one call per pair tested, instead of two
    assert (one.calls, both.calls, n_both) == (max(one.pairs_tested.values()), 2 * max(both.pairs_tested.values()), both.calls)
    shown_first = [re.search(r"\[RESPONSE A\]\n(.*?)\n", r.prompt_text).group(1) for r in annotator.requests]  # type: ignore[union-attr]
    assert any(t.startswith("answer b") for t in shown_first) and any(t.startswith("answer a") for t in shown_first)
    by_id = {c.id: c for c in pairs}
    for v in one.votes:
        assert len(v.picks) == 1
        comp = by_id[v.comparison_id]
        expected = {"for": comp.preferred, "against": comp.rejected, "abstain": "neither"}[v.value]
        assert v.picks == (expected,)
    assert set(one.top) == set(both.top)


def test_adaptive_with_fewer_principles_than_k_accepts_positive_ones(setup):
    pairs, principles, annotator = setup
    result = vote_adaptive(pairs, principles[:2], LLM(annotator, progress=False), k=5, min_pairs=20)
    assert result.decisions == {principles[0].id: "in", principles[1].id: "in"}
    assert result.rounds == 1


def test_bounds_and_decisions():
    assert hoeffding_serfling_radius(0, 10, 0.05) == float("inf")
    assert hoeffding_serfling_radius(10, 10, 0.05) == 0.0  # every pair seen: the score is exact
    r = [hoeffding_serfling_radius(n, 1000, 0.01) for n in (10, 100, 500)]
    assert r[0] > r[1] > r[2] > 0
    assert schedule(100, min_pairs=32, round_size=16) == [32, 16, 16, 16, 16, 4]
    assert schedule(10, min_pairs=32, round_size=16) == [10]
    assert schedule(21, min_pairs=8, round_size=16) == [8, 13]  # the first round is min_pairs, even when smaller
    ivs = {
        "top": Interval(50, 0.8, 0.6, 1.0),
        "mid": Interval(50, 0.3, 0.1, 0.5),
        "low": Interval(50, 0.1, -0.1, 0.35),
        "neg": Interval(50, -0.2, -0.4, 0.0),
    }
    assert decide(ivs, set(ivs), 1) == {"top": "in", "mid": "out", "low": "out", "neg": "out"}
    assert decide(ivs, {"top"}, 1) == {"top": "in"}  # decided principles still count in the order statistics
    assert decide(ivs, set(ivs), 2) == {"top": "in", "neg": "out"}


def test_betting_interval_covers_the_population_mean_and_adapts_to_variance():
    rng = np.random.default_rng(0)
    population = rng.choice([-1, 0, 1], size=400, p=[0.1, 0.7, 0.2])
    misses = 0
    for _ in range(20):
        draw = rng.permutation(population)
        iv = BettingInterval(len(population), 0.05)
        for start in range(0, 200, 50):
            iv.update(draw[start : start + 50].tolist())
            lower, upper = iv.interval()
            misses += not lower <= population.mean() <= upper
    assert misses <= 2  # at most 5% of sequences ever miss; none should here
    quiet = BettingInterval(1000, 0.01)
    quiet.update([0] * 190 + [1] * 10)  # mostly abstains: low variance
    lower, upper = quiet.interval()
    assert upper - lower < 2 * hoeffding_serfling_radius(200, 1000, 0.01)
    full = BettingInterval(50, 0.05)
    full.update([1, 0, -1, 1, 1] * 10)
    assert full.interval() == pytest.approx((0.4, 0.4))


def test_tolerance_settles_near_ties():
    ivs = {"a": Interval(50, 0.5, 0.3, 0.7), "b": Interval(50, 0.45, 0.25, 0.65), "c": Interval(50, 0.1, -0.1, 0.3)}
    assert decide(ivs, set(ivs), 1) == {}
    assert decide(ivs, set(ivs), 1, tolerance=0.3) == {"c": "out"}
    assert decide(ivs, set(ivs), 1, tolerance=0.4) == {"a": "in", "b": "out", "c": "out"}


def test_vote_requests_share_the_pair_prefix_and_cached_tokens_are_counted():
    """Prompts put the pair first and the principles last, and each order's batches are consecutive,
    so a provider's prefix cache can serve the pair; the tokens it reports as cached are summed."""

    class PrefixCachingProvider:
        model = "fake/prefix-cache"

        def __init__(self) -> None:
            self.prompts: list[str] = []

        def complete(self, request: Request) -> Completion:
            prompt = request.prompt_text
            cached = max((len(os.path.commonprefix([prompt, seen])) for seen in self.prompts), default=0)
            self.prompts.append(prompt)
            return Completion('{"1": "A"}', input_tokens=len(prompt), output_tokens=3, cached_input_tokens=cached)

    pairs = make_pairs(2)
    principles = make_principles(4)
    provider = PrefixCachingProvider()
    llm = LLM(provider, progress=False)
    vote(pairs, principles, llm, batch_size=2)
    prompts = provider.prompts
    assert len(prompts) == 2 * 2 * 2  # pairs x orders x batches
    for i, prompt in enumerate(prompts):
        pair_end = prompt.index("Rules:")
        assert prompt.index("[/RESPONSE B]") < pair_end  # the pair comes first
        assert all(p.text not in prompt[:pair_end] for p in principles)  # the principles last
        if i % 2:  # the second batch of the same pair in the same order reuses everything up to the rules
            assert prompts[i][:pair_end] == prompts[i - 1][:pair_end]
    expected = sum(
        max((len(os.path.commonprefix([p, seen])) for seen in prompts[:i]), default=0) for i, p in enumerate(prompts)
    )
    assert llm.usage.cached_input_tokens == expected
    assert llm.usage.input_tokens == sum(len(p) for p in prompts)


def test_cached_tokens_are_not_counted_for_cache_hits(tmp_path):
    from icai.llm.cache import ResponseCache

    class CachingProvider:
        model = "fake/cached"

        def complete(self, request: Request) -> Completion:
            return Completion("{}", input_tokens=10, cached_input_tokens=6)

    llm = LLM(CachingProvider(), cache=ResponseCache(tmp_path / "c.sqlite"), progress=False)
    request = Request.chat("hello")
    llm.complete(request)
    llm.complete(request)
    assert (llm.usage.calls, llm.usage.cache_hits, llm.usage.cached_input_tokens) == (1, 1, 6)


def test_cluster_of_thousands_uses_minibatch_kmeans_and_is_seeded():
    words = [f"w{i}" for i in range(60)]
    texts = [f"Select the response that mentions {words[i % 60]} and {words[(i * 7) % 60]} item {i}." for i in range(3000)]
    principles = [Principle.from_text(t, source_ids=[f"s{i}"]) for i, t in enumerate(texts)]
    first = cluster(principles, HashingEmbedder(), n_clusters=30, seed=0, minibatch_above=1000)
    again = cluster(principles, HashingEmbedder(), n_clusters=30, seed=0, minibatch_above=1000)
    assert first == again
    assert len(first.candidates) == 3000
    assert 1 < len(first.representatives) <= 30
    assert sum(r.cluster_size for r in first.representatives) == 3000
    assert sorted(s for r in first.representatives for s in r.source_ids) == sorted(f"s{i}" for i in range(3000))
    by_cluster = {r.cluster: r for r in first.representatives}
    assert all(by_cluster[c.cluster].cluster == c.cluster for c in first.candidates)


def test_cluster_representative_is_nearest_member_with_id_tiebreak():
    texts = ["Select the response that uses red paint on walls."] * 1 + [
        "Select the response that uses red paint on the walls.",
        "Select the response that uses blue ink for letters.",
        "Select the response that uses blue ink for the letters.",
    ]
    principles = [Principle.from_text(t) for t in texts]
    for minibatch_above in (1, 10):
        result = cluster(principles, HashingEmbedder(), n_clusters=2, seed=0, minibatch_above=minibatch_above)
        vectors = HashingEmbedder().encode(texts).astype(np.float64)
        for rep in result.representatives:
            members = [i for i, c in enumerate(result.candidates) if c.cluster == rep.cluster]
            centroid = vectors[members].mean(axis=0)
            dists = {principles[i].id: round(float(np.linalg.norm(vectors[i] - centroid)), 6) for i in members}
            best = min(dists.items(), key=lambda t: (t[1], t[0]))[0]
            assert rep.id == best


def test_pipeline_adaptive_run_records_pairs_tested(tmp_path, orthogonal_csv):
    import csv

    from icai.config import RunConfig
    from icai.io import load_comparisons
    from icai.llm.fake import fake_provider
    from icai.pipeline import run
    from icai.store import RunStore
    from icai.types import Constitution

    comparisons = load_comparisons(orthogonal_csv)
    config = RunConfig(model="fake/keyword", embedder="hash", adaptive=True, min_pairs=8, propose_sample=10, n_clusters=8)
    result = run(
        comparisons, llm=LLM(fake_provider("keyword"), progress=False), embedder=HashingEmbedder(), config=config,
        store=RunStore(tmp_path),
    )  # fmt: skip
    sources = {s for p in result.candidates for s in p.source_ids}
    assert 0 < len(sources) <= 10
    assert all(s.n_pairs_tested is not None and s.n_pairs_tested >= 8 for s in result.stats)
    with open(tmp_path / "principles.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "n_pairs_tested" in rows[0]
    saved = Constitution.load(tmp_path / "constitution.json")
    assert all(s.n_pairs_tested is not None for s in saved.stats)


def test_cli_adaptive_options(capsys):
    from icai.cli import build_parser, main

    args = build_parser().parse_args(
        ["run", "d.csv", "--out", "o", "--adaptive", "--confidence", "0.9", "--min-pairs", "10", "--one-order",
         "--propose-sample", "5"]
    )  # fmt: skip
    assert (args.adaptive, args.confidence, args.min_pairs, args.one_order, args.propose_sample) == (True, 0.9, 10, True, 5)
    assert build_parser().parse_args(["run", "d.csv", "--out", "o"]).adaptive is False
    assert main(["run", "d.csv", "--out", "o", "--adaptive", "--confidence", "1.5"]) == 2
    assert "--confidence" in capsys.readouterr().err
