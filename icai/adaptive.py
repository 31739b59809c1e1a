"""Adaptive voting: test each principle only until its place in or out of the top k is clear.

Each principle is an arm of a top-k identification bandit. Its score on one pair
is +1 (votes for the human-preferred response), -1 (against) or 0 (abstains);
the mean over pairs estimates relevance x (2 x agreement - 1), the quantity
`icai.select` ranks by (kappa x relevance, with kappa about 2 x agreement - 1 on
balanced labels). Pairs are drawn in a seeded random order, in rounds; after
each round every still-active principle gets a confidence interval and stops
being tested once the interval places it clearly in the top k (its lower bound
above the (k+1)-th best upper bound) or clearly out (its upper bound below the
k-th best lower bound, or at most 0, never better than chance). This is
successive elimination with LUCB-style acceptance (Kalyanakrishnan et al. 2012).

The target is a principle's score over all training pairs, which exhaustive
voting would compute, so the intervals are for sampling without replacement and
shrink to a point once a principle has seen every pair. Two kinds:

- "betting" (default): the hedged-capital confidence sequence of Waudby-Smith &
  Ramdas (2020, sampling without replacement; 2023, JRSS-B), anytime-valid, so
  no union bound over rounds is needed; it adapts to a principle's variance,
  which is small for the many principles that mostly abstain;
- "hoeffding": Hoeffding-Serfling bounds (Serfling 1974), union-bounded over
  every check the round schedule can make.

Either is union-bounded over principles, so with probability >= `confidence`
every interval holds at every check and the accepted set is the exhaustive top k
(up to ties within `tolerance`, see `decide`). Empirical Bernstein bounds were
considered: their range term (about 9 ln(1/delta) / n for scores in [-1, 1])
makes them wider than Hoeffding below roughly a thousand pairs per principle.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from icai.debias import LOGPROB_MARGIN, SWAP
from icai.llm.client import LLM
from icai.types import Comparison, Principle, Vote
from icai.vote import VoteMode, vote

log = logging.getLogger(__name__)

Bound = Literal["betting", "hoeffding"]

Decision = Literal["in", "out", "open"]
"""Clearly in the top k, clearly out of it, or still undecided when testing stopped."""

_SCORE: dict[str, int] = {"for": 1, "against": -1, "abstain": 0}

@dataclass(frozen=True)
class Interval:
    """A principle's running score and its union-bounded confidence interval."""

    n: int
    """Pairs with a valid vote (invalid votes carry no evidence and are left out)."""
    mean: float
    lower: float
    upper: float


@dataclass(frozen=True)
class AdaptiveResult:
    votes: tuple[Vote, ...]
    pairs_tested: Mapping[str, int]
    """Pairs each principle was voted on, by principle id."""
    rounds: int
    calls: int
    """Requests sent to the LLM wrapper (cache hits included; see `LLM.usage` for provider calls)."""
    n_pairs: int
    """Pairs available; the exhaustive cost is n_pairs x all principles."""
    decisions: Mapping[str, Decision]
    intervals: Mapping[str, Interval]

    @property
    def top(self) -> list[str]:
        """Ids decided to be in the top k, best mean first (principles still open are left out)."""
        return [pid for pid, _ in sorted(self.intervals.items(), key=lambda t: -t[1].mean) if self.decisions[pid] == "in"]


def _swap(c: Comparison) -> Comparison:
    """The same pair shown the other way round (the label follows its response)."""
    return Comparison(c.id, c.text_b, c.text_a, c.rejected, c.prompt, c.metadata)


def hoeffding_serfling_radius(n: int, population: int, delta: float) -> float:
    """Two-sided radius for a mean of n scores in [-1, 1] drawn without replacement from `population`.

    Serfling (1974): P(|mean - mu| >= t) <= 2 exp(-2 n t^2 / ((1 - (n-1)/N) (b-a)^2)),
    so t = sqrt(2 rho ln(2/delta) / n) with rho = 1 - (n-1)/N; 0 once n == N.
    """
    if n <= 0:
        return math.inf
    rho = max(0.0, 1.0 - (n - 1) / population) if population > 0 else 1.0
    if n >= population:
        rho = 0.0
    return math.sqrt(2.0 * rho * math.log(2.0 / delta) / n)


