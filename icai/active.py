"""Which pair a person should label next: expected information gain about the constitution's membership.

Pure numerics over a vote matrix; no model calls, no I/O. The votes are label-free: `sides[i, j]` says
which response principle j picks on pair i (+1: A, -1: B, 0: neither, abstain or invalid), as voted
once before the first label. A label says which response the person prefers (+1: A, -1: B).

The model (documented in README "Labelling" and docs/benchmarks.md):

- Per principle j, its agreement with the person p_j (the share of the pairs it decides on which it
  picks the person's side) has a Beta(1 + for_j, 1 + against_j) posterior from the labelled pairs.
- Its relevance r_j (the share of all pairs it decides) is known from the votes, with no labels.
- Membership: the constitution is the `k` principles of highest strength r_j x (2 p_j - 1), among
  those with positive strength (as `select(method="strength")` ranks them; greedy selection's picks
  are mostly a subset of these). `membership` gives the set under the posterior means.
- The next pair is the unlabelled pair whose label is expected to reduce the uncertainty about
  membership most: expected information gain, EIG(x) = H(M) - E_y[H(M | y on x)], where H(M) is
  the sum over principles of the binary entropy of P(j in the constitution). These probabilities
  are Monte Carlo estimates from `n_samples` draws of the Betas; the posterior after a label y on
  pair x reweights the same draws by y's likelihood (each principle deciding x agrees with y with
  probability p_j, the product over principles, as the count updates assume), so scoring every
  pair costs two matrix products. A pair no principle decides has zero gain; a pair on which two
  uncertain principles take opposite sides gains the most.
- A seeded share `random_share` of the choices is a uniformly random unlabelled pair, so the
  labelled pairs never come only from where the principles disagree and the agreement estimates
  stay close to unbiased.
- Stop rule: stop when `membership` has not changed for `patience` labels in a row (`stable_for`).

`next_pair(strategy="disagreement")` scores pairs instead by how much the constitutions of the posterior
draws disagree about them (`committee_disagreement`, query by committee). Neither beat a random order
in bench/active_labelling.py; EIG is the default (see docs/benchmarks.md, "Active labelling").
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from icai.debias import combine_picks
from icai.types import Comparison, Vote

Label = Literal["a", "b", "tie", "skip"]
"""What a person answers for one pair: response A, response B, a tie, or skip (no answer)."""

N_SAMPLES = 256
RANDOM_SHARE = 0.2
PATIENCE = 10


def side_matrix(pair_ids: Sequence[str], principle_ids: Sequence[str], votes: Sequence[Vote]) -> np.ndarray:
    """+1 where principle j picks response A on pair i, -1 where it picks B, else 0 (from the votes' picks).

    A vote's picks are in the pair's own a/b terms, so the matrix does not depend on any label.
    """
    row = {pid: i for i, pid in enumerate(pair_ids)}
    col = {pid: j for j, pid in enumerate(principle_ids)}
    sides = np.zeros((len(pair_ids), len(principle_ids)), dtype=np.int8)
    for v in votes:
        i, j = row.get(v.comparison_id), col.get(v.principle_id)
        if i is None or j is None:
            continue
        score = sum(1 if p == "a" else -1 if p == "b" else 0 for p in v.picks)
        sides[i, j] = np.sign(score)
    return sides


def relabelled(votes: Sequence[Vote], labelled: Sequence[Comparison]) -> list[Vote]:
    """The votes on the labelled pairs, their for/against values recomputed from their picks and the labels."""
    by_id = {c.id: c for c in labelled}
    return [
        dataclasses.replace(v, value=combine_picks(v.picks, by_id[v.comparison_id].preferred))
        for v in votes
        if v.comparison_id in by_id
    ]


def label_vector(pair_ids: Sequence[str], labels: Mapping[str, str]) -> np.ndarray:
    """+1 for pairs labelled "a", -1 for "b", 0 for ties, skips and unlabelled pairs."""
    return np.array([1 if labels.get(p) == "a" else -1 if labels.get(p) == "b" else 0 for p in pair_ids], dtype=np.int8)


def counts(sides: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per principle: labelled pairs on which it picks the person's side (for) and the other side (against)."""
    decided = sides * labels[:, None]
    return (decided > 0).sum(axis=0), (decided < 0).sum(axis=0)


def relevance(sides: np.ndarray) -> np.ndarray:
    """Per principle: the share of pairs on which it picks a side (label-free)."""
    return (sides != 0).mean(axis=0) if sides.shape[0] else np.zeros(sides.shape[1])


def _top_k(strength: np.ndarray, k: int) -> np.ndarray:
    """Boolean membership of each row's `k` highest positive strengths (rows: samples)."""
    s = np.atleast_2d(strength)
    k = min(k, s.shape[1])
    member = np.zeros(s.shape, dtype=bool)
    if k == 0:
        return member
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    np.put_along_axis(member, top, True, axis=1)
    return member & (s > 0)


def membership(sides: np.ndarray, labels: np.ndarray, *, k: int) -> frozenset[int]:
    """The principles (column indices) in the constitution under the posterior means of their agreement."""
    n_for, n_against = counts(sides, labels)
    mean = (1 + n_for) / (2 + n_for + n_against)
    strength = relevance(sides) * (2 * mean - 1)
    return frozenset(int(j) for j in np.flatnonzero(_top_k(strength, k)[0]))


def _entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def information_gain(
    sides: np.ndarray, labels: np.ndarray, *, k: int, n_samples: int = N_SAMPLES, seed: int = 0
) -> np.ndarray:
    """Expected reduction in membership entropy (bits) from labelling each pair; labelled pairs get -inf.

    See the module docstring for the model. `labels` holds +1/-1 for labelled pairs and 0 otherwise;
    a pair counts as labelled for this purpose only when its label is nonzero.
    """
    n_pairs, n_principles = sides.shape
    gain = np.zeros(n_pairs)
    if n_pairs == 0 or n_principles == 0:
        return gain
    rng = np.random.default_rng(seed)
    n_for, n_against = counts(sides, labels)
    p = rng.beta(1 + n_for, 1 + n_against, size=(n_samples, n_principles))
    p = np.clip(p, 1e-9, 1 - 1e-9)
    member = _top_k(relevance(sides) * (2 * p - 1), k).astype(float)
    prior_entropy = float(_entropy(member.mean(axis=0)).sum())
    log_p, log_q = np.log(p), np.log1p(-p)
    picks_a, picks_b = (sides > 0).astype(float), (sides < 0).astype(float)
    evidence: list[np.ndarray] = []
    posteriors: list[np.ndarray] = []
    for agree, disagree in ((picks_a, picks_b), (picks_b, picks_a)):  # the label is A, then B
        log_w = log_p @ agree.T + log_q @ disagree.T  # samples x pairs
        top = log_w.max(axis=0)
        w = np.exp(log_w - top)
        total = w.sum(axis=0)
        evidence.append(np.log(total / n_samples) + top)
        posteriors.append((w.T @ member) / total[:, None])
    log_a, log_b = evidence
    prob_a = 1 / (1 + np.exp(np.clip(log_b - log_a, -700, 700)))
    entropy_after = prob_a * _entropy(posteriors[0]).sum(axis=1) + (1 - prob_a) * _entropy(posteriors[1]).sum(axis=1)
    gain = prior_entropy - entropy_after
    gain[labels != 0] = -np.inf
    return gain


def committee_disagreement(
    sides: np.ndarray, labels: np.ndarray, *, k: int, n_samples: int = N_SAMPLES, seed: int = 0
) -> np.ndarray:
    """Per pair: the entropy (bits) of what plausible constitutions predict for it; labelled pairs get -inf.

    Each of `n_samples` posterior draws gives a constitution (the top-`k` strengths, as in `membership`),
    which predicts A, B or neither for a pair by the sign of its members' summed sides. A pair on which
    the plausible constitutions split is one whose label tells them apart; one that none decides scores 0.
    The alternative to `information_gain` ("query by committee"), `next_pair(strategy="disagreement")`.
    """
    n_pairs, n_principles = sides.shape
    if n_pairs == 0 or n_principles == 0:
        return np.zeros(n_pairs)
    rng = np.random.default_rng(seed)
    n_for, n_against = counts(sides, labels)
    p = rng.beta(1 + n_for, 1 + n_against, size=(n_samples, n_principles))
    member = _top_k(relevance(sides) * (2 * p - 1), k).astype(float)
    total = member @ sides.T.astype(float)  # samples x pairs
    shares = np.stack([(total > 0).mean(axis=0), (total < 0).mean(axis=0), (total == 0).mean(axis=0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        score = -np.where(shares > 0, shares * np.log2(shares), 0.0).sum(axis=0)
    score[labels != 0] = -np.inf
    return score


@dataclass(frozen=True)
class Choice:
    """The next pair to label: its row, why it was chosen, and its expected gain (NaN for a random pick)."""

    index: int
    reason: Literal["active", "random"]
    gain: float


def next_pair(
    sides: np.ndarray,
    labels: np.ndarray,
    *,
    k: int,
    exclude: Sequence[int] = (),
    random_share: float = RANDOM_SHARE,
    n_samples: int = N_SAMPLES,
    seed: int = 0,
    strategy: Literal["eig", "disagreement"] = "eig",
) -> Choice | None:
    """The unlabelled pair to ask about next, or None when none is left.

    `labels` nonzero marks labelled pairs; `exclude` lists rows not to offer (ties and skips already
    answered). With probability `random_share` (drawn from `seed`) the choice is a uniformly random
    candidate; otherwise the candidate of highest `information_gain` (ties: the lowest row). The same
    seed, labels and votes always give the same choice, so a resumed session asks the same pair.
    """
    if not 0 <= random_share <= 1:
        raise ValueError("random_share must lie in [0, 1]")
    blocked = np.zeros(sides.shape[0], dtype=bool)
    blocked[labels != 0] = True
    blocked[list(exclude)] = True
    candidates = np.flatnonzero(~blocked)
    if candidates.size == 0:
        return None
    rng = random.Random(seed)
    if rng.random() < random_share:
        return Choice(int(candidates[rng.randrange(candidates.size)]), "random", float("nan"))
    score = information_gain if strategy == "eig" else committee_disagreement
    gain = score(sides, labels, k=k, n_samples=n_samples, seed=seed)
    gain[blocked] = -np.inf
    best = int(np.argmax(gain))
    return Choice(best, "active", float(gain[best]))


def stable_for(history: Sequence[frozenset[int]]) -> int:
    """How many labels in a row the membership has stayed what it is now (0 for an empty history).

    `history[t]` is the membership after the t-th label; the stop rule says stop at `PATIENCE`.
    """
    if not history:
        return 0
    n = 0
    for previous in reversed(history[:-1]):
        if previous != history[-1]:
            break
        n += 1
    return n
