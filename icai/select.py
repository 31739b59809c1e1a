"""Stage 4: per-principle statistics, duplicate merging, and building a constitution from the votes.

Selection works on the training votes only and never calls a model:

- a principle *qualifies* when it took a side on at least `min_votes` pairs and agreed with the
  labels more often than not (so its agreement interval never lies wholly at or below 0.5);
- two qualified principles are *duplicates* when their decisive votes agree on at least
  `duplicate_agreement` (0.9) of the pairs both decided (and they share at least `MIN_SHARED` such
  pairs); the stronger one is kept and the merge recorded;
- `method="greedy"` (default) adds, one at a time, the principle that most raises the training
  agreement of the constitution's vote-based prediction (the sign of the summed votes, ties
  scoring 0.5, as `icai.evaluate.predict_from_votes`), and stops when the best gain is below
  `min_gain` or below one pair's worth (1 / pairs), or at `max_principles`;
- `method="strength"` keeps the `max_principles` strongest (the ranking before greedy selection).

`selection_stability` reruns the same selection on bootstrap resamples of the training pairs,
reusing the votes already cast.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits

from icai.stats import benjamini_hochberg, direction, principle_stats
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote
from icai.votes import VoteTable, direction_codes, preferred_a

if TYPE_CHECKING:
    from icai.config import RunConfig

log = logging.getLogger(__name__)

SelectMethod = Literal["greedy", "strength"]
Verdict = Literal["significant", "exploratory"]

MIN_SHARED = 3
"""Pairs two principles must both decide before they can count as duplicates."""


def rank_key(s: PrincipleStats) -> tuple[float, int, str]:
    """Strongest first: kappa x relevance, then more supporting votes, then id for stability."""
    return (-(s.strength or 0.0), -s.n_for, s.principle_id)


def filtered_q_values(stats: Sequence[PrincipleStats], *, alpha: float = 0.05) -> list[PrincipleStats]:
    """Benjamini-Hochberg q-values over the principles that could reach significance at all.

    A principle that decided n pairs cannot get a two-sided binomial p below 2 x 0.5^n (all n
    votes on one side); when that floor is not below `alpha` it is left out of the family and
    gets q = 1 (Tarone's filter: it depends on how many pairs were decided, not on which side
    won, so the q-values of the others stay valid). Without it, every principle voted "neither"
    on all but a few pairs would dilute the correction for the rest.
    """
    testable = [i for i, s in enumerate(stats) if 2 * 0.5 ** (s.n_for + s.n_against) < alpha]
    p_values = [stats[i].p_value for i in testable]
    q = benjamini_hochberg([1.0 if p is None else p for p in p_values])
    by_index = dict(zip(testable, q, strict=True))
    return [dataclasses.replace(s, q_value=by_index.get(i, 1.0)) for i, s in enumerate(stats)]


def verdict(s: PrincipleStats, *, alpha: float = 0.05) -> Verdict:
    """ "significant" when the principle's Benjamini-Hochberg q-value is below `alpha`, else "exploratory"."""
    return "significant" if s.q_value is not None and s.q_value < alpha else "exploratory"


@dataclass(frozen=True)
class Merge:
    """A qualified principle left out because a stronger one votes the same way."""

    kept: str
    merged: str
    agreement: float
    """Share of the pairs both decided on which they picked the same side."""
    shared: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Step:
    """One greedy step: the principle added and the training agreement with it."""

    principle_id: str
    agreement: float
    gain: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Selection:
    """How the constitution was built: method, greedy steps, merges, the principles that qualified,
    and the options it was built with (`selection_stability` reruns it with the same ones)."""

    method: SelectMethod
    chosen: tuple[str, ...]
    qualified: tuple[str, ...]
    merges: tuple[Merge, ...] = ()
    steps: tuple[Step, ...] = ()
    min_gain: float = 0.0
    alpha: float = 0.05
    max_principles: int = 5
    min_votes: int = 2
    min_agreement: float = 0.5
    duplicate_agreement: float = 0.9

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "chosen": list(self.chosen),
            "qualified": list(self.qualified),
            "merges": [m.to_dict() for m in self.merges],
            "steps": [s.to_dict() for s in self.steps],
            "min_gain": self.min_gain,
            "alpha": self.alpha,
            "max_principles": self.max_principles,
            "min_votes": self.min_votes,
            "min_agreement": self.min_agreement,
            "duplicate_agreement": self.duplicate_agreement,
        }


