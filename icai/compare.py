"""Compare two runs: which principles they share, how strongly each holds on each side's pairs, and what differs.

Stage functions over records (the model calls are made by `icai.pipeline.compare_runs`):

- `match_principles`: pairs the two constitutions' principles one to one by embedding similarity of their texts,
  confirmed by their votes where both were voted on the same pairs (two principles with similar words that pick
  opposite responses, "mentions 'cat'" and "mentions 'dog'", are not a match).
- `plan_cross_votes`: the (principle, pair) votes still needed to test each side's constitution on the other
  side's pairs; votes that already exist (the runs' own, or a previous compare's) are reused.
- `compare_sides`: one row per principle (a matched pair is one row, measured with side A's wording), its
  strength on each side with a bootstrap CI, the difference with a bootstrap CI and a permutation p-value,
  Benjamini-Hochberg corrected; for a principle of one side only, whether the other side's pairs support it.
  A principle decisive on one side's pairs only (the other side has fewer than MIN_DECISIVE decisive votes on it) is
  a difference too: reported "only in" that side, with that side's interval and a binomial test of its for vs
  against votes, corrected with the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from icai.embed import Embedder
from icai.groups import MIN_DECISIVE, difference_test, signed, strength_interval, vote_values
from icai.stats import benjamini_hochberg, binomial_p
from icai.store import RunStore
from icai.types import Comparison, Principle, Vote

SCHEMA = "icai.compare/1"
MIN_SIMILARITY = 0.8
"""Cosine similarity of two principle texts at or above which they may be the same principle."""
MIN_VOTE_AGREEMENT = 0.6
"""Of the pairs either of two similar principles decides, the share on which both pick the same response for a match
(two principles that apply to different pairs, or pick opposite responses, are different principles)."""
MIN_JOINT = 5
"""Pairs decided by either principle needed before votes confirm or reject a match (fewer: similarity alone decides)."""


@dataclass(frozen=True)
class Side:
    """One run as compare sees it: all its pairs, its constitution's principles, every vote it holds."""

    name: str
    comparisons: tuple[Comparison, ...]
    principles: tuple[Principle, ...]
    votes: tuple[Vote, ...]
    model: str = ""
    embedder: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""


def load_side(run_dir: str | Path, *, name: str | None = None) -> Side:
    """A finished run directory as a Side: its pairs (train and test), constitution, and votes (train and held-out)."""
    store = RunStore.existing(run_dir)
    constitution = store.read_constitution()
    train, test = store.read_comparisons()
    votes = list(store.load_votes()) if store.has("votes.csv") else []
    if store.has("test_votes.csv"):
        votes += store.load_votes("test_votes.csv")
    meta = constitution.metadata
    return Side(
        name=name or store.path.name,
        comparisons=(*train, *test),
        principles=constitution.principles,
        votes=tuple(votes),
        model=str(meta.get("model", "")),
        embedder=str(meta.get("embedder", "")),
        config=dict(meta.get("config") or {}),
        path=str(store.path),
    )


@dataclass(frozen=True)
class Match:
    a_id: str
    b_id: str
    similarity: float
    vote_agreement: float | None = None
    n_joint: int = 0


def _agreement(x: np.ndarray, y: np.ndarray) -> tuple[float | None, int]:
    """(share of the pairs either principle decides on which both pick the same response, those pairs)."""
    either = (x != 0) | (y != 0)
    n = int(either.sum())
    same = int(((x == y) & (x != 0)).sum())
    return (same / n if n else None, n)


