"""Stage 3: test every principle against every comparison, in both presentation orders."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal, cast

from icai.debias import (
    LOGPROB_MARGIN,
    SWAP,
    calibrated_margins,
    combine_picks,
    debiased_margin,
    margin_pick,
    order_margin,
)
from icai.llm.base import LLMError, NegotiatesLogprobs
from icai.llm.client import LLM
from icai.parse import parse_votes
from icai.prompts import vote_branches_request, vote_one_request, vote_request
from icai.types import Comparison, Pick, Principle, Vote

log = logging.getLogger(__name__)

VoteMode = Literal["generate", "logprob"]

def resolve_vote_mode(mode: str, llm: LLM) -> VoteMode:
    """"auto" means log-prob votes where the provider's capabilities ask for them, else generated JSON.

    auto: "logprob" for a provider that declares `logprob_votes` and `choice_logprobs`
    (the local model; an OpenAI-compatible server at a base_url) and, when it negotiates
    log-probs, whose server returns them (`server_returns_logprobs`: one probe); else
    "generate". "logprob" likewise becomes "generate" when the server turns out to
    return none (the provider says so once).
    """
    if mode not in ("auto", "generate", "logprob"):
        raise ValueError(f"unknown vote mode {mode!r}")
    if mode == "auto":
        capabilities = llm.capabilities
        if not (capabilities.logprob_votes and capabilities.choice_logprobs):
            return "generate"
        return "logprob" if server_returns_logprobs(llm) else "generate"
    if mode == "logprob" and not server_returns_logprobs(llm):
        return "generate"
    return mode  # type: ignore[return-value]


def server_returns_logprobs(llm: LLM) -> bool:
    """Whether log-prob requests get log-probs back; True for providers that do not negotiate them.

    An unsettled provider (`logprobs_available` None) is asked one small log-prob
    question through `llm` (cached and counted like any call); only the provider's
    own verdict turns an error into False, any other failure propagates.
    """
    if not llm.capabilities.logprobs_negotiated:
        return True
    provider = cast(NegotiatesLogprobs, llm.provider)
    if provider.logprobs_available is not None:
        return provider.logprobs_available
    try:
        completion = llm.complete(LOGPROB_PROBE)
    except LLMError:
        if provider.logprobs_available is False:
            return False
        raise
    return completion.choice_logprobs is not None


LOGPROB_PROBE = vote_one_request(
    "Which letter comes first in the alphabet?", "A", "B", "Select the response that names the first letter of the alphabet."
)
"""The question that settles whether a server returns log-probs before a log-prob vote starts."""


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

    `mode="logprob"` reads the next-token log-probabilities of "A" and "B" after
    each principle (see `debiased_margin`); it needs a provider that returns them
    (local models, OpenAI-compatible servers). Providers that take branched requests
    (the local model) score `batch_size` principles in one call, the pair encoded
    once; others get one call per principle.

    Each pair is asked as (A, B) and, with `both_orders`, as (B, A); the swapped
    answer is translated back so a model that always says "A" abstains. Log-prob
    votes asked in one order are calibrated instead (`calibrated_margins`), which
    assumes the caller randomised the orders, as adaptive one-order voting does.
    Network failures propagate (after retries in the LLM wrapper); only
    unreadable model text becomes an "invalid" pick.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if mode == "logprob":
        return _vote_logprob(comparisons, principles, llm, threshold=threshold, batch_size=batch_size, both_orders=both_orders)
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
            picks.setdefault(key, []).append(SWAP[pick] if swapped else pick)
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
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    *,
    threshold: float,
    batch_size: int,
    both_orders: bool,
) -> list[Vote]:
    # Per pair and order, the principles go together: as branches of one call where
    # the provider supports them (the pair is encoded once), else one call each,
    # consecutive so that prefix caches (a provider's, or the local KV cache) reuse the pair.
    per_call = batch_size if llm.capabilities.branches else 1
    orders = (False, True) if both_orders else (False,)
    batches = [list(principles[i : i + per_call]) for i in range(0, len(principles), per_call)]
    jobs = [(c, swapped, batch) for c in comparisons for swapped in orders for batch in batches]
    requests = [
        vote_branches_request(c.prompt, *((c.text_b, c.text_a) if swapped else (c.text_a, c.text_b)), [p.text for p in batch])
        for c, swapped, batch in jobs
    ]
    completions = llm.map(requests, desc="vote (log-prob)", keys=[c.id for c, _, _ in jobs])
    # the choices' log-probs per (pair, principle), in the order(s) asked
    scores: dict[tuple[str, str], list[Mapping[str, float] | None]] = {}
    texts: dict[tuple[str, str], list[str]] = {}
    for (c, _, batch), request, completion in zip(jobs, requests, completions, strict=True):
        scored = completion.branch_logprobs if request.branches else (completion.choice_logprobs,)
        for p, logprobs in zip(batch, scored or [None] * len(batch), strict=True):
            scores.setdefault((c.id, p.id), []).append(logprobs)
            texts.setdefault((c.id, p.id), []).append(completion.text)
    keys = [(c.id, p.id) for c in comparisons for p in principles]
    if both_orders:
        margins = [debiased_margin(*scores[k]) for k in keys]
    else:
        margins = calibrated_margins([order_margin(scores[k][0]) for k in keys])
    by_id = {c.id: c for c in comparisons}
    votes = []
    for (cid, pid), margin in zip(keys, margins, strict=True):
        pick = margin_pick(margin, threshold=threshold)
        raw = f"margin={margin:.4f}" if margin is not None else "unreadable: " + " / ".join(repr(t) for t in texts[(cid, pid)])
        votes.append(Vote(cid, pid, combine_picks([pick], by_id[cid].preferred), (pick,), raw))
    return votes