class VoteMatrix:
    """Training votes as a matrix: +1 the principle picked the preferred side, -1 the other, 0 neither.

    Rows are comparisons, columns principles. `voted` marks every vote cast (invalid ones too),
    `abstain` the valid votes that took no side; a missing or invalid vote is 0.
    """

    def __init__(self, principle_ids: Sequence[str], comparisons: Sequence[Comparison], votes: Sequence[Vote]) -> None:
        self.principle_ids = list(dict.fromkeys(principle_ids))
        comparisons = list({c.id: c for c in comparisons}.values())
        self._float: dict[tuple[str, str], np.ndarray] = {}
        if isinstance(votes, VoteTable):
            self._from_table(comparisons, votes)
            return
        row = {c.id: i for i, c in enumerate(comparisons)}
        col = {pid: j for j, pid in enumerate(self.principle_ids)}
        self.correct = np.zeros((len(row), len(col)), dtype=np.int8)
        self.abstain = np.zeros((len(row), len(col)), dtype=bool)
        self.voted = np.zeros((len(row), len(col)), dtype=bool)
        for v in votes:  # the last vote on a (comparison, principle) counts, as in principle_stats
            i, j = row.get(v.comparison_id), col.get(v.principle_id)
            if i is None or j is None:
                continue
            # from the picks, as icai.evaluate.predict_from_votes reads them (the same as `value` for real votes)
            self.correct[i, j] = direction(v) * (1 if comparisons[i].preferred == "a" else -1)
            self.abstain[i, j] = v.value == "abstain"
            self.voted[i, j] = True

    def _from_table(self, comparisons: Sequence[Comparison], table: VoteTable) -> None:
        """The same matrices, read column by column from a vote table."""
        rows = table.rows_for([c.id for c in comparisons])
        columns = table.columns_for(self.principle_ids)
        sign = np.where(preferred_a(comparisons), 1, -1).astype(np.int8)
        shape = (len(comparisons), len(self.principle_ids))
        self.correct = np.zeros(shape, dtype=np.int8)
        self.abstain = np.zeros(shape, dtype=bool)
        self.voted = np.zeros(shape, dtype=bool)
        has_row = rows >= 0
        for j, c in enumerate(columns.tolist()):
            if c < 0:
                continue
            values = np.asarray(table.values[rows[has_row], c])
            self.correct[has_row, j] = direction_codes(np.asarray(table.picks[rows[has_row], c])) * sign[has_row]
            self.abstain[has_row, j] = values == 2
            self.voted[has_row, j] = values >= 0

    def indicator(self, name: str, dtype: str) -> np.ndarray:
        """A 0/1 matrix, cached: "for" (correct == 1), "against" (correct == -1) or "voted".

        Column-major: one principle's votes lie together, so taking some principles' columns (the duplicate check,
        greedy selection, on every bootstrap resample) copies whole runs of memory, not one value per pair."""
        key = (name, dtype)
        if key not in self._float:
            source = {"for": lambda: self.correct == 1, "against": lambda: self.correct == -1, "voted": lambda: self.voted}[name]()
            self._float[key] = source.astype(dtype, order="F")
        return self._float[key]

    @property
    def n_pairs(self) -> int:
        return int(self.correct.shape[0])

    @classmethod
    def from_directions(cls, principle_ids: Sequence[str], correct: np.ndarray) -> VoteMatrix:
        """A matrix of exhaustive votes from their directions (rows pairs, columns principles; +1 the preferred
        side, -1 the other, 0 neither): what the constructor builds from votes with no invalid ones, without the
        records (`bench/active_labelling.py` selects after every simulated label)."""
        m = cls(principle_ids, [], [])
        m.correct = np.asarray(correct, dtype=np.int8)
        m.abstain = m.correct == 0
        m.voted = np.ones(m.correct.shape, dtype=bool)
        return m


EXACT_FLOAT32 = 2**23
"""Weighted sums of 0/1 columns are computed in float32 (half the memory and time of float64) when the weights
are whole numbers summing below this: every partial sum, and every half of one, is then exact, so the results
equal the float64 ones bit for bit."""


GRAM_BLOCK_ROWS = 65_536
"""Pairs per block of the duplicate check's products."""


def _dtype_for(w: np.ndarray) -> str:
    whole = bool(np.all(w >= 0)) and bool(np.all(w == np.floor(w)))
    return "float32" if whole and float(w.sum()) < EXACT_FLOAT32 else "float64"


