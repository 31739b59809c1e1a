"""Position-debiasing arithmetic: picks and log-prob margins from several presentation orders, combined.

An annotator shown a pair as (A, B) and again as (B, A) may prefer a slot rather than a
response; everything here translates answers back to the pair's own sides and combines
them so that a constant slot preference cancels. Pure functions, no model calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from icai.types import Pick, Side, VoteValue

SWAP: dict[Pick, Pick] = {"a": "b", "b": "a", "neither": "neither", "invalid": "invalid"}
"""A pick in the swapped order, in the pair's own a/b terms."""

LOGPROB_MARGIN = 0.05
"""Debiased log-odds (nats) below which a log-prob vote abstains.

The margin is the mean over both orders of log P(first response) - log P(second),
translated to the comparison's sides; a constant preference for slot A adds +x in
one order and -x in the other, so it cancels. Below 0.05 nats (about a 51/49 split)
the model is treated as having no opinion.
"""


def combine_picks(picks: Sequence[Pick], preferred: Side) -> VoteValue:
    """Debias picks from several orders into one vote against the human label.

    Each valid pick scores +1 (picks the preferred side), -1 (picks the other)
    or 0 (neither). The sign of the sum decides; all-invalid gives "invalid".
    """
    valid = [p for p in picks if p != "invalid"]
    if not valid:
        return "invalid"
    score = sum(0 if p == "neither" else (1 if p == preferred else -1) for p in valid)
    if score > 0:
        return "for"
    if score < 0:
        return "against"
    return "abstain"


def debiased_pick(picks: Sequence[Pick]) -> Pick:
    """The side most picks lean to over several orders (picks already in the pair's own a/b terms)."""
    valid = [p for p in picks if p != "invalid"]
    if not valid:
        return "invalid"
    lean = valid.count("a") - valid.count("b")
    return "a" if lean > 0 else "b" if lean < 0 else "neither"


def order_margin(logprobs: Mapping[str, float] | None) -> float | None:
    """log P("A") - log P("B") for one order; None when either is missing or not finite."""
    if not logprobs:
        return None
    a, b = logprobs.get("A"), logprobs.get("B")
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a - b


def debiased_margin(as_shown: Mapping[str, float] | None, swapped: Mapping[str, float] | None) -> float | None:
    """Mean margin in favour of side a over the (A, B) and (B, A) orders; None if unreadable.

    In the swapped order "A" is the comparison's b, so its margin enters negated.
    """
    m1, m2 = order_margin(as_shown), order_margin(swapped)
    if m1 is None or m2 is None:
        return None
    return (m1 - m2) / 2


def margin_pick(margin: float | None, *, threshold: float = LOGPROB_MARGIN) -> Pick:
    """The side a debiased margin favours; "neither" within +-threshold, "invalid" when unreadable."""
    if margin is None:
        return "invalid"
    if margin > threshold:
        return "a"
    if margin < -threshold:
        return "b"
    return "neither"


def calibrated_margins(margins: Sequence[float | None]) -> list[float | None]:
    """One-order margins less their mean: the mean estimates the model's preference for slot A.

    Valid when the presentation orders were randomised (as adaptive one-order voting
    does): the rules' real preferences then fall on either slot equally often and
    average out, leaving the position bias.
    """
    readable = [m for m in margins if m is not None]
    bias = sum(readable) / len(readable) if readable else 0.0
    return [m - bias if m is not None else None for m in margins]
