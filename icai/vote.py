"""Stage 3: test every principle against every comparison, in both presentation orders."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from icai.llm.base import supports_logprobs
from icai.llm.client import LLM
from icai.parse import parse_votes
from icai.prompts import vote_one_request, vote_request
from icai.types import Comparison, Pick, Principle, Vote, combine_picks

log = logging.getLogger(__name__)

_SWAP: dict[Pick, Pick] = {"a": "b", "b": "a", "neither": "neither", "invalid": "invalid"}

VoteMode = Literal["generate", "logprob"]

LOGPROB_MARGIN = 0.05
"""Debiased log-odds (nats) below which a log-prob vote abstains.

The margin is the mean over both orders of log P(first response) - log P(second),
translated to the comparison's sides; a constant preference for slot A adds +x in
one order and -x in the other, so it cancels. Below 0.05 nats (about a 51/49 split)
the model is treated as having no opinion.
"""


def resolve_vote_mode(mode: str, llm: LLM) -> VoteMode:
    """"auto" means log-prob scoring for local models and generated JSON for API models."""
    if mode in ("generate", "logprob"):
        return mode  # type: ignore[return-value]
    if mode != "auto":
        raise ValueError(f"unknown vote mode {mode!r}")
    return "logprob" if llm.model.startswith("local/") and supports_logprobs(llm.provider) else "generate"


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
    if margin is None:
        return "invalid"
    if margin > threshold:
        return "a"
    if margin < -threshold:
        return "b"
    return "neither"


def vote(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    *,
    batch_size: int = 40,
    both_orders: bool = True,
    mode: VoteMode = "generate",
    threshold: float = LOGPROB_MARGIN,
) -> list[Vote]:
    """One Vote per (comparison, principle); `batch_size` principles share one call.

    `mode="logprob"` asks one principle per call and reads the next-token
    log-probabilities of "A" and "B" in both orders (see `debiased_margin`);
    it needs a provider that returns them (local models, OpenAI-compatible servers).

    Each pair is asked as (A, B) and, with `both_orders`, as (B, A); the swapped
    answer is translated back so a model that always says "A" abstains.
    Network failures propagate (after retries in the LLM wrapper); only
    unreadable model text becomes an "invalid" pick.
    """
    if mode == "logprob":
        return _vote_logprob(comparisons, principles, llm, threshold=threshold)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batches = [list(principles[i : i + batch_size]) for i in range(0, len(principles), batch_size)]
    orders = (False, True) if both_orders else (False,)
    # A pair's batches in one order are consecutive: those prompts differ only in the
    # rules at the end, so prefix caches (the provider's, a local KV cache) reuse the pair.
    jobs: list[tuple[Comparison, list[Principle], bool]] = [
        (c, batch, swapped) for c in comparisons for swapped in orders for batch in batches
    ]
    requests = [
        vote_request(
            c.prompt,
            c.text_b if swapped else c.text_a,
            c.text_a if swapped else c.text_b,
            [p.text for p in batch],
        )
        for c, batch, swapped in jobs
    ]
    completions = llm.map(requests, desc="vote", keys=[c.id for c, _, _ in jobs])

    picks: dict[tuple[str, str], list[Pick]] = {}
    raws: dict[tuple[str, str], list[str]] = {}
    for (c, batch, swapped), completion in zip(jobs, completions, strict=True):
        parsed = parse_votes(completion.text, len(batch))
        for p, pick in zip(batch, parsed, strict=True):
            key = (c.id, p.id)
            picks.setdefault(key, []).append(_SWAP[pick] if swapped else pick)
            if pick == "invalid":
                raws.setdefault(key, []).append(completion.text)

    by_id = {c.id: c for c in comparisons}
    votes = [
        Vote(
            comparison_id=cid,
            principle_id=pid,
            value=combine_picks(ps, by_id[cid].preferred),
            picks=tuple(ps),
            raw=" || ".join(raws.get((cid, pid), [])),
        )
        for (cid, pid), ps in picks.items()
    ]
    n_invalid = sum(v.value == "invalid" for v in votes)
    if n_invalid:
        log.warning("vote: %d of %d votes invalid (unreadable model output)", n_invalid, len(votes))
    return votes


def _vote_logprob(
    comparisons: Sequence[Comparison], principles: Sequence[Principle], llm: LLM, *, threshold: float
) -> list[Vote]:
    # Per pair, every principle in the order (A, B), then every one in (B, A):
    # consecutive prompts then differ only in the rule at the end, so prefix
    # caches (a provider's, or the local KV cache) reuse the whole pair.
    requests = []
    for c in comparisons:
        requests += [vote_one_request(c.prompt, c.text_a, c.text_b, p.text) for p in principles]
        requests += [vote_one_request(c.prompt, c.text_b, c.text_a, p.text) for p in principles]
    completions = llm.map(requests, desc="vote (log-prob)", keys=[c.id for c in comparisons for _ in range(2 * len(principles))])
    n = len(principles)
    votes = []
    for i, c in enumerate(comparisons):
        for j, p in enumerate(principles):
            shown, swapped = completions[2 * n * i + j], completions[2 * n * i + n + j]
            margin = debiased_margin(shown.choice_logprobs, swapped.choice_logprobs)
            pick = margin_pick(margin, threshold=threshold)
            raw = f"margin={margin:.4f}" if margin is not None else f"unreadable: {shown.text!r} / {swapped.text!r}"
            votes.append(Vote(c.id, p.id, combine_picks([pick], c.preferred), (pick,), raw))
    return votes
