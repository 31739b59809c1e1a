"""Style features as principles: the surface baseline's features enter the candidate pool and are voted exactly.

Each feature of `icai.surface` (the standard style-control set: length, sentences,
markdown headers, list items, bold, code blocks, links, questions, and the lexical
markers for refusals, hedging and politeness) becomes two principles, one per
direction ("Select the response that uses more list items" / "... fewer list
items"), with `origin="surface"`. `chars` is left out: `words` stands for length,
as in the proposal stage's form hints, and the two would only be duplicates.

A style principle is voted by computing its feature on both responses, with no
model call: the side with more (or fewer) picks, equal counts abstain. The feature
does not depend on the order the responses are shown in, so the vote is the same
in both orders and is recorded as one pick, like an embedding vote. The votes are
ordinary `Vote` records, so style principles go through significance, duplicate
merging and greedy selection like every other principle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from icai.debias import combine_picks
from icai.surface import FEATURES, side_features
from icai.types import Comparison, Pick, Principle, Vote

STYLE_ORIGIN = "surface"
"""`Principle.origin` of a style principle (written by code from a surface feature, voted exactly)."""

StyleDirection = Literal["more", "less"]


@dataclass(frozen=True)
class StyleFeature:
    """How one surface feature reads as a principle, in each direction."""

    name: str
    more: str
    less: str


STYLE_FEATURES: tuple[StyleFeature, ...] = (
    StyleFeature("words", "is longer (more words)", "is shorter (fewer words)"),
    StyleFeature("sentences", "has more sentences", "has fewer sentences"),
    StyleFeature("headers", "uses more section headers", "uses fewer section headers"),
    StyleFeature("list_items", "uses more list items", "uses fewer list items"),
    StyleFeature("bold", "uses more bold text", "uses less bold text"),
    StyleFeature("code_blocks", "includes more code blocks", "includes fewer code blocks"),
    StyleFeature("links", "includes more links", "includes fewer links"),
    StyleFeature("questions", "asks more questions", "asks fewer questions"),
    StyleFeature("refusals", "declines more (more refusal phrases)", "declines less (fewer refusal phrases)"),
    StyleFeature("hedges", "hedges more (might, perhaps, probably)", "hedges less (fewer words such as might or perhaps)"),
    StyleFeature("politeness", "uses more polite words (please, thank you, sorry)", "uses fewer polite words"),
)
"""Every `icai.surface.FEATURES` entry but `chars`, each with its phrase for "more" and for "less"."""


@dataclass(frozen=True)
class StyleRule:
    """A style principle's meaning: the feature and the direction it selects."""

    feature: str
    direction: StyleDirection


def style_principles() -> list[Principle]:
    """The style principles, two per feature (more, then less), in `STYLE_FEATURES` order."""
    out = []
    for f in STYLE_FEATURES:
        for direction, phrase in (("more", f.more), ("less", f.less)):
            out.append(
                Principle.from_text(f"Select the response that {phrase}.", origin=STYLE_ORIGIN, hint=f"form:{f.name}:{direction}")
            )
    return out


_RULES: dict[str, StyleRule] = {
    p.id: StyleRule(p.hint.split(":")[1], "more" if p.hint.endswith(":more") else "less") for p in style_principles()
}


def style_rule(principle: Principle) -> StyleRule | None:
    """The feature and direction of a style principle (by its text), None for any other principle."""
    return _RULES.get(principle.id) if principle.origin == STYLE_ORIGIN else None


def is_style(principle: Principle) -> bool:
    return style_rule(principle) is not None


_SIDE_PICK: dict[int, Pick] = {1: "a", -1: "b", 0: "neither"}
"""`style_sides`' codes as picks."""


def style_sides(rule: StyleRule, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """+1 where the rule selects side a, -1 side b, 0 neither, from the rule's feature counted on each side
    (arrays of pairs: the column `feature_column(rule)` of `icai.surface.side_features`)."""
    more = np.sign(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).astype(np.int8)
    return more if rule.direction == "more" else -more


def feature_column(rule: StyleRule) -> int:
    """The rule's column in `icai.surface.FEATURES` (and in `side_features`' arrays)."""
    return FEATURES.index(rule.feature)


def vote_by_style(comparisons: Sequence[Comparison], principles: Sequence[Principle]) -> list[Vote]:
    """One exact Vote per (comparison, style principle), comparison-major; no model call.

    Raises ValueError for a principle that is not a style principle.
    """
    rules = []
    for p in principles:
        rule = style_rule(p)
        if rule is None:
            raise ValueError(f"not a style principle: {p.text!r}")
        rules.append(rule)
    votes = []
    counts_a, counts_b = side_features(comparisons)  # each response counted once, for every rule
    columns = [feature_column(rule) for rule in rules]
    sides = [style_sides(rule, counts_a[:, j], counts_b[:, j]).tolist() for rule, j in zip(rules, columns, strict=True)]
    for i, c in enumerate(comparisons):
        for p, rule, j, side in zip(principles, rules, columns, sides, strict=True):
            a, b = float(counts_a[i, j]), float(counts_b[i, j])
            pick = _SIDE_PICK[side[i]]
            raw = f"style {rule.feature}: a={a:g} b={b:g}"
            votes.append(Vote(c.id, p.id, combine_picks([pick], c.preferred), (pick,), raw))
    return votes


def with_style_votes(
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    voter: Callable[[list[Principle]], list[Vote]],
) -> list[Vote]:
    """Votes on `principles`: the style principles voted exactly, the others by `voter` (called once, only if any).

    Comparison-major, principle-minor order. This is how every voter (LLM, embedding, cascade) treats style
    principles, so their votes are exact whoever else votes.
    """
    style = [p for p in principles if is_style(p)]
    if not style:
        return voter(list(principles))
    others = [p for p in principles if not is_style(p)]
    got = {(v.comparison_id, v.principle_id): v for v in vote_by_style(comparisons, style)}
    if others:
        got.update({(v.comparison_id, v.principle_id): v for v in voter(others)})
    return [got[(c.id, p.id)] for c in comparisons for p in principles if (c.id, p.id) in got]
