"""Pure statistics for principles and annotators: intervals, tests, agreement, confounds.

No I/O here; every function takes plain sequences and returns plain numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from icai.types import Comparison, Principle, PrincipleStats, Vote
from icai.votes import VoteTable, direction_codes

ALPHA = 0.05
"""Significance level used by `length_confound`."""

CONFOUND_MIN_CORR = 0.5
"""|corr(direction, sign(length difference))| at or above which a principle can be length-confounded."""


def wilson_ci(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0.0, 1.0) when n == 0."""
    return wilson_interval(float(successes), n, confidence=confidence)


SMALL_N = 30
"""Below this many scored pairs an agreement's interval is Wilson's, not a percentile bootstrap (which collapses to
a point when every pair scores the same: 9 of 9 agreeing gives [1.00, 1.00])."""


def score_ci(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95, seed: int = 0) -> tuple[tuple[float, float], str]:
    """An interval for a mean agreement of 0 / 0.5 / 1 scores, and its method ("wilson" or "bootstrap").

    Below `SMALL_N` values (or when the bootstrap interval has no width): the Wilson score interval, a half
    score counting as half an agreement; else the percentile bootstrap. (nan, nan) for no values.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan), "bootstrap"
    if arr.size >= SMALL_N:
        lo, hi = bootstrap_ci(arr, confidence=confidence, seed=seed)
        if hi > lo:
            return (lo, hi), "bootstrap"
    return wilson_interval(float(arr.sum()), int(arr.size), confidence=confidence), "wilson"


def wilson_interval(successes: float, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for `successes` of `n` (successes may be fractional); (0.0, 1.0) when n == 0."""
    if n == 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]; got {successes} of {n}")
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return (max(0.0, center - half), min(1.0, center + half))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Callable[[np.ndarray], Any] = np.mean,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic`; (nan, nan) for no values."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_boot, arr.size))
    boots = np.array([float(statistic(arr[row])) for row in idx])
    alpha = 1 - confidence
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def paired_bootstrap_diff(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> tuple[float, tuple[float, float]]:
    """mean(x - y) and its percentile bootstrap interval, resampling (x_i, y_i) pairs jointly.

    When every pair has the same difference the bootstrap collapses to that point; the interval is then
    `constant_mean_interval`'s, which shrinks with n as it should.

    value_range: the values a score can take (agreement scores: 0 to 1). Against the baseline `y` as scored, the
    difference can be no lower than low - mean(y) and no higher than high - mean(y): the interval is clipped
    there (a constitution cannot beat a 0.500 baseline by more than +0.500). None: no clipping.
    """
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape:
        raise ValueError(f"paired samples differ in length: {xa.size} and {ya.size}")
    diff = xa - ya
    mean = float(diff.mean()) if diff.size else math.nan
    if diff.size and np.all(diff == diff[0]):
        interval = constant_mean_interval(float(diff[0]), int(diff.size), confidence=confidence)
    else:
        interval = bootstrap_ci(diff, n_boot=n_boot, confidence=confidence, seed=seed)
    if value_range is None or not diff.size:
        return mean, interval
    return mean, clip_interval(interval, value_range[0] - float(ya.mean()), value_range[1] - float(ya.mean()))


def clip_interval(interval: tuple[float, float], low: float, high: float) -> tuple[float, float]:
    """`interval` cut to [low, high], the values its statistic can take."""
    return (min(max(interval[0], low), high), max(min(interval[1], high), low))


def constant_mean_interval(value: float, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """An interval for the mean of `n` values in [-1, 1] that all equal `value` (a bootstrap would give the point).

    u, the Wilson upper bound on the share of values that 0 of n differing cannot rule out, moves the mean by at
    most u times its distance to each end of [-1, 1]: [value - u (value + 1), value + u (1 - value)].
    """
    _, u = wilson_interval(0.0, n, confidence=confidence)
    return (max(-1.0, value - u * (value + 1.0)), min(1.0, value + u * (1.0 - value)))


def cohen_kappa(pred: Sequence[Hashable], label: Sequence[Hashable]) -> float | None:
    """Cohen's kappa between two annotations ("a"/"b"); None when empty.

    When chance agreement pe is 1 (both annotations use one and the same side
    throughout) kappa is 0/0; it is defined as 0.0 here, since such data give
    no evidence of agreement beyond chance.
    """
    if len(pred) != len(label):
        raise ValueError(f"annotations differ in length: {len(pred)} and {len(label)}")
    n = len(pred)
    if n == 0:
        return None
    po = sum(p == t for p, t in zip(pred, label, strict=True)) / n
    pe = sum((list(pred).count(c) / n) * (list(label).count(c) / n) for c in set(pred) | set(label))
    if pe >= 1 - 1e-12:
        return 0.0
    return (po - pe) / (1 - pe)


def fixed_chance_kappa(n_for: int, n_against: int) -> float:
    """Cohen's kappa with chance agreement fixed at 0.5: 2 x agreement - 1, in [-1, 1].

    This is Feedback Forensics' "Cohen's kappa (adjusted)": icai asks every pair
    in both orders (or in a random one), so a principle annotator has no access
    to position and agrees with the label by chance half of the time, whatever
    the label balance. With no decided vote (for + against = 0) agreement is
    taken as 0.5 and kappa is 0.0, as Feedback Forensics does.
    """
    decided = n_for + n_against
    if n_for < 0 or n_against < 0:
        raise ValueError(f"vote counts must be non-negative; got {n_for} for, {n_against} against")
    return 2.0 * n_for / decided - 1.0 if decided else 0.0


def binomial_p(successes: int, n: int) -> float:
    """Two-sided exact binomial test of `successes` out of `n` against 0.5; 1.0 when n == 0."""
    if n == 0:
        return 1.0
    return float(sps.binomtest(successes, n, 0.5, alternative="two-sided").pvalue)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted q-values, in input order, monotone in p and capped at 1."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(ranked, 1.0)
    return [float(v) for v in q]


def direction(vote: Vote) -> int:
    """+1 when the vote's valid picks lean to side a, -1 to side b, 0 otherwise."""
    score = sum(1 if p == "a" else -1 if p == "b" else 0 for p in vote.picks)
    return (score > 0) - (score < 0)


def swap_consistency(votes: Iterable[Vote]) -> float | None:
    """Share of votes with at least two valid picks whose picks all name the same side.

    ("a", "a"), ("b", "b") and ("neither", "neither") are consistent; a
    position-biased ("a", "b") is not. None when no vote has two valid picks.
    """
    n = consistent = 0
    for vote in votes:
        valid = [p for p in vote.picks if p != "invalid"]
        if len(valid) >= 2:
            n += 1
            consistent += len(set(valid)) == 1
    return consistent / n if n else None


def _logit_p(y: np.ndarray, x: np.ndarray) -> float | None:
    """p-value of the first non-constant column of a logistic fit; None when it cannot be fitted."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        HessianInversionWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    design = np.column_stack([np.ones(len(y)), x])
    if len(np.unique(y)) < 2 or np.linalg.matrix_rank(design) < design.shape[1] or len(y) <= design.shape[1]:
        return None
    failures = (
        PerfectSeparationError,
        PerfectSeparationWarning,
        ConvergenceWarning,
        HessianInversionWarning,
        RuntimeWarning,
    )
    try:
        with warnings.catch_warnings():
            for category in (PerfectSeparationWarning, ConvergenceWarning, HessianInversionWarning, RuntimeWarning):
                warnings.simplefilter("error", category)
            result = sm.Logit(y, design).fit(disp=0, maxiter=100)
    except (*failures, np.linalg.LinAlgError, ValueError):
        return None
    if not result.mle_retvals.get("converged", False):
        return None
    p = float(np.asarray(result.pvalues)[1])
    return p if math.isfinite(p) else None


def length_confound(
    directions: Sequence[int] | np.ndarray,
    labels_a: Sequence[int | bool] | np.ndarray,
    length_diff: Sequence[float] | np.ndarray,
) -> tuple[float | None, float | None, bool]:
    """Whether a principle's apparent effect is explained by response length.

    Fits label (1 when a is preferred) ~ direction, and label ~ direction +
    standardized (len(text_a) - len(text_b)), over all pairs (direction 0 included).

    Returns:
        (p of direction alone, p of direction adjusted for length, confounded), where
        confounded means significant alone (p < 0.05), not after adjusting, and
        |corr(direction, sign(length_diff))| >= 0.5. A p-value is None when the fit is
        impossible (constant columns, perfect separation, no convergence); an adjusted
        fit that fails while the plain one succeeds counts as "not significant after
        adjusting", since length then absorbs the direction's effect.
    """
    d = np.asarray(directions, dtype=float)
    y = np.asarray(labels_a, dtype=float)
    ld = np.asarray(length_diff, dtype=float)
    if not d.size == y.size == ld.size:
        raise ValueError(f"inputs differ in length: {d.size}, {y.size}, {ld.size}")
    if d.size == 0:
        return (None, None, False)
    sd = ld.std()
    z = (ld - ld.mean()) / sd if sd > 0 else np.zeros_like(ld)
    p_alone = _logit_p(y, d[:, None])
    p_adjusted = _logit_p(y, np.column_stack([d, z]))
    sign = np.sign(ld)
    corr = 0.0
    if d.std() > 0 and sign.std() > 0:
        corr = float(np.corrcoef(d, sign)[0, 1])
    confounded = (
        p_alone is not None
        and p_alone < ALPHA
        and (p_adjusted is None or p_adjusted >= ALPHA)
        and abs(corr) >= CONFOUND_MIN_CORR
    )
    return (p_alone, p_adjusted, bool(confounded))


def principle_stats(
    principles: Sequence[Principle | str],
    comparisons: Sequence[Comparison],
    votes: Iterable[Vote],
    *,
    seed: int = 0,
) -> list[PrincipleStats]:
    """Statistics of every principle (given as Principle or id), in input order.

    The definitions are Feedback Forensics': relevance = (for + against) / all
    votes (abstain and invalid count as not applicable); kappa = 2 x agreement - 1
    (`fixed_chance_kappa`); strength = kappa x relevance = (for - against) / all
    votes. `cohen_kappa` is Cohen's kappa from the empirical marginals of the
    principle's picks and the labels over the decided pairs.

    Votes for comparisons not in `comparisons` are ignored; when a principle has
    several votes on one comparison the last one counts. Length confounding is
    tested over the comparisons the principle has a vote on. q-values are
    Benjamini-Hochberg over exactly the principles given.

    Args:
        seed: reserved for resampling statistics; the current ones are deterministic.
    """
    by_id = {c.id: c for c in comparisons}
    ids = [p if isinstance(p, str) else p.id for p in principles]
    if isinstance(votes, VoteTable) and len(set(ids)) == len(ids):
        return _table_stats(ids, by_id, votes)
    wanted = set(ids)
    per_principle: dict[str, dict[str, Vote]] = {pid: {} for pid in ids}
    for vote in votes:
        if vote.principle_id in wanted and vote.comparison_id in by_id:
            per_principle[vote.principle_id][vote.comparison_id] = vote

    rows: list[dict[str, Any]] = []
    for pid in ids:
        pvotes = per_principle[pid]
        counts = {"for": 0, "against": 0, "abstain": 0, "invalid": 0}
        pred: list[str] = []
        label: list[str] = []
        for cid, vote in pvotes.items():
            counts[vote.value] += 1
            comp = by_id[cid]
            if vote.value in ("for", "against"):
                pred.append(comp.preferred if vote.value == "for" else comp.rejected)
                label.append(comp.preferred)
        n_for, n_against, n_abstain = counts["for"], counts["against"], counts["abstain"]
        decided = n_for + n_against
        n_votes = len(pvotes)
        # abstain and invalid both count as "not applicable", as in Feedback Forensics
        relevance = decided / n_votes if n_votes else 0.0
        kappa = fixed_chance_kappa(n_for, n_against) if n_votes else None
        comps = [by_id[cid] for cid in pvotes]
        # p_value stays the binomial test; the plain logistic p only feeds the flag
        _, p_adjusted, confounded = length_confound(
            [direction(v) for v in pvotes.values()],
            [c.preferred == "a" for c in comps],
            [len(c.text_a) - len(c.text_b) for c in comps],
        )
        rows.append(
            {
                "principle_id": pid,
                "n_for": n_for,
                "n_against": n_against,
                "n_abstain": n_abstain,
                "n_invalid": counts["invalid"],
                "agreement": n_for / decided if decided else None,
                "relevance": relevance,
                "kappa": kappa,
                "strength": kappa * relevance if kappa is not None else None,
                "cohen_kappa": cohen_kappa(pred, label),
                "agreement_ci": wilson_ci(n_for, decided),
                "p_value": binomial_p(n_for, decided),
                "swap_consistency": swap_consistency(pvotes.values()),
                "length_adjusted_p": p_adjusted,
                "length_confounded": confounded,
                "n_pairs_tested": len(pvotes),
            }
        )
    q_values = benjamini_hochberg([r["p_value"] for r in rows])
    return [PrincipleStats(**row, q_value=q) for row, q in zip(rows, q_values, strict=True)]


def _kappa_from_counts(n: int, agree: int, pred_a: int, label_a: int) -> float | None:
    """`cohen_kappa` of two a/b annotations given by counts (the same arithmetic, so the same float)."""
    if n == 0:
        return None
    po = agree / n
    pe = 0.0
    for pred_c, label_c in ((pred_a, label_a), (n - pred_a, n - label_a)):
        if pred_c or label_c:
            pe += (pred_c / n) * (label_c / n)
    if pe >= 1 - 1e-12:
        return 0.0
    return (po - pe) / (1 - pe)


def _table_stats(ids: Sequence[str], by_id: dict[str, Comparison], table: VoteTable) -> list[PrincipleStats]:
    """`principle_stats` over a vote table, column by column; the same numbers as from the records."""
    rows = np.array([i for i, cid in enumerate(table.comparison_ids) if cid in by_id], dtype=np.int64)
    comps = [by_id[table.comparison_ids[i]] for i in rows.tolist()]
    pref_a = np.fromiter((c.preferred == "a" for c in comps), dtype=bool, count=len(comps))
    length_diff = np.fromiter((len(c.text_a) - len(c.text_b) for c in comps), dtype=float, count=len(comps))
    columns = table.columns_for(ids)
    out: list[dict[str, Any]] = []
    for pid, j in zip(ids, columns.tolist(), strict=True):
        if j < 0:
            values = np.full(rows.size, -1, dtype=np.int8)
            picks = np.zeros((rows.size, 1), dtype=np.int8)
        else:
            values = np.asarray(table.values[rows, j])
            picks = np.asarray(table.picks[rows, j])
        voted = values >= 0
        v, pk, pa = values[voted], picks[voted], pref_a[voted]
        n_for, n_against = int((v == 0).sum()), int((v == 1).sum())
        n_abstain, n_invalid = int((v == 2).sum()), int((v == 3).sum())
        decided = n_for + n_against
        n_votes = int(v.size)
        relevance = decided / n_votes if n_votes else 0.0
        kappa = fixed_chance_kappa(n_for, n_against) if n_votes else None
        # Cohen's kappa: the principle picks the preferred side on "for", the other on "against"
        pred_a = int(((v == 0) & pa).sum() + ((v == 1) & ~pa).sum())
        label_a = int((((v == 0) | (v == 1)) & pa).sum())
        _, p_adjusted, confounded = length_confound(direction_codes(pk), pa, length_diff[voted])
        valid = (pk >= 1) & (pk <= 3)
        two = valid.sum(axis=1) >= 2
        high = np.where(valid, pk, -1).max(axis=1)
        low = np.where(valid, pk, 99).min(axis=1)
        n_two = int(two.sum())
        out.append(
            {
                "principle_id": pid,
                "n_for": n_for,
                "n_against": n_against,
                "n_abstain": n_abstain,
                "n_invalid": n_invalid,
                "agreement": n_for / decided if decided else None,
                "relevance": relevance,
                "kappa": kappa,
                "strength": kappa * relevance if kappa is not None else None,
                "cohen_kappa": _kappa_from_counts(decided, n_for, pred_a, label_a),
                "agreement_ci": wilson_ci(n_for, decided),
                "p_value": binomial_p(n_for, decided),
                "swap_consistency": int((two & (high == low)).sum()) / n_two if n_two else None,
                "length_adjusted_p": p_adjusted,
                "length_confounded": confounded,
                "n_pairs_tested": n_votes,
            }
        )
    q_values = benjamini_hochberg([r["p_value"] for r in out])
    return [PrincipleStats(**row, q_value=q) for row, q in zip(out, q_values, strict=True)]