def _wsum(m: VoteMatrix, w: np.ndarray, name: str) -> np.ndarray:
    """w @ indicator(name), exact, as float64."""
    dtype = _dtype_for(w)
    if name == "voted" and m.voted.all():
        return np.full(len(m.principle_ids), float(w.sum()))
    return (w.astype(dtype) @ m.indicator(name, dtype)).astype(np.float64)


def _column_stats(m: VoteMatrix, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted counts, agreement and strength per principle (weights: bootstrap multiplicities).

    The definitions are `icai.stats.principle_stats`' (Feedback Forensics'): relevance =
    decided / all votes, strength = (2 x agreement - 1) x relevance = (for - against) / all votes.
    """
    n_for = _wsum(m, w, "for")
    n_against = _wsum(m, w, "against")
    n_votes = _wsum(m, w, "voted")
    decided = n_for + n_against
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(decided > 0, n_for / np.maximum(decided, 1e-12), np.nan)
    strength = np.where(n_votes > 0, (n_for - n_against) / np.maximum(n_votes, 1e-12), 0.0)
    return {"n_for": n_for, "decided": decided, "agreement": agreement, "strength": strength}


def _shared(m: VoteMatrix, w: np.ndarray, columns: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """For the given columns: pairs both decided and pairs both decided the same way, weighted (exact)."""
    dtype = _dtype_for(w)
    cols = list(columns)
    k = len(cols)
    both, agree = np.zeros((k, k)), np.zeros((k, k))
    pos_all, neg_all = m.indicator("for", dtype), m.indicator("against", dtype)
    # in blocks of rows, so the weighted copies stay small at a million pairs (sums of whole numbers: exact).
    # Two products: decided' W decided counts pairs both decided; direction' W direction (+1 for, -1 against)
    # counts those decided alike minus those decided apart, so alike = (both + that) / 2.
    for start in range(0, m.n_pairs, GRAM_BLOCK_ROWS):
        rows = slice(start, start + GRAM_BLOCK_ROWS)
        pos, neg = pos_all[rows, cols], neg_all[rows, cols]
        wd = w[rows].astype(dtype)[:, None]
        decided, direction = pos + neg, pos - neg
        both += ((decided * wd).T @ decided).astype(np.float64)
        agree += ((direction * wd).T @ direction).astype(np.float64)
    return both, (both + agree) / 2


def _select_ids(
    m: VoteMatrix,
    w: np.ndarray,
    *,
    method: SelectMethod,
    max_principles: int,
    min_votes: int,
    min_agreement: float,
    min_gain: float,
    duplicate_agreement: float,
) -> tuple[list[int], list[int], list[Merge], list[Step]]:
    """Column indices chosen, qualified (rank order), merges and greedy steps, for pair weights `w`."""
    st = _column_stats(m, w)
    ids = m.principle_ids
    qualified = [
        j
        for j in range(len(ids))
        if st["decided"][j] >= min_votes and not np.isnan(st["agreement"][j]) and st["agreement"][j] > min_agreement
    ]
    qualified.sort(key=lambda j: (-st["strength"][j], -st["n_for"][j], ids[j]))

    # pairs both principles decided, and decided alike, for every two qualified ones at once
    both_all, same_all = _shared(m, w, qualified) if qualified else (np.zeros((0, 0)), np.zeros((0, 0)))
    place = {j: q for q, j in enumerate(qualified)}
    kept: list[int] = []
    merges: list[Merge] = []
    for j in qualified:
        for k in kept:
            both = both_all[place[j], place[k]]
            if both < MIN_SHARED:
                continue
            same = same_all[place[j], place[k]]
            if same / both >= duplicate_agreement:
                merges.append(Merge(ids[k], ids[j], float(same / both), int(round(both))))
                break
        else:
            kept.append(j)

    if method == "strength":
        return kept[:max_principles], qualified, merges, []

    total_w = float(w.sum())
    if total_w <= 0:
        return [], qualified, merges, []
    chosen, steps = greedy(m, w, kept, max_principles=max_principles, min_gain=max(min_gain, 1.0 / total_w))
    return chosen, qualified, merges, steps


def greedy(
    m: VoteMatrix, w: np.ndarray, pool: Sequence[int], *, max_principles: int, min_gain: float
) -> tuple[list[int], list[Step]]:
    """Forward selection over columns `pool` (earlier ones win ties) for the vote-sum prediction.

    Each step adds the column that most raises the weighted agreement (1 right, 0 wrong,
    0.5 undecided); it stops when the best gain is below `min_gain` or at `max_principles`.
    """
    total_w = float(w.sum())
    pool = list(pool)
    total = np.zeros(m.n_pairs)
    current = 0.5
    chosen: list[int] = []
    steps: list[Step] = []
    dtype = _dtype_for(w)
    # the pool's columns only, taken once (column-major: whole runs of memory); a chosen one is masked out
    pos, neg = m.indicator("for", dtype)[:, pool], m.indicator("against", dtype)[:, pool]
    left = np.ones(len(pool), dtype=bool)
    while left.any() and len(chosen) < max_principles and total_w > 0:
        # Agreement of each candidate added to the current sum, all candidates at once: a pair scores
        # 0.5 + 0.5 sign(total + vote), which differs from its current score only where |total| <= 1
        # and the candidate takes a side, so two products over the 0/1 matrices give every candidate's
        # weighted sum (half-integers, exact) without forming pairs x candidates sums.
        now = w @ (0.5 + 0.5 * np.sign(total))
        tie, up, down = total == 0, total == -1, total == 1
        gain_for = (w * (tie | up)).astype(dtype) @ pos
        loss_against = (w * (tie | down)).astype(dtype) @ neg
        scores = (now + 0.5 * (gain_for.astype(np.float64) - loss_against.astype(np.float64))) / total_w
        scores[~left] = -np.inf
        best = int(np.argmax(scores))  # the first maximum: the earlier candidate on ties
        gain = float(scores[best]) - current
        if gain < min_gain - 1e-12:
            break
        left[best] = False
        j = pool[best]
        chosen.append(j)
        total = total + m.correct[:, j]
        current = float(scores[best])
        steps.append(Step(m.principle_ids[j], current, gain))
    return chosen, steps


def select(
    principles: Sequence[Principle],
    comparisons: Sequence[Comparison],
    votes: Sequence[Vote],
    *,
    method: SelectMethod = "greedy",
    max_principles: int = 5,
    min_votes: int = 2,
    min_agreement: float = 0.5,
    min_gain: float = 0.01,
    duplicate_agreement: float = 0.9,
    alpha: float = 0.05,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[Constitution, list[PrincipleStats], Selection]:
    """Build a constitution from the training votes (see the module docstring for the rules).

    Returns the constitution, the statistics of every principle (each with its verdict at
    `alpha`), and the record of how the constitution was built.
    """
    if method not in ("greedy", "strength"):
        raise ValueError(f"unknown selection method {method!r}; choose greedy or strength")
    stats = [
        dataclasses.replace(s, verdict=verdict(s, alpha=alpha))
        for s in filtered_q_values(principle_stats(principles, comparisons, votes), alpha=alpha)
    ]
    by_id = {p.id: p for p in principles}
    stats_by_id = {s.principle_id: s for s in stats}
    m = VoteMatrix([p.id for p in principles], comparisons, votes)
    chosen, qualified, merges, steps = _select_ids(
        m,
        np.ones(m.n_pairs),
        method=method,
        max_principles=max_principles,
        min_votes=min_votes,
        min_agreement=min_agreement,
        min_gain=min_gain,
        duplicate_agreement=duplicate_agreement,
    )
    ids = [m.principle_ids[j] for j in chosen]
    selection = Selection(
        method=method,
        chosen=tuple(ids),
        qualified=tuple(m.principle_ids[j] for j in qualified),
        merges=tuple(merges),
        steps=tuple(steps),
        min_gain=min_gain,
        alpha=alpha,
        max_principles=max_principles,
        min_votes=min_votes,
        min_agreement=min_agreement,
        duplicate_agreement=duplicate_agreement,
    )
    log.info(
        "select (%s): %d of %d principles qualify, %d merged as duplicates; keeping %d",
        method,
        len(qualified),
        len(stats),
        len(merges),
        len(ids),
    )
    constitution = Constitution(
        principles=tuple(by_id[i] for i in ids),
        stats=tuple(stats_by_id[i] for i in ids),
        metadata=dict(metadata or {}),
    )
    return constitution, stats, selection


def select_ids_as_configured(config: RunConfig, m: VoteMatrix) -> list[str]:
    """The principle ids `select_as_configured` would choose from the votes in `m`, without their statistics."""
    chosen, _, _, _ = _select_ids(
        m,
        np.ones(m.n_pairs),
        method=config.selection,
        max_principles=config.max_principles,
        min_votes=config.min_votes,
        min_agreement=0.5,
        min_gain=config.min_gain,
        duplicate_agreement=config.duplicate_agreement,
    )
    return [m.principle_ids[j] for j in chosen]


def select_as_configured(
    config: RunConfig, tested: Sequence[Principle], pairs: Sequence[Comparison], votes: Sequence[Vote]
) -> tuple[Constitution, list[PrincipleStats], Selection]:
    """`select` with a run's selection options (method, size, minimum votes and gain, duplicates, alpha)."""
    return select(
        tested,
        pairs,
        votes,
        method=config.selection,
        max_principles=config.max_principles,
        min_votes=config.min_votes,
        min_gain=config.min_gain,
        duplicate_agreement=config.duplicate_agreement,
        alpha=config.alpha,
    )


