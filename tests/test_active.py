"""icai.active: the next pair to label, from hand-built vote matrices."""

from __future__ import annotations

import numpy as np
import pytest

from icai.active import (
    counts,
    information_gain,
    label_vector,
    membership,
    next_pair,
    side_matrix,
    stable_for,
)
from icai.types import Vote


def _world() -> tuple[np.ndarray, np.ndarray]:
    """40 labelled pairs settle principles 2-5 (2 and 3 always right, 4 and 5 a coin); 0 and 1 are unknown.

    Rows 40-43 are the candidates: 40 separates 0 (A) from 1 (B); 41: 0 and 1 agree; 42: nobody decides;
    43: all six pick A. Rows 44-73 are unlabelled pairs on which 0 picks A and 1 picks B (their relevance).
    """
    labelled = np.zeros((40, 6), dtype=np.int8)
    labelled[:, 2:] = 1
    labelled[:20, 4:] = -1
    candidates = np.array([[1, -1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0] * 6, [1] * 6], dtype=np.int8)
    extra = np.zeros((30, 6), dtype=np.int8)
    extra[:, 0], extra[:, 1] = 1, -1
    sides = np.vstack([labelled, candidates, extra])
    labels = np.concatenate([np.ones(40, dtype=np.int8), np.zeros(34, dtype=np.int8)])
    return sides, labels


def test_a_pair_that_separates_two_uncertain_principles_beats_one_where_they_agree() -> None:
    sides, labels = _world()
    gain = information_gain(sides, labels, k=3)
    assert gain[40] > gain[41] > 0
    assert gain[42] == pytest.approx(0.0, abs=1e-9)  # no principle decides it: a label teaches nothing
    assert np.all(np.isneginf(gain[:40]))  # labelled pairs are never offered
    choice = next_pair(sides, labels, k=3, random_share=0.0)
    assert choice is not None and choice.reason == "active" and choice.index in (40, *range(44, 74))
    assert sides[choice.index, 0] != sides[choice.index, 1]


def test_settled_principles_leave_nothing_to_learn() -> None:
    # one principle right on all 60 labelled pairs, the rest never decide: the constitution is known
    sides = np.zeros((80, 4), dtype=np.int8)
    sides[:, 0] = 1
    labels = np.concatenate([np.ones(60, dtype=np.int8), np.zeros(20, dtype=np.int8)])
    gain = information_gain(sides, labels, k=1)
    assert gain[60:].max() < 0.01
    assert membership(sides, labels, k=1) == frozenset({0})


def test_membership_needs_positive_strength_and_counts_follow_labels() -> None:
    sides = np.array([[1, -1], [1, -1], [1, 0], [-1, 1]], dtype=np.int8)
    labels = np.array([1, 1, 1, 0], dtype=np.int8)
    n_for, n_against = counts(sides, labels)
    assert n_for.tolist() == [3, 0] and n_against.tolist() == [0, 2]
    assert membership(sides, labels, k=2) == frozenset({0})  # principle 1 disagrees: never a member
    assert membership(sides, np.zeros(4, dtype=np.int8), k=2) == frozenset()  # no labels: nothing is known


def test_random_share_is_seeded_and_unlabelled_only() -> None:
    sides, labels = _world()
    picks = [next_pair(sides, labels, k=3, random_share=1.0, seed=s) for s in range(30)]
    assert all(c is not None and c.reason == "random" and labels[c.index] == 0 for c in picks)
    assert len({c.index for c in picks if c}) > 5
    again = [next_pair(sides, labels, k=3, random_share=1.0, seed=s) for s in range(30)]
    assert [c.index for c in picks if c] == [c.index for c in again if c]
    share = np.mean([next_pair(sides, labels, k=3, random_share=0.2, seed=s).reason == "random" for s in range(200)])  # type: ignore[union-attr]
    assert 0.1 < share < 0.3


def test_exclusions_and_exhaustion() -> None:
    sides, labels = _world()
    choice = next_pair(sides, labels, k=3, random_share=0.0, exclude=[40, *range(44, 74)])
    assert choice is not None and choice.index == 43  # the next most informative candidate
    everything = next_pair(sides, np.ones(len(labels), dtype=np.int8), k=3)
    assert everything is None
    with pytest.raises(ValueError):
        next_pair(sides, labels, k=3, random_share=1.5)


def test_side_matrix_reads_picks_not_labels() -> None:
    votes = [
        Vote("p1", "r1", "for", ("a", "a")),
        Vote("p1", "r2", "against", ("b", "neither")),
        Vote("p2", "r1", "abstain", ("a", "b")),
        Vote("p2", "r2", "invalid", ("invalid", "invalid")),
        Vote("p9", "r1", "for", ("a", "a")),  # a pair not asked about is ignored
    ]
    sides = side_matrix(["p1", "p2"], ["r1", "r2"], votes)
    assert sides.tolist() == [[1, -1], [0, 0]]
    assert label_vector(["p1", "p2", "p3"], {"p1": "a", "p2": "b", "p3": "tie"}).tolist() == [1, -1, 0]


def test_stop_rule_counts_labels_with_unchanged_membership() -> None:
    a, b = frozenset({0}), frozenset({0, 1})
    assert stable_for([]) == 0
    assert stable_for([a]) == 0
    assert stable_for([a, b, b, b]) == 2
    assert stable_for([b, b, a]) == 0


def test_committee_disagreement_prefers_pairs_the_plausible_constitutions_split_on() -> None:
    from icai.active import committee_disagreement

    sides, labels = _world()
    score = committee_disagreement(sides, labels, k=3)
    assert score[40] > score[41]  # 0 and 1 take opposite sides: the constitutions with one or the other split
    assert score[42] == 0.0  # no constitution decides it
    assert np.all(np.isneginf(score[:40]))
    choice = next_pair(sides, labels, k=3, random_share=0.0, strategy="disagreement")
    assert choice is not None and sides[choice.index, 0] != sides[choice.index, 1]


def test_the_benchmark_selection_from_directions_equals_the_runs() -> None:
    # bench/active_labelling.py selects from a direction matrix; it must choose what select_as_configured chooses
    from icai.active import relabelled
    from icai.config import RunConfig
    from icai.select import VoteMatrix, select_as_configured, select_ids_as_configured
    from icai.types import Comparison, Principle

    rng = np.random.default_rng(3)
    pairs = [Comparison(f"p{i}", "x", "y", "a" if rng.random() < 0.5 else "b") for i in range(60)]
    principles = [Principle.from_text(f"Select the response that does thing number {j}.") for j in range(12)]
    sides = rng.choice([-1, 0, 1], size=(60, 12), p=[0.3, 0.3, 0.4]).astype(np.int8)
    votes = [
        Vote(c.id, p.id, "abstain", ("a" if sides[i, j] > 0 else "b" if sides[i, j] < 0 else "neither",) * 2)
        for i, c in enumerate(pairs)
        for j, p in enumerate(principles)
    ]
    config = RunConfig(model="fake/keyword", embedder="hash")
    expected, _, _ = select_as_configured(config, principles, pairs, relabelled(votes, pairs))
    labels = np.array([1 if c.preferred == "a" else -1 for c in pairs], dtype=np.int8)
    m = VoteMatrix.from_directions([p.id for p in principles], sides * labels[:, None])
    assert select_ids_as_configured(config, m) == [p.id for p in expected.principles]
    assert expected.principles  # the check is not vacuous
