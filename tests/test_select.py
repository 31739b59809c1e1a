"""Selection: greedy forward selection, duplicate merging, verdicts, and bootstrap stability."""

import numpy as np
import pytest

from icai.debias import combine_picks
from icai.select import (
    VoteMatrix,
    filtered_q_values,
    selection_stability,
    significance_note,
)
from icai.select import select as select_principles
from icai.stats import principle_stats
from icai.types import Comparison, Principle, Vote

RULES = ("cat", "blue", "lemon")


def world(n: int = 90, seed: int = 0, noise: float = 0.0):
    """Each pair differs on one of three hidden rules; three paraphrases per rule, a random rule and an anti rule.

    Paraphrase k of a rule votes on the pairs of its rule (the preferred side, flipped with
    probability `noise`) and says "neither" elsewhere.
    """
    rng = np.random.default_rng(seed)
    pairs = [Comparison(f"c{i}", f"a{i}", f"b{i}", "a" if rng.random() < 0.5 else "b") for i in range(n)]
    principles: list[Principle] = []
    votes: list[Vote] = []

    def add(p: Principle, side_of) -> None:  # side_of(i, pair) -> "a" | "b" | "neither"
        principles.append(p)
        for i, c in enumerate(pairs):
            pick = side_of(i, c)
            votes.append(Vote(c.id, p.id, combine_picks([pick, pick], c.preferred), (pick, pick)))

    for r, rule in enumerate(RULES):
        for k in range(3):
            text = f"Select the response that {['mentions', 'names', 'talks about'][k]} a {rule}."

            def side(i, c, r=r):
                if i % 3 != r:
                    return "neither"
                right = rng.random() >= noise
                return c.preferred if right else c.rejected

            add(Principle.from_text(text), side)
    add(Principle.from_text("Select the response that is random."), lambda i, c: "a" if rng.random() < 0.5 else "b")
    add(Principle.from_text("Select the response that mentions a dog."), lambda i, c: c.rejected if i % 3 == 0 else "neither")
    return pairs, principles, votes


def rule_of(p: Principle) -> str | None:
    return next((r for r in RULES if r in p.text), None)


def test_greedy_keeps_one_principle_per_rule_and_records_merges():
    pairs, principles, votes = world()
    constitution, stats, selection = select_principles(principles, pairs, votes, max_principles=5)
    rules = [rule_of(p) for p in constitution.principles]
    assert sorted(r for r in rules if r) == sorted(RULES) and len(rules) == 3
    assert selection.method == "greedy" and len(selection.steps) == 3
    # the paraphrases are merged into the kept principle of their rule
    by_id = {p.id: p for p in principles}
    assert len(selection.merges) == 6
    assert all(rule_of(by_id[m.kept]) == rule_of(by_id[m.merged]) for m in selection.merges)
    # training agreement rises at every step, to 1.0 once all three rules are in
    assert [s.agreement for s in selection.steps] == pytest.approx(sorted(s.agreement for s in selection.steps))
    assert selection.steps[-1].agreement == pytest.approx(1.0)
    assert {s.verdict for s in stats} <= {"significant", "exploratory"}


def test_strength_top_k_without_duplicates_and_never_a_losing_principle():
    pairs, principles, votes = world()
    constitution, _, selection = select_principles(principles, pairs, votes, method="strength", max_principles=5)
    texts = constitution.texts
    assert len({rule_of(p) for p in constitution.principles}) == len(constitution) == 3
    assert not any("dog" in t or "random" in t for t in texts)
    # without merging, strength fills the slots with paraphrases
    plain, _, _ = select_principles(
        principles, pairs, votes, method="strength", max_principles=5, duplicate_agreement=1.01
    )
    assert len({rule_of(p) for p in plain.principles}) < len(plain)
    assert selection.chosen == tuple(p.id for p in constitution.principles)


def test_no_principle_whose_agreement_interval_lies_at_or_below_half():
    pairs, principles, votes = world(noise=0.45, n=60)
    for method in ("greedy", "strength"):
        constitution, _, _ = select_principles(principles, pairs, votes, method=method)
        for s in constitution.stats:
            assert s.agreement is not None and s.agreement > 0.5
            assert s.agreement_ci is not None and s.agreement_ci[1] > 0.5


def test_greedy_stops_at_the_knee():
    pairs, principles, votes = world()
    few, _, selection = select_principles(principles, pairs, votes, max_principles=10)
    assert len(few) == 3  # a 4th principle adds nothing
    assert [s.gain for s in selection.steps] == pytest.approx([1 / 6] * 3)  # each rule decides a third of the pairs
    strict, _, _ = select_principles(principles, pairs, votes, max_principles=10, min_gain=0.2)
    assert len(strict) == 0