class BettingInterval:
    """Running confidence sequence for the mean of scores in [-1, 1] drawn without replacement.

    Hedged capital with predictable plug-in bets (Waudby-Smith & Ramdas): for each
    candidate population mean m on a grid, two gamblers bet that the next score lies
    above / below the mean of the pairs not yet drawn; m is excluded once their
    combined wealth reaches 1/alpha at any time. Candidates that the draws so far
    make impossible (remaining mean outside [0, 1]) are excluded at once.
    """

    def __init__(self, population: int, alpha: float, *, grid: int = 2001, cap: float = 0.75) -> None:
        self.population = population
        self.log_threshold = math.log(1 / alpha)
        self.log_bet_scale = math.log(2 / alpha)
        self.cap = cap
        self.m = np.linspace(0.0, 1.0, grid)[1:-1]
        self.log_up = np.zeros_like(self.m)
        self.log_down = np.zeros_like(self.m)
        self.excluded = np.zeros(self.m.shape, dtype=bool)
        self.n = 0
        self.total = 0.0
        self.mu_hat = 0.5
        self.var_sum = 0.25

    def update(self, scores: Sequence[int]) -> None:
        for x in scores:
            y = (x + 1) / 2
            t = self.n + 1
            sigma2 = self.var_sum / t
            lam = min(math.sqrt(2 * self.log_bet_scale / (sigma2 * t * math.log(1 + t))), self.cap)
            remaining = self.population - self.n
            m_t = (self.population * self.m - self.total) / remaining if remaining > 0 else self.m
            self.excluded |= (m_t < 0) | (m_t > 1)
            m_t = np.clip(m_t, 1e-9, 1 - 1e-9)
            self.log_up += np.log1p(np.minimum(lam, self.cap / m_t) * (y - m_t))
            self.log_down += np.log1p(-np.minimum(lam, self.cap / (1 - m_t)) * (y - m_t))
            hedged = np.logaddexp(self.log_up, self.log_down) - math.log(2)
            self.excluded |= hedged >= self.log_threshold
            self.n = t
            self.total += y
            self.var_sum += (y - self.mu_hat) ** 2
            self.mu_hat = (0.5 + self.total) / (t + 1)

    def interval(self) -> tuple[float, float]:
        """(lower, upper) on the [-1, 1] score scale."""
        if self.n >= self.population > 0:
            mean = 2 * self.total / self.n - 1
            return (mean, mean)
        kept = self.m[~self.excluded]
        if kept.size == 0:  # only through rounding at the grid's resolution
            mean = 2 * self.total / max(self.n, 1) - 1
            return (mean, mean)
        step = self.m[1] - self.m[0]
        return (max(-1.0, 2 * (kept[0] - step) - 1), min(1.0, 2 * (kept[-1] + step) - 1))


def schedule(n_pairs: int, *, min_pairs: int, round_size: int) -> list[int]:
    """Pairs per round: the first round covers `min_pairs` (at least one round), then `round_size` each."""
    if n_pairs <= 0:
        return []
    first = min(n_pairs, max(min_pairs, 1))
    sizes = [first]
    left = n_pairs - first
    while left > 0:
        sizes.append(min(round_size, left))
        left -= sizes[-1]
    return sizes


def decide(
    intervals: Mapping[str, Interval], active: set[str], k: int, *, tolerance: float = 0.0
) -> dict[str, Decision]:
    """New decisions for the active principles, given every principle's current interval.

    In: lower bound above the (k+1)-th largest upper bound. Out: upper bound at
    most 0, or below the k-th largest lower bound. Decided principles keep their
    last interval and still count in the order statistics.

    With `tolerance` eps > 0 the rule is (eps, delta)-PAC, as in LUCB (Kalyanakrishnan
    et al. 2012): a principle is also settled once the comparison is within eps, so
    a kept principle may score up to eps below one left out, never more.
    """
    uppers = sorted((iv.upper for iv in intervals.values()), reverse=True)
    lowers = sorted((iv.lower for iv in intervals.values()), reverse=True)
    upper_k1 = uppers[k] if len(uppers) > k else -math.inf
    lower_k = lowers[k - 1] if len(lowers) >= k else -math.inf
    # only a principle ranked in the top k by its mean can go in, and only one ranked below can go out
    # (implied by the bounds when tolerance is 0; it keeps the eps-relaxed rules from contradicting)
    top_by_mean = set(sorted(intervals, key=lambda pid: (-intervals[pid].mean, pid))[:k])
    out: dict[str, Decision] = {}
    for pid in active:
        iv = intervals[pid]
        if iv.upper <= 0 or (iv.upper < lower_k + tolerance and pid not in top_by_mean):
            out[pid] = "out"
        elif iv.lower > upper_k1 - tolerance and pid in top_by_mean:
            out[pid] = "in"
    return out


