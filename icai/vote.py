"""Stage 3: test every principle against every comparison, in both presentation orders."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal, cast

import numpy as np

from icai.debias import (
    LOGPROB_MARGIN,
    calibrated_margins,
    combine_picks,
    debiased_margin,
    margin_pick,
    order_margin,
)
from icai.llm.base import LLMError, NegotiatesLogprobs
from icai.llm.client import LLM
from icai.parse import parse_votes
from icai.prompts import VOTE_LAYOUT, VoteLayout, vote_branches_request, vote_one_request, vote_request
from icai.style import feature_column, is_style, style_rule, style_sides
from icai.surface import side_features
from icai.types import Comparison, Principle
from icai.votes import PICK_CODE, SWAPPED_CODE, VALUE_CODE, VoteTable, combine_codes, preferred_a

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


VOTE_CHUNK_CALLS = 4096
"""About how many calls one chunk of voting sends before its answers are folded into the vote table, so
the driver holds one chunk's requests and completions, never the run's."""


def vote(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    *,
    batch_size: int = 40,
    both_orders: bool = True,
    mode: VoteMode = "generate",
    threshold: float = LOGPROB_MARGIN,
    out: VoteTable | None = None,
    layout: VoteLayout = VOTE_LAYOUT,
) -> VoteTable:
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
    `layout` places the rule in a log-prob prompt (`icai.prompts.VoteLayout`).
    Network failures propagate (after retries in the LLM wrapper); only
    unreadable model text becomes an "invalid" pick. Style principles (`icai.style`,
    origin "surface") are voted exactly, with no call.

    The votes come back as a `VoteTable` (a `Sequence[Vote]`, pair by pair, each pair's principles in
    order), filled chunk by chunk as the answers arrive; `out` is a table to fill (e.g. memory-mapped in
    the run directory by `RunStore.vote_table`), allocated for these comparisons and principles.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    orders = (False, True) if both_orders else (False,)
    table = _table_for(comparisons, principles, out, orders=len(orders), margins=mode == "logprob")
    if not comparisons or not principles:
        return table
    if any(is_style(p) for p in principles):  # style principles are voted exactly, never by the model
        others = [j for j, p in enumerate(principles) if not is_style(p)]
        if others:
            asked = vote(
                comparisons, [principles[j] for j in others], llm,
                batch_size=batch_size, both_orders=both_orders, mode=mode, threshold=threshold, layout=layout,
            )  # fmt: skip
            table.picks[:, others] = asked.picks
            table.values[:, others] = asked.values
            if table.margins is not None and asked.margins is not None:
                table.margins[:, others] = asked.margins
            for k, text in asked.raw.items():
                i, j = divmod(k, len(others))
                table.raw[i * len(principles) + others[j]] = text
        _fill_style(table, comparisons, principles)
        table.refresh()
        return table
    if mode == "logprob":
        _vote_logprob(
            comparisons, principles, llm, table,
            threshold=threshold, batch_size=batch_size, both_orders=both_orders, layout=layout,
        )  # fmt: skip
        table.refresh()
        return table
    batches = [list(principles[i : i + batch_size]) for i in range(0, len(principles), batch_size)]
    texts = [[p.text for p in batch] for batch in batches]
    offsets = [i * batch_size for i in range(len(batches))]
    per_pair = len(orders) * len(batches)
    chunk = max(1, VOTE_CHUNK_CALLS // per_pair)
    preferred = preferred_a(comparisons)
    n_invalid = 0
    for start in range(0, len(comparisons), chunk):
        pairs = comparisons[start : start + chunk]
        # A pair's batches in one order are consecutive: those prompts differ only in the
        # rules at the end, so prefix caches (the provider's, a local KV cache) reuse the pair.
        jobs = [(i, o, b) for i in range(len(pairs)) for o in range(len(orders)) for b in range(len(batches))]
        requests = [
            vote_request(
                pairs[i].prompt,
                pairs[i].text_b if orders[o] else pairs[i].text_a,
                pairs[i].text_a if orders[o] else pairs[i].text_b,
                texts[b],
            )
            for i, o, b in jobs
        ]
        completions = llm.map(requests, desc="vote", keys=[pairs[i].id for i, _, _ in jobs])
        del requests
        picks = np.zeros((len(pairs), len(principles), len(orders)), dtype=np.int8)
        for (i, o, b), completion in zip(jobs, completions, strict=True):
            parsed = parse_votes(completion.text, len(batches[b]))
            codes = [PICK_CODE[p] for p in parsed]
            if orders[o]:
                codes = [int(SWAPPED_CODE[c]) for c in codes]
            picks[i, offsets[b] : offsets[b] + len(codes), o] = codes
            if 4 in codes:
                for j, c in enumerate(codes):
                    if c == 4:
                        k = (start + i) * len(principles) + offsets[b] + j
                        table.raw[k] = completion.text if k not in table.raw else f"{table.raw[k]} || {completion.text}"
        del completions
        values = combine_codes(picks, preferred[start : start + len(pairs), None])
        table.picks[start : start + len(pairs)] = picks
        table.values[start : start + len(pairs)] = values
        n_invalid += int((values == 3).sum())
    table.refresh()
    if n_invalid:
        log.warning("vote: %d of %d votes invalid (unreadable model output)", n_invalid, len(table))
    return table


STYLE_CHUNK = 20_000
"""Pairs whose responses the style features are counted for at once."""


def _fill_style(table: VoteTable, comparisons: Sequence[Comparison], principles: Sequence[Principle]) -> None:
    """The style principles' columns of `table`, counted from the responses (`icai.style`): one pick, no call.

    Each response's features are counted once, for all style principles, a chunk of pairs at a time."""
    rules = [(j, rule) for j, p in enumerate(principles) if (rule := style_rule(p)) is not None]
    for start in range(0, len(comparisons) if rules else 0, STYLE_CHUNK):
        pairs = comparisons[start : start + STYLE_CHUNK]
        rows = slice(start, start + len(pairs))
        counts_a, counts_b = side_features(pairs)
        preferred = preferred_a(pairs)
        for j, rule in rules:
            column = feature_column(rule)
            side = style_sides(rule, counts_a[:, column], counts_b[:, column])
            picks = np.zeros((len(pairs), table.picks.shape[2]), dtype=np.int8)
            picks[:, 0] = np.where(side > 0, PICK_CODE["a"], np.where(side < 0, PICK_CODE["b"], PICK_CODE["neither"]))
            table.picks[rows, j] = picks
            table.values[rows, j] = combine_codes(picks, preferred)