def match_principles(
    a: Sequence[Principle],
    b: Sequence[Principle],
    embedder: Embedder,
    *,
    voted: Sequence[tuple[Sequence[Comparison], Sequence[Vote]]] = (),
    min_similarity: float = MIN_SIMILARITY,
    min_vote_agreement: float = MIN_VOTE_AGREEMENT,
) -> list[Match]:
    """One-to-one matches, most similar first: the same text, or similarity >= min_similarity and, where both were
    voted on the same pairs (`voted`: each side's pairs with the votes on them), the same pick on min_vote_agreement
    of the pairs either decides, on every side where either decides at least MIN_JOINT pairs."""
    if not a or not b:
        return []
    emb_a = embedder.encode([p.text for p in a])
    emb_b = embedder.encode([p.text for p in b])
    sim = np.asarray(emb_a @ emb_b.T, dtype=float)
    ids = list(dict.fromkeys([*(p.id for p in a), *(p.id for p in b)]))
    # pairs are stacked side by side; ids may repeat across sides, so each side is read with its own votes
    blocks = [vote_values(ids, list({c.id: c for c in comps}.values()), vs)[0] for comps, vs in voted]
    col = {pid: j for j, pid in enumerate(ids)}
    order = sorted(((i, j) for i in range(len(a)) for j in range(len(b))), key=lambda ij: -sim[ij])
    used_a: set[int] = set()
    used_b: set[int] = set()
    matches: list[Match] = []
    for i, j in order:
        if i in used_a or j in used_b:
            continue
        same = a[i].id == b[j].id
        s = 1.0 if same else float(sim[i, j])
        if s < min_similarity:
            break
        # the same principle picks the same responses on any data: it must agree on each side where it decides enough
        per_side = [_agreement(v[:, col[a[i].id]], v[:, col[b[j].id]]) for v in blocks]
        judged = [(ag, n) for ag, n in per_side if ag is not None and n >= MIN_JOINT]
        agreement = min((ag for ag, _ in judged), default=None)
        n_joint = sum(n for _, n in per_side)
        if not same and agreement is not None and agreement < min_vote_agreement:
            continue
        used_a.add(i)
        used_b.add(j)
        matches.append(Match(a[i].id, b[j].id, s, agreement, n_joint))
    return matches


@dataclass(frozen=True)
class CrossPlan:
    """The votes compare still needs: each side's principles on the other side's pairs."""

    a_on_b: tuple[tuple[Principle, ...], tuple[Comparison, ...]]
    """(A's principles lacking a vote on some of B's pairs, those pairs)."""
    b_on_a: tuple[tuple[Principle, ...], tuple[Comparison, ...]]
    n_needed: int
    """(principle, pair) votes that exist nowhere yet."""
    n_reused: int
    """(principle, pair) votes of the cross test found in the runs or a previous compare."""


def _missing(
    principles: Sequence[Principle], pairs: Sequence[Comparison], known: set[tuple[str, str]]
) -> tuple[tuple[tuple[Principle, ...], tuple[Comparison, ...]], int, int]:
    """((principles lacking a vote on some pair, the pairs lacking one), votes needed, votes found)."""
    need_p: set[str] = set()
    need_c: set[str] = set()
    n_need = 0
    for p in principles:
        for c in pairs:
            if (c.id, p.id) not in known:
                n_need += 1
                need_p.add(p.id)
                need_c.add(c.id)
    found = len(principles) * len(pairs) - n_need
    return (tuple(p for p in principles if p.id in need_p), tuple(c for c in pairs if c.id in need_c)), n_need, found


def plan_cross_votes(a: Side, b: Side, *, known_a: Sequence[Vote] = (), known_b: Sequence[Vote] = ()) -> CrossPlan:
    """What `compare_runs` must vote: votes already in the runs or in `known_a` / `known_b` (earlier cross votes on
    A's / B's pairs) are reused."""
    seen_a = {(v.comparison_id, v.principle_id) for v in (*a.votes, *known_a)}
    seen_b = {(v.comparison_id, v.principle_id) for v in (*b.votes, *known_b)}
    a_on_b, need_ab, reuse_ab = _missing(a.principles, b.comparisons, seen_b)
    b_on_a, need_ba, reuse_ba = _missing(b.principles, a.comparisons, seen_a)
    return CrossPlan(a_on_b, b_on_a, need_ab + need_ba, reuse_ab + reuse_ba)


@dataclass(frozen=True)
class SideStats:
    n_votes: int
    n_for: int
    n_against: int
    strength: float | None
    strength_ci: tuple[float, float] | None
    p_value: float
    """Two-sided binomial test of for vs against on this side (does this side's data support the principle?)."""


@dataclass(frozen=True)
class Row:
    """One principle measured on both sides (a matched pair with side A's wording)."""

    principle_id: str
    text: str
    found_in: str
    """"both", or the name of the side whose constitution holds it."""
    matched_text: str | None
    similarity: float | None
    a: SideStats
    b: SideStats
    difference: float | None
    """strength on A - strength on B."""
    difference_ci: tuple[float, float] | None
    p_value: float | None
    q_value: float | None = None
    significant: bool = False
    tested: bool = True
    reason: str = ""
    other_side: str = ""
    """For a principle of one side only: "supported", "contradicted" or "not supported" by the other side's pairs."""
    only_in: str = ""
    """The side on whose pairs alone the principle is decisive (the other has fewer than min_decisive decisive
    votes): `p_value` is then that side's binomial test of for vs against; the difference is not defined."""


