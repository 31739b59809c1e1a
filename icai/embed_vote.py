"""Votes without an LLM, and an embedding cascade in front of the LLM vote.

The embedding scorer strips the "Select the response that" frame from a
principle, embeds what is left (its content) and both responses, and compares
the cosine similarities s_a = cos(content, a) and s_b = cos(content, b):

- the principle is *relevant* to the pair when max(s_a, s_b) >= `floor`: it is
  about something at least one response talks about;
- a relevant principle picks the side it is more similar to when
  |s_a - s_b| > `margin`, else "neither".

The cascade (`cascade_vote`) asks the LLM only about (pair, principle) items the
embedder does not rule out: an item is *skipped*, and recorded as an "abstain"
vote without an LLM call, when

    max(s_a, s_b) < CASCADE_FLOOR  or  |s_a - s_b| < CASCADE_MIN_GAP

i.e. the principle is about neither response, or the two responses are
indistinguishable on it. The floor is lower than the scorer's: the cascade only
drops what is clearly irrelevant and leaves the close calls to the LLM. A
principle about form rather than content ("is shorter", "uses a list") has low
similarity to every response and is skipped too: use the cascade where
principles name content, or lower `floor`.

The thresholds are on the cosine scale of the shipped MiniLM (all-MiniLM-L6-v2),
where unrelated short texts score about 0.0-0.2 and a principle about a
response's topic about 0.3-0.8 (docs/benchmarks.md, "Offline default"); another
embedder needs its own values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icai.debias import LOGPROB_MARGIN, combine_picks, margin_pick
from icai.embed import Embedder
from icai.llm.client import LLM
from icai.parse import principle_content
from icai.style import is_style, with_style_votes
from icai.types import Comparison, Pick, Principle, Vote
from icai.vote import VoteMode, vote

log = logging.getLogger(__name__)

EMBED_MARGIN = 0.03
"""Cosine difference below which the embedding scorer says "neither" (MiniLM scale)."""

EMBED_FLOOR = 0.25
"""The embedding scorer votes only when the principle's content reaches this similarity with one response."""

CASCADE_FLOOR = 0.20
"""Below this similarity to both responses, the cascade skips the LLM for an item."""

CASCADE_MIN_GAP = 0.01
"""Below this similarity difference, the cascade skips the LLM for an item."""

SKIPPED = "cascade: skipped"
"""Start of `Vote.raw` for an item the cascade answered without the LLM."""


@dataclass(frozen=True)
class Similarities:
    """Cosine similarity of each principle's content to each response; rows are comparisons."""

    a: np.ndarray
    b: np.ndarray


def similarities(comparisons: Sequence[Comparison], principles: Sequence[Principle], embedder: Embedder) -> Similarities:
    """s_a[i, j] and s_b[i, j] for comparison i and principle j; every distinct text is encoded once."""
    if not comparisons or not principles:
        empty = np.zeros((len(comparisons), len(principles)), dtype=np.float32)
        return Similarities(empty, empty.copy())
    responses = list(dict.fromkeys(t for c in comparisons for t in (c.text_a, c.text_b)))
    row = {t: i for i, t in enumerate(responses)}
    contents = [principle_content(p.text) for p in principles]
    unique_contents = list(dict.fromkeys(contents))
    col = {t: i for i, t in enumerate(unique_contents)}
    response_vecs = embedder.encode(responses)
    content_vecs = embedder.encode(unique_contents)
    sims = response_vecs @ content_vecs.T
    ia = [row[c.text_a] for c in comparisons]
    ib = [row[c.text_b] for c in comparisons]
    jc = [col[t] for t in contents]
    return Similarities(sims[np.ix_(ia, jc)], sims[np.ix_(ib, jc)])


def embedding_pick(s_a: float, s_b: float, *, margin: float = EMBED_MARGIN, floor: float = EMBED_FLOOR) -> Pick:
    """The side the principle's content is closer to; "neither" when it is about neither or the gap is small."""
    if max(s_a, s_b) < floor:
        return "neither"
    return margin_pick(s_a - s_b, threshold=margin)