def vote_adaptive(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    *,
    k: int = 5,
    batch_size: int = 40,
    mode: VoteMode = "generate",
    confidence: float = 0.95,
    min_pairs: int = 32,
    round_size: int = 16,
    seed: int = 0,
    tolerance: float = 0.1,
    bound: Bound = "betting",
    both_orders: bool = True,
    threshold: float = LOGPROB_MARGIN,
) -> AdaptiveResult:
    """Vote in rounds, stopping each principle once its membership in the top k is clear.

    Every principle is voted on the same first `min_pairs` pairs (or all pairs,
    if fewer); each later round adds `round_size` pairs for the principles still
    active. Voting itself is `icai.vote.vote`, so batching, both presentation
    orders and log-prob mode behave as in exhaustive voting.

    Args:
        k: how many top principles to identify (the constitution size).
        confidence: probability that every interval holds at every check.
        tolerance: score difference (on the [-1, 1] scale) not worth resolving; see `decide`.
            Two principles that close are near-interchangeable in a constitution, and
            telling them apart takes most of the pairs (bench/calls.py); 0 asks for the exact top k.
        bound: "betting" (variance-adaptive, anytime) or "hoeffding" intervals; see the module docstring.
        both_orders: ask each pair in both presentation orders (a position-biased
            answer then abstains). False asks once, in a seeded random order per pair:
            half the calls; position bias then only adds noise to the scores (it is
            equally likely to favour either side) and votes have one pick each.
            Log-prob votes asked once are calibrated by the round's mean A-over-B
            margin (`icai.debias.calibrated_margins`), which the random orders make an
            estimate of the position bias.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    if min_pairs < 1 or round_size < 1:
        raise ValueError("min_pairs and round_size must be at least 1")
    principles = list(dict.fromkeys(principles))
    order = list(comparisons)
    random.Random(seed).shuffle(order)
    sides = random.Random(f"{seed}/sides")
    swapped = {c.id for c in order if sides.random() < 0.5}
    sizes = schedule(len(order), min_pairs=min_pairs, round_size=round_size)
    if bound not in ("betting", "hoeffding"):
        raise ValueError(f"unknown bound {bound!r}")
    alpha = (1 - confidence) / max(1, len(principles))
    delta = alpha / max(1, len(sizes))  # Hoeffding: union over every check as well
    betting = {p.id: BettingInterval(len(order), alpha) for p in principles} if bound == "betting" else {}
    scores: dict[str, list[int]] = {p.id: [] for p in principles}

    tested: dict[str, int] = {p.id: 0 for p in principles}
    intervals: dict[str, Interval] = {p.id: Interval(0, 0.0, -1.0, 1.0) for p in principles}
    decisions: dict[str, Decision] = {p.id: "open" for p in principles}
    active = [p for p in principles]
    votes: list[Vote] = []
    calls = rounds = start = 0
    for size in sizes:
        if not active:
            break
        chunk = order[start : start + size]
        start += size
        rounds += 1
        shown = chunk if both_orders else [_swap(c) if c.id in swapped else c for c in chunk]
        before = llm.usage.calls + llm.usage.cache_hits
        round_votes: Sequence[Vote] = vote(
            shown, active, llm, batch_size=batch_size, both_orders=both_orders, mode=mode, threshold=threshold
        )
        calls += llm.usage.calls + llm.usage.cache_hits - before
        if not both_orders:
            round_votes = [
                replace(v, picks=tuple(SWAP[p] for p in v.picks)) if v.comparison_id in swapped else v
                for v in round_votes
            ]
        votes.extend(round_votes)
        fresh: dict[str, list[int]] = {p.id: [] for p in active}
        for v in round_votes:
            tested[v.principle_id] += 1
            if v.value in _SCORE:
                fresh[v.principle_id].append(_SCORE[v.value])
        for p in active:
            scores[p.id] += fresh[p.id]
            n = len(scores[p.id])
            mean = sum(scores[p.id]) / n if n else 0.0
            if bound == "betting":
                betting[p.id].update(fresh[p.id])
                lower, upper = betting[p.id].interval()
            else:
                radius = hoeffding_serfling_radius(n, len(order), delta)
                lower, upper = max(-1.0, mean - radius), min(1.0, mean + radius)
            intervals[p.id] = Interval(n, mean, lower, upper)
        new = decide(intervals, {p.id for p in active}, k, tolerance=tolerance)
        decisions.update(new)
        active = [p for p in active if p.id not in new]
        log.info(
            "adaptive vote: round %d, %d pairs seen, %d principles in, %d out, %d active",
            rounds,
            start,
            sum(d == "in" for d in decisions.values()),
            sum(d == "out" for d in decisions.values()),
            len(active),
        )
    exhaustive = len(order) * len(principles)
    log.info(
        "adaptive vote: %d of %d principle-pair votes (%.0f%%) in %d rounds",
        len(votes),
        exhaustive,
        100 * len(votes) / exhaustive if exhaustive else 0,
        rounds,
    )
    return AdaptiveResult(
        votes=tuple(votes),
        pairs_tested=tested,
        rounds=rounds,
        calls=calls,
        n_pairs=len(order),
        decisions=decisions,
        intervals=intervals,
    )