@dataclass(frozen=True)
class CompareResult:
    name_a: str
    name_b: str
    rows: tuple[Row, ...]
    matches: tuple[Match, ...]
    n_pairs_a: int
    n_pairs_b: int
    alpha: float = 0.05
    n_permutations: int = 2000
    min_decisive: int = MIN_DECISIVE
    extra: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> list[str]:
        out = [
            f"{len(self.matches)} principle(s) in both constitutions, "
            f"{sum(r.found_in == self.name_a for r in self.rows)} in {self.name_a} only, "
            f"{sum(r.found_in == self.name_b for r in self.rows)} in {self.name_b} only."
        ]
        sig = sorted(
            (r for r in self.rows if r.significant and not r.only_in), key=lambda r: (r.q_value or 1.0, -abs(r.difference or 0))
        )
        if not sig:
            out.append(f"No principle's strength differs significantly between {self.name_a} and {self.name_b} (BH q < {self.alpha}).")
        for r in sig:
            out.append(
                f"{r.text!r}: strength {signed(r.a.strength)} in {self.name_a} vs {signed(r.b.strength)} in {self.name_b} "
                f"(difference {r.difference:+.2f}, q {r.q_value:.3g})"
            )
        for r in self.rows:
            if r.only_in:
                s, other = (r.a, self.name_b) if r.only_in == self.name_a else (r.b, self.name_a)
                o = r.b if r.only_in == self.name_a else r.a
                ci = f" [{s.strength_ci[0]:+.2f}, {s.strength_ci[1]:+.2f}]" if s.strength_ci else ""
                out.append(
                    f"{r.text!r} is decisive only in {r.only_in}: strength {signed(s.strength)}{ci} on "
                    f"{s.n_for + s.n_against} decisive votes (binomial q {r.q_value:.3g}); "
                    f"{o.n_for + o.n_against} decisive in {other}."
                )
        for r in self.rows:
            if r.found_in != "both":
                other = self.name_b if r.found_in == self.name_a else self.name_a
                out.append(f"{r.text!r} (from {r.found_in} only) is {r.other_side} by {other}'s pairs.")
        n_untested = sum(not r.tested for r in self.rows)
        if n_untested:
            out.append(f"{n_untested} principle(s) not tested: fewer than {self.min_decisive} decisive votes on each side.")
        return out

    def table(self, width: int | None = None) -> str:
        """A table that fits the terminal (`icai.tables`); a matched row shows both texts."""
        from icai.tables import render_table

        head = ["principle", "in", f"strength {self.name_a}", f"strength {self.name_b}", "difference [95% CI]", "q"]
        rows = []
        for r in self.rows:
            if r.only_in:
                diff = f"only in {r.only_in}"
            elif r.difference is not None and r.difference_ci:
                diff = f"{r.difference:+.2f} [{r.difference_ci[0]:+.2f}, {r.difference_ci[1]:+.2f}]"
            else:
                diff = "not tested"
            q = "" if r.q_value is None else f"{r.q_value:.3g}" + (" *" if r.significant else "")
            text = r.text
            if r.matched_text:
                text = f"{self.name_a}: {r.text}\n{self.name_b}: {r.matched_text} (similarity {r.similarity:.2f})"
            rows.append([text, r.found_in, _side(r.a), _side(r.b), diff, q])
        notes = []
        if any(r.only_in for r in self.rows):
            notes.append(
                f"only in X: decisive on X's pairs alone (fewer than {self.min_decisive} decisive votes on the other "
                "side); its q is X's binomial test of for vs against"
            )
        return render_table(
            head, rows, numeric=[2, 3, 4, 5], wide=[0], width=width, notes=notes,
            title=f"{self.name_a} ({self.n_pairs_a} pairs) vs {self.name_b} ({self.n_pairs_b} pairs); * significant",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "a": self.name_a,
            "b": self.name_b,
            "n_pairs": {self.name_a: self.n_pairs_a, self.name_b: self.n_pairs_b},
            "alpha": self.alpha,
            "n_permutations": self.n_permutations,
            "min_decisive": self.min_decisive,
            "rows": [asdict(r) for r in self.rows],
            "matches": [asdict(m) for m in self.matches],
            "summary": self.summary(),
            **dict(self.extra),
        }