def test_significance_note_and_testable_family():
    pairs, principles, votes = world(n=90)
    strong, _, _ = select_principles(principles, pairs, votes)
    assert significance_note(strong, n_pairs=90) is None
    assert all(s.verdict == "significant" for s in strong.stats)
    few = pairs[:9]
    weak, stats, _ = select_principles(principles, few, votes)
    note = significance_note(weak, n_pairs=len(few))
    assert note is not None and "treat this list as hypotheses" in note and "9 pairs" in note
    # principles that decided too few pairs to ever reach significance stay out of the correction
    raw = principle_stats(principles, pairs, votes)
    filtered = filtered_q_values(raw)
    assert all(f.q_value == 1.0 for f, r in zip(filtered, raw, strict=True) if 2 * 0.5 ** (r.n_for + r.n_against) >= 0.05)
    assert all(f.q_value <= r.q_value + 1e-12 for f, r in zip(filtered, raw, strict=True) if f.q_value < 1.0)


def test_stability_separates_solid_from_shaky_principles():
    pairs, principles, votes = world(n=60, noise=0.3, seed=3)
    _, _, selection = select_principles(principles, pairs, votes)
    stab = selection_stability(principles, pairs, votes, selection, n_resamples=200, seed=1)
    again = selection_stability(principles, pairs, votes, selection, n_resamples=200, seed=1)
    assert stab == again
    freqs = list(stab.frequency.values())
    assert max(freqs) > 0.8 and min(freqs) < 0.5  # not constant
    assert stab.expected_overlap is not None and 0.0 < stab.expected_overlap < 1.0
    clean_pairs, clean_principles, clean_votes = world(n=60)
    _, _, clean_sel = select_principles(clean_principles, clean_pairs, clean_votes)
    clean = selection_stability(clean_principles, clean_pairs, clean_votes, clean_sel, n_resamples=100, seed=1)
    assert clean.expected_overlap is not None and clean.expected_overlap > stab.expected_overlap


def test_vote_matrix_counts_match_principle_stats():
    pairs, principles, votes = world(n=30, noise=0.2)
    m = VoteMatrix([p.id for p in principles], pairs, votes)
    for j, s in enumerate(principle_stats(principles, pairs, votes)):
        assert int((m.correct[:, j] == 1).sum()) == s.n_for
        assert int((m.correct[:, j] == -1).sum()) == s.n_against
        assert int(m.abstain[:, j].sum()) == s.n_abstain
        assert int(m.voted[:, j].sum()) == s.n_total


def test_selection_ranks_by_the_strength_principle_stats_reports():
    pairs, principles, votes = world(n=45, noise=0.25, seed=5)
    votes = votes + [Vote(pairs[0].id, principles[0].id, "invalid", ("invalid", "invalid"))]
    from icai.select import _column_stats

    m = VoteMatrix([p.id for p in principles], pairs, votes)
    computed = _column_stats(m, np.ones(m.n_pairs))["strength"]
    reported = [s.strength for s in principle_stats(principles, pairs, votes)]
    assert computed == pytest.approx(reported, abs=1e-12)


@pytest.mark.parametrize("weights", ["ones", "bootstrap", "fractional"])
def test_pairs_both_decided_and_alike_match_a_count_by_hand(weights: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The duplicate check's counts (`_shared`, products over blocks of rows) against a loop over pairs."""
    import importlib

    sel = importlib.import_module("icai.select")  # the package's name `icai.select` is the function
    monkeypatch.setattr(sel, "GRAM_BLOCK_ROWS", 7)  # several blocks and a short last one
    rng = np.random.default_rng(3)
    n, k = 50, 6
    m = VoteMatrix.from_directions([f"p{j}" for j in range(k)], rng.integers(-1, 2, size=(n, k)))
    w = {"ones": np.ones(n), "bootstrap": rng.multinomial(n, np.ones(n) / n).astype(float), "fractional": rng.random(n)}[weights]
    cols = [4, 0, 2, 5]
    both, alike = sel._shared(m, w, cols)
    for a, ja in enumerate(cols):
        for b, jb in enumerate(cols):
            x, y = m.correct[:, ja], m.correct[:, jb]
            decided = (x != 0) & (y != 0)
            assert both[a, b] == pytest.approx(float(w[decided].sum()), abs=1e-9)
            assert alike[a, b] == pytest.approx(float(w[decided & (x == y)].sum()), abs=1e-9)
    if weights != "fractional":  # whole weights: exact, in float32
        assert np.array_equal(both, np.round(both)) and np.array_equal(alike, np.round(alike))