def vote_by_embedding(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    embedder: Embedder,
    *,
    margin: float = EMBED_MARGIN,
    floor: float = EMBED_FLOOR,
) -> list[Vote]:
    """One Vote per (comparison, principle) from cosine similarities, with no LLM (see the module docstring).

    The pick is in the comparison's own sides; there is one pick per vote, since
    an embedding has no presentation order to debias. Style principles (`icai.style`)
    are voted exactly instead.
    """
    if any(is_style(p) for p in principles):  # style principles are voted exactly, never by similarity
        return with_style_votes(
            comparisons, principles, lambda rest: vote_by_embedding(comparisons, rest, embedder, margin=margin, floor=floor)
        )
    sims = similarities(comparisons, principles, embedder)
    votes = []
    for i, c in enumerate(comparisons):
        for j, p in enumerate(principles):
            s_a, s_b = float(sims.a[i, j]), float(sims.b[i, j])
            pick = embedding_pick(s_a, s_b, margin=margin, floor=floor)
            votes.append(Vote(c.id, p.id, combine_picks([pick], c.preferred), (pick,), f"sim_a={s_a:.4f} sim_b={s_b:.4f}"))
    return votes


@dataclass(frozen=True)
class CascadeStats:
    """How many (pair, principle) items the cascade answered without the LLM."""

    n_items: int
    n_skipped: int

    @property
    def n_sent(self) -> int:
        """Items that went to the LLM."""
        return self.n_items - self.n_skipped

    @property
    def skip_rate(self) -> float:
        return self.n_skipped / self.n_items if self.n_items else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"n_items": self.n_items, "n_skipped": self.n_skipped, "skip_rate": round(self.skip_rate, 4)}

    @classmethod
    def from_votes(cls, votes: Sequence[Vote]) -> CascadeStats:
        """Recount from saved votes (skipped items carry `SKIPPED` in `raw`)."""
        return cls(len(votes), sum(v.raw.startswith(SKIPPED) for v in votes))


def relevance_filter(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    embedder: Embedder,
    *,
    floor: float = CASCADE_FLOOR,
    min_gap: float = CASCADE_MIN_GAP,
) -> tuple[dict[tuple[str, str], tuple[float, float]], CascadeStats]:
    """The (comparison id, principle id) items to skip, with their (s_a, s_b), and the counts.

    An item is skipped when max(s_a, s_b) < floor or |s_a - s_b| < min_gap. Style principles (`icai.style`) are
    never skipped: `icai.vote.vote` answers them exactly, with no call.
    """
    sims = similarities(comparisons, principles, embedder)
    skip: dict[tuple[str, str], tuple[float, float]] = {}
    for i, c in enumerate(comparisons):
        for j, p in enumerate(principles):
            if is_style(p):
                continue
            s_a, s_b = float(sims.a[i, j]), float(sims.b[i, j])
            if max(s_a, s_b) < floor or abs(s_a - s_b) < min_gap:
                skip[(c.id, p.id)] = (s_a, s_b)
    return skip, CascadeStats(len(comparisons) * len(principles), len(skip))


def cascade_vote(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    llm: LLM,
    embedder: Embedder,
    *,
    floor: float = CASCADE_FLOOR,
    min_gap: float = CASCADE_MIN_GAP,
    batch_size: int = 20,
    mode: VoteMode = "generate",
    both_orders: bool = True,
    threshold: float = LOGPROB_MARGIN,
) -> tuple[list[Vote], CascadeStats]:
    """`icai.vote.vote` on the items `relevance_filter` keeps; skipped items become "abstain" votes.

    Votes come back in comparison-major, principle-minor order. Comparisons that
    keep the same principles share one `vote` call, so the LLM wrapper's
    concurrency still spans pairs.
    """
    skip, stats = relevance_filter(comparisons, principles, embedder, floor=floor, min_gap=min_gap)
    groups: dict[tuple[int, ...], list[Comparison]] = {}
    for c in comparisons:
        kept = tuple(j for j, p in enumerate(principles) if (c.id, p.id) not in skip)
        if kept:
            groups.setdefault(kept, []).append(c)
    asked: dict[tuple[str, str], Vote] = {}
    for kept, group in groups.items():
        for v in vote(
            group,
            [principles[j] for j in kept],
            llm,
            batch_size=batch_size,
            mode=mode,
            both_orders=both_orders,
            threshold=threshold,
        ):
            asked[(v.comparison_id, v.principle_id)] = v
    votes = []
    for c in comparisons:
        for p in principles:
            key = (c.id, p.id)
            if key in skip:
                s_a, s_b = skip[key]
                votes.append(Vote(c.id, p.id, "abstain", ("neither",), f"{SKIPPED} sim_a={s_a:.4f} sim_b={s_b:.4f}"))
            else:
                votes.append(asked[key])
    log.info("cascade: %d of %d items skipped the LLM (%.0f%%)", stats.n_skipped, stats.n_items, 100 * stats.skip_rate)
    return votes, stats
