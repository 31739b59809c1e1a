"""Stage 3: test every principle against every comparison, in both presentation orders."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from icai.llm.client import LLM
from icai.parse import parse_votes
from icai.prompts import vote_request
from icai.types import Comparison, Pick, Principle, Vote, combine_picks

log = logging.getLogger(__name__)

_SWAP: dict[Pick, Pick] = {"a": "b", "b": "a", "neither": "neither", "invalid": "invalid"}


def vote(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    *,
    batch_size: int = 20,
    both_orders: bool = True,
) -> list[Vote]:
    """One Vote per (comparison, principle); `batch_size` principles share one call.

    Each pair is asked as (A, B) and, with `both_orders`, as (B, A); the swapped
    answer is translated back so a model that always says "A" abstains.
    Network failures propagate (after retries in the LLM wrapper); only
    unreadable model text becomes an "invalid" pick.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batches = [list(principles[i : i + batch_size]) for i in range(0, len(principles), batch_size)]
    orders = (False, True) if both_orders else (False,)
    jobs: list[tuple[Comparison, list[Principle], bool]] = [
        (c, batch, swapped) for c in comparisons for batch in batches for swapped in orders
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
    completions = llm.map(requests, desc="vote")

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