@dataclass(frozen=True)
class Stability:
    """How often bootstrap resamples of the training pairs select each principle.

    `frequency[id]` is the share of resamples whose constitution holds the principle or a
    principle merged into it on the full data; `expected_overlap` is the mean share of the
    full-data constitution that a resample's constitution reproduces.
    """

    n_resamples: int
    seed: int
    frequency: Mapping[str, float] = field(default_factory=dict)
    expected_overlap: float | None = None
    mean_size: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "frequency": dict(self.frequency),
            "expected_overlap": self.expected_overlap,
            "mean_size": self.mean_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stability:
        return cls(
            int(data["n_resamples"]),
            int(data["seed"]),
            {str(k): float(v) for k, v in data.get("frequency", {}).items()},
            None if data.get("expected_overlap") is None else float(data["expected_overlap"]),
            float(data.get("mean_size", 0.0)),
        )


def selection_stability(
    principles: Sequence[Principle],
    comparisons: Sequence[Comparison],
    votes: Sequence[Vote],
    selection: Selection,
    *,
    n_resamples: int = 200,
    seed: int = 0,
) -> Stability:
    """Rerun `selection` (its method and options) on `n_resamples` seeded bootstrap resamples of the pairs; no model calls."""
    m = VoteMatrix([p.id for p in principles], comparisons, votes)
    if m.n_pairs == 0 or n_resamples <= 0:
        return Stability(max(n_resamples, 0), seed)
    # a principle merged into another on the full data counts as that one
    canonical = {mg.merged: mg.kept for mg in selection.merges}
    full = set(selection.chosen)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    overlaps: list[float] = []
    sizes: list[int] = []
    for _ in range(n_resamples):
        w = np.bincount(rng.integers(0, m.n_pairs, size=m.n_pairs), minlength=m.n_pairs).astype(float)
        # one BLAS thread: these products are small, and a busy machine makes OpenBLAS's spinning threads ten
        # times slower than one (measured: bench/driver_scale.py, docs/scaling.md)
        with threadpool_limits(limits=1, user_api="blas"):
            chosen, _, _, _ = _select_ids(
                m,
                w,
                method=selection.method,
                max_principles=selection.max_principles,
                min_votes=selection.min_votes,
                min_agreement=selection.min_agreement,
                min_gain=selection.min_gain,
                duplicate_agreement=selection.duplicate_agreement,
            )
        picked = {canonical.get(m.principle_ids[j], m.principle_ids[j]) for j in chosen}
        for pid in picked:
            counts[pid] = counts.get(pid, 0) + 1
        sizes.append(len(chosen))
        if full:
            overlaps.append(len(picked & full) / len(full))
    frequency = {pid: counts[pid] / n_resamples for pid in sorted(counts, key=lambda p: (-counts[p], p))}
    return Stability(
        n_resamples,
        seed,
        frequency,
        float(np.mean(overlaps)) if overlaps else None,
        float(np.mean(sizes)),
    )


def significance_note(constitution: Constitution, *, n_pairs: int, alpha: float = 0.05) -> str | None:
    """One plain sentence when no constitution principle is significant; None when some are."""
    if not constitution.principles:
        return (
            f"No principle passed selection on these {n_pairs} training pairs: "
            "nothing here explains the labels better than chance."
        )
    n_sig = sum(s.verdict == "significant" for s in constitution.stats)
    if n_sig == 0:
        return (
            f"No principle beats chance on these {n_pairs} pairs (every Benjamini-Hochberg q >= {alpha:g}): "
            "treat this list as hypotheses."
        )
    if n_sig < len(constitution.principles):
        return (
            f"{n_sig} of {len(constitution.principles)} principles are significant (q < {alpha:g}); "
            "the others are exploratory."
        )
    return None