def _side(s: SideStats) -> str:
    if s.strength is None:
        return "-"
    ci = f" [{s.strength_ci[0]:+.2f}, {s.strength_ci[1]:+.2f}]" if s.strength_ci else ""
    return f"{s.strength:+.2f}{ci} n={s.n_for + s.n_against}"


def _side_stats(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> SideStats:
    n_for, n_against = int((x == 1).sum()), int((x == -1).sum())
    return SideStats(
        n_votes=int(x.size),
        n_for=n_for,
        n_against=n_against,
        strength=float(x.mean()) if x.size else None,
        strength_ci=strength_interval(x, n_boot, rng) if x.size else None,
        p_value=binomial_p(n_for, n_for + n_against),
    )


def compare_sides(
    a: Side,
    b: Side,
    matches: Sequence[Match],
    *,
    cross_a: Sequence[Vote] = (),
    cross_b: Sequence[Vote] = (),
    alpha: float = 0.05,
    n_permutations: int = 2000,
    n_boot: int = 2000,
    min_decisive: int = MIN_DECISIVE,
    seed: int = 0,
) -> CompareResult:
    """Strength of each principle on both sides and the test of the difference (see the module docstring).

    cross_a / cross_b: the votes of the other side's principles on A's / B's pairs (`plan_cross_votes`).
    """
    rng = np.random.default_rng(seed)
    b_by_id = {p.id: p for p in b.principles}
    matched_b = {m.b_id: m for m in matches}
    matched_a = {m.a_id: m for m in matches}
    units: list[tuple[Principle, str, Match | None]] = [
        (p, "both" if p.id in matched_a else a.name, matched_a.get(p.id)) for p in a.principles
    ]
    units += [(p, b.name, None) for p in b.principles if p.id not in matched_b]
    ids = [p.id for p, _, _ in units]
    va, da = vote_values(ids, list({c.id: c for c in a.comparisons}.values()), [*a.votes, *cross_a])
    vb, db = vote_values(ids, list({c.id: c for c in b.comparisons}.values()), [*b.votes, *cross_b])
    pending: list[Row] = []
    for j, (p, found, m) in enumerate(units):
        xa, xb = va[da[:, j], j], vb[db[:, j], j]
        sa, sb = _side_stats(xa, n_boot, rng), _side_stats(xb, n_boot, rng)
        other = ""
        if found != "both":
            o = sb if found == a.name else sa
            if o.p_value < alpha and (o.strength or 0) > 0:
                other = "supported"
            elif o.p_value < alpha and (o.strength or 0) < 0:
                other = "contradicted"
            else:
                other = "not supported"
        common: dict[str, Any] = dict(
            principle_id=p.id,
            text=p.text,
            found_in=found,
            matched_text=b_by_id[m.b_id].text if m is not None and m.b_id != p.id else None,
            similarity=m.similarity if m is not None else None,
            a=sa,
            b=sb,
            other_side=other,
        )
        small = [n for n, s in ((a.name, sa), (b.name, sb)) if s.n_for + s.n_against < min_decisive]
        if len(small) == 1:
            only, s = (b.name, sb) if small[0] == a.name else (a.name, sa)
            pending.append(
                Row(**common, difference=None, difference_ci=None, p_value=binomial_p(s.n_for, s.n_for + s.n_against),
                    only_in=only)
            )
            continue
        if small:
            pending.append(
                Row(**common, difference=None, difference_ci=None, p_value=None, tested=False,
                    reason=f"{small[0]}: fewer than {min_decisive} decisive votes")
            )
            continue
        values = np.concatenate([xa, xb])
        labels = np.concatenate([np.zeros(xa.size, dtype=int), np.ones(xb.size, dtype=int)])
        diff, ci, p_value = difference_test(values, labels, 0, 1, n_permutations=n_permutations, n_boot=n_boot, rng=rng)
        pending.append(Row(**common, difference=diff, difference_ci=ci, p_value=p_value))
    q = iter(benjamini_hochberg([r.p_value for r in pending if r.p_value is not None]))
    rows = []
    for r in pending:
        if r.tested:
            qv = next(q)
            r = replace(r, q_value=qv, significant=qv < alpha)
        rows.append(r)
    return CompareResult(
        a.name, b.name, tuple(rows), tuple(matches), len(a.comparisons), len(b.comparisons),
        alpha=alpha, n_permutations=n_permutations, min_decisive=min_decisive,
    )