def _table_for(
    comparisons: Sequence[Comparison], principles: Sequence[Principle], out: VoteTable | None, *, orders: int, margins: bool
) -> VoteTable:
    """`out` checked against what is voted, or a new in-memory table."""
    cids, pids = [c.id for c in comparisons], [p.id for p in principles]
    if len(set(cids)) != len(cids) or len(set(pids)) != len(pids):
        raise ValueError("vote: comparison ids and principle ids must be unique")
    if out is None:
        return VoteTable.allocate(cids, pids, orders=orders, margins=margins)
    if not out.aligned(cids, pids) or out.picks.shape[2] != orders or (out.margins is not None) != margins:
        raise ValueError(f"vote: the table to fill ({out!r}) was made for other pairs, principles or orders")
    return out


def _vote_logprob(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    table: VoteTable,
    *,
    threshold: float,
    batch_size: int,
    both_orders: bool,
    layout: VoteLayout,
) -> None:
    # Per pair and order, the principles go together: as branches of one call where
    # the provider supports them (the pair is encoded once), else one call each,
    # consecutive so that prefix caches (a provider's, or the local KV cache) reuse the pair.
    per_call = batch_size if llm.capabilities.branches else 1
    orders = (False, True) if both_orders else (False,)
    batches = [list(principles[i : i + per_call]) for i in range(0, len(principles), per_call)]
    n_p = len(principles)
    chunk = max(1, VOTE_CHUNK_CALLS // (len(orders) * len(batches)))
    if not both_orders:
        chunk = len(comparisons) or 1  # calibration uses the mean over all margins: one chunk
    margins = cast(np.ndarray, table.margins)
    for start in range(0, len(comparisons), chunk):
        pairs = comparisons[start : start + chunk]
        jobs = [(c, swapped, batch) for c in pairs for swapped in orders for batch in batches]
        requests = [
            vote_branches_request(
                c.prompt, *((c.text_b, c.text_a) if swapped else (c.text_a, c.text_b)), [p.text for p in batch], layout=layout
            )
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
        keys = [(c.id, p.id) for c in pairs for p in principles]
        if both_orders:
            chunk_margins = [debiased_margin(*scores[k]) for k in keys]
        else:
            chunk_margins = calibrated_margins([order_margin(scores[k][0]) for k in keys])
        for k, ((cid, pid), margin) in enumerate(zip(keys, chunk_margins, strict=True)):
            i, j = divmod(k, n_p)
            pick = margin_pick(margin, threshold=threshold)
            cell = (start + i) * n_p + j
            if margin is None:
                table.raw[cell] = "unreadable: " + " / ".join(repr(t) for t in texts[(cid, pid)])
            else:
                margins[start + i, j] = margin
            table.picks[start + i, j, :] = 0
            table.picks[start + i, j, 0] = PICK_CODE[pick]
            table.values[start + i, j] = VALUE_CODE[combine_picks([pick], pairs[i].preferred)]
