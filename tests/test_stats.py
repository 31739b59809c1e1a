"""Statistics checked against hand-computed values on tiny tables."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from icai.debias import combine_picks
from icai.stats import (
    benjamini_hochberg,
    binomial_p,
    bootstrap_ci,
    cohen_kappa,
    direction,
    fixed_chance_kappa,
    length_confound,
    paired_bootstrap_diff,
    principle_stats,
    swap_consistency,
    wilson_ci,
)
from icai.types import Comparison, Principle, Vote

# Ten comparisons: c0..c4 prefer a, c5..c9 prefer b. Response a is the longer one in c0..c4.
COMPARISONS = [Comparison(f"c{i}", "x" * (20 if i < 5 else 5), "y" * 10, "a" if i < 5 else "b") for i in range(10)]
PREFERRED = {c.id: c.preferred for c in COMPARISONS}


def _vote(cid: str, pid: str, *picks: str) -> Vote:
    return Vote(cid, pid, combine_picks(picks, PREFERRED[cid]), picks)  # type: ignore[arg-type]


# p1: 6 for (c0 c1 c2 c5 c6 c7), 2 against (c3 c8), 1 abstain (c4, position-biased), 1 invalid (c9).
P1 = [
    _vote("c0", "p1", "a", "a"),
    _vote("c1", "p1", "a", "a"),
    _vote("c2", "p1", "a", "a"),
    _vote("c3", "p1", "b", "b"),
    _vote("c4", "p1", "a", "b"),
    _vote("c5", "p1", "b", "b"),
    _vote("c6", "p1", "b", "b"),
    _vote("c7", "p1", "b", "b"),
    _vote("c8", "p1", "a", "a"),
    _vote("c9", "p1", "invalid", "invalid"),
]
# p2 always picks a when it applies: 5 for (c0..c4), 3 against (c5 c6 c7), 2 abstain (c8 c9).
P2 = [_vote(f"c{i}", "p2", "a", "a") for i in range(8)] + [
    _vote("c8", "p2", "neither", "neither"),
    _vote("c9", "p2", "neither", "neither"),
]
# p3 votes on two pairs only, both for side a: chance agreement pe = 1.
P3 = [_vote("c0", "p3", "a", "a"), _vote("c1", "p3", "a", "a")]
UNKNOWN = [Vote("zz", "p1", "for", ("a", "a"))]  # a comparison not in the table: ignored


def test_principle_stats_hand_computed() -> None:
    s1, s2, s3 = principle_stats([Principle("p1", "one"), "p2", "p3"], COMPARISONS, P1 + P2 + P3 + UNKNOWN)

    assert (s1.n_for, s1.n_against, s1.n_abstain, s1.n_invalid) == (6, 2, 1, 1)
    assert s1.agreement == pytest.approx(6 / 8)
    assert s1.relevance == pytest.approx(8 / 10)  # 8 decided of 10 votes: abstain and invalid are not applicable
    # kappa with chance agreement 0.5: 2 * 6/8 - 1 = 0.5; strength = (6 - 2) / 10
    assert s1.kappa == pytest.approx(0.5)
    assert s1.strength == pytest.approx(0.4)
    # p1 over its 8 decided pairs:
    #   label: a a a a b b b b   (c0 c1 c2 c3 c5 c6 c7 c8)
    #   pred:  a a a b b b b a
    #   po = 6/8 = 0.75; P(pred=a) = 4/8, P(label=a) = 4/8
    #   pe = 0.5*0.5 + 0.5*0.5 = 0.5; empirical kappa = (0.75 - 0.5) / (1 - 0.5) = 0.5
    assert s1.cohen_kappa == pytest.approx(0.5)
    assert s1.agreement_ci == pytest.approx((0.40927543031016883, 0.9285207872478909), abs=1e-6)
    # two-sided exact: 2 * (C(8,6) + C(8,7) + C(8,8)) / 2^8 = 2 * 37 / 256
    assert s1.p_value == pytest.approx(74 / 256)
    assert s1.swap_consistency == pytest.approx(8 / 9)  # c4 is ("a", "b"); c9 has no valid pick

    assert (s2.n_for, s2.n_against, s2.n_abstain, s2.n_invalid) == (5, 3, 2, 0)
    assert s2.agreement == pytest.approx(5 / 8)
    assert s2.relevance == pytest.approx(8 / 10)
    # p2: kappa = 2 * 5/8 - 1 = 0.25; strength = (5 - 3) / 10
    assert s2.kappa == pytest.approx(0.25)
    assert s2.strength == pytest.approx(0.2)
    # empirical: label a a a a a b b b, pred a*8: po = 5/8; pe = 1 * 5/8 + 0 * 3/8 = 5/8; kappa = 0
    assert s2.cohen_kappa == pytest.approx(0.0)
    assert s2.p_value == pytest.approx(2 * (56 + 28 + 8 + 1) / 256)
    assert s2.swap_consistency == pytest.approx(1.0)

    # p3: 2 for of 2: kappa 1, strength 1; empirically pred a a, label a a: pe = 1, defined as 0.0
    assert (s3.n_for, s3.n_against, s3.relevance) == (2, 0, 1.0)
    assert (s3.kappa, s3.strength) == (1.0, 1.0)
    assert s3.cohen_kappa == 0.0
    assert s3.p_value == pytest.approx(0.5)  # 2 * (1/2)^2

    # BH over p = (74/256, 186/256, 0.5): ranks give 3p, 1.5p, p = 0.867, 0.75, 0.727 -> all 0.7265625
    assert [s.q_value for s in (s1, s2, s3)] == pytest.approx([186 / 256] * 3)
    assert all(isinstance(s.length_confounded, bool) for s in (s1, s2, s3))


def test_principle_stats_no_votes() -> None:
    (s,) = principle_stats(["p9"], COMPARISONS, P1)
    assert (s.n_total, s.agreement, s.relevance, s.kappa, s.strength, s.cohen_kappa) == (0, None, 0.0, None, None, None)
    assert s.agreement_ci == (0.0, 1.0)
    assert s.p_value == 1.0
    assert s.swap_consistency is None


def test_wilson_closed_form() -> None:
    z = 1.959963984540054
    n, p = 8, 0.75
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_ci(6, 8) == pytest.approx((center - half, center + half), abs=1e-6)
    assert wilson_ci(0, 0) == (0.0, 1.0)
    lo, hi = wilson_ci(0, 10)
    assert lo == 0.0 and 0 < hi < 0.5
    assert wilson_ci(6, 8, confidence=0.99)[0] < wilson_ci(6, 8)[0]


def test_binomial_p() -> None:
    # 2 * (C(10,9) + C(10,10)) / 2^10 = 22 / 1024
    assert binomial_p(9, 10) == pytest.approx(22 / 1024)
    assert binomial_p(5, 10) == pytest.approx(1.0)
    assert binomial_p(0, 0) == 1.0


def test_benjamini_hochberg() -> None:
    # sorted 0.005 0.01 0.03 0.04 -> 4p/rank = 0.02 0.02 0.04 0.04, already monotone
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # Benjamini & Hochberg (1995), 15 p-values: at FDR 0.05 exactly the four smallest are rejected
    p = [
        0.0001,
        0.0004,
        0.0019,
        0.0095,
        0.0201,
        0.0278,
        0.0298,
        0.0344,
        0.0459,
        0.3240,
        0.4262,
        0.5719,
        0.6528,
        0.7590,
        1.0,
    ]
    q = benjamini_hochberg(p)
    assert sum(v <= 0.05 for v in q) == 4
    assert q[3] == pytest.approx(0.0095 * 15 / 4)
    assert q[4] == pytest.approx(0.0201 * 15 / 5)  # min over ranks >= 5 is at rank 5
    assert all(a <= b for a, b in itertools.pairwise(q))
    assert q[-1] == 1.0
    assert benjamini_hochberg([]) == []


def test_principle_stats_only_abstains() -> None:
    # votes but no side taken: agreement undefined, kappa 0 (agreement taken as 0.5, as Feedback Forensics does)
    votes = [_vote("c0", "p4", "neither", "neither"), _vote("c1", "p4", "invalid", "invalid")]
    (s,) = principle_stats(["p4"], COMPARISONS, votes)
    assert (s.n_abstain, s.n_invalid, s.agreement, s.relevance, s.kappa, s.strength) == (1, 1, None, 0.0, 0.0, 0.0)


def test_fixed_chance_kappa() -> None:
    assert fixed_chance_kappa(6, 2) == pytest.approx(0.5)
    assert fixed_chance_kappa(0, 4) == -1.0
    assert fixed_chance_kappa(3, 0) == 1.0
    assert fixed_chance_kappa(0, 0) == 0.0
    with pytest.raises(ValueError):
        fixed_chance_kappa(-1, 2)


def test_cohen_kappa_edges() -> None:
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["a", "b"], ["a", "b"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert cohen_kappa(["b", "b"], ["b", "b"]) == 0.0
    with pytest.raises(ValueError):
        cohen_kappa(["a"], [])


def test_bootstrap_is_seeded_and_brackets_mean() -> None:
    values = np.arange(20, dtype=float)
    ci = bootstrap_ci(values, seed=3)
    assert ci == bootstrap_ci(values, seed=3)
    assert ci[0] < values.mean() < ci[1]
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    mean, (lo, hi) = paired_bootstrap_diff([1, 1, 0, 1], [0, 1, 0, 0])
    assert mean == pytest.approx(0.5)
    assert lo <= mean <= hi
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1, 2], [1])


def test_direction_and_swap_consistency() -> None:
    def v(*picks: str) -> Vote:
        return Vote("c", "p", "abstain", picks)  # type: ignore[arg-type]

    assert direction(v("a", "a")) == 1
    assert direction(v("a", "neither")) == 1
    assert direction(v("b", "invalid")) == -1
    assert direction(v("a", "b")) == 0
    assert direction(v("invalid", "invalid")) == 0
    assert direction(v()) == 0
    votes = [v("a", "a"), v("b", "b"), v("neither", "neither"), v("a", "b"), v("a", "invalid"), v()]
    assert swap_consistency(votes) == pytest.approx(3 / 4)  # the last two have < 2 valid picks
    assert swap_consistency([v("a", "invalid")]) is None


def test_length_confound_flags_longer_principle() -> None:
    rng = np.random.default_rng(0)
    length_diff = rng.normal(0, 200, 300)
    labels = (length_diff + rng.normal(0, 150, 300) > 0).astype(int)  # humans prefer longer, noisily
    picks_longer = np.sign(length_diff).astype(int)
    p_alone, p_adjusted, confounded = length_confound(picks_longer, labels, length_diff)
    assert p_alone is not None and p_alone < 0.05
    assert p_adjusted is not None and p_adjusted >= 0.05
    assert confounded

    unrelated = rng.choice([-1, 0, 1], 300)
    assert length_confound(unrelated, labels, length_diff)[2] is False

    # a principle that tracks the label itself stays significant after adjusting for length
    tracks_label = np.where(rng.random(300) < 0.8, 2 * labels - 1, 1 - 2 * labels)
    p_alone, p_adjusted, confounded = length_confound(tracks_label, labels, length_diff)
    assert p_adjusted is not None and p_adjusted < 0.05
    assert not confounded


def test_length_confound_degenerate_inputs() -> None:
    # perfect separation
    assert length_confound([1, 1, -1, -1], [1, 1, 0, 0], [5, 3, -2, -1]) == (None, None, False)
    # constant direction, constant label, constant length
    assert length_confound([0, 0, 0, 0], [1, 0, 1, 0], [5, 3, -2, -1])[:2] == (None, None)
    assert length_confound([1, -1, 1, -1], [1, 1, 1, 1], [0, 0, 0, 0]) == (None, None, False)
    assert length_confound([1, -1, 0, 1, -1, 0], [1, 0, 1, 0, 0, 1], [0] * 6)[1] is None
    assert length_confound([], [], []) == (None, None, False)


def test_a_paired_difference_that_is_the_same_on_every_pair_keeps_an_interval_that_shrinks_with_n() -> None:
    # a percentile bootstrap of identical differences is the point itself: certainty from 9 pairs
    (mean9, (lo9, hi9)), (mean90, (lo90, hi90)) = (paired_bootstrap_diff([1.0] * n, [0.5] * n) for n in (9, 90))
    assert mean9 == mean90 == 0.5
    assert lo9 < 0.5 <= hi9 and lo90 < 0.5 <= hi90
    assert lo9 < lo90  # more pairs, a tighter interval
    assert -1.0 <= lo9 and hi9 <= 1.0


def test_a_paired_difference_interval_stays_within_what_the_difference_can_be():
    """bench/recovery.py's case: the constitution scores 1 on every pair where the default scores 0.5, so the
    difference is +0.5 on each; against a 0.500 baseline no constitution can do better than +0.500."""
    from icai.stats import clip_interval, constant_mean_interval

    mean, (low, high) = paired_bootstrap_diff([1.0] * 16, [0.5] * 16)
    assert mean == 0.5 and high == 0.5 and 0 < low < 0.5
    assert constant_mean_interval(0.5, 16)[1] > 0.5  # the unclipped interval reached past it
    # a bootstrap interval is clipped too, to [0 - mean(y), 1 - mean(y)]
    x, y = [1, 1, 1, 1, 0.5, 1, 1, 1, 1, 0], [0.5, 0, 0.5, 1, 0.5, 0.5, 0, 0.5, 0, 0.5]
    mean, (low, high) = paired_bootstrap_diff(x, y)
    assert -0.4 <= low <= high <= 1 - sum(y) / len(y)
    assert paired_bootstrap_diff(x, y, value_range=None)[1][1] > high  # the unclipped bootstrap reaches past it
    assert clip_interval((-2.0, 3.0), -1.0, 1.0) == (-1.0, 1.0)
    assert clip_interval((0.2, 0.3), -1.0, 1.0) == (0.2, 0.3)
