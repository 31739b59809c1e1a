"""Subgroup statistics: how strongly each principle holds in each group of pairs, and whether that differs.

A plain stage over the vote matrix (no model calls, no I/O). Groups come from a metadata column
(`group_labels`), optionally cut into quantile bins (a time or numeric column, for drift). For every
principle and group: votes for / against, strength ((for - against) / votes, Feedback Forensics'
definition, as `icai.stats.principle_stats`) with a bootstrap interval, agreement with a Wilson interval.
For every principle and group with enough decisive votes: the difference between the group's strength
and the strength over all other pairs, with a bootstrap interval and a two-sided permutation p-value
(the group labels shuffled over the pairs the principle was voted on), Benjamini-Hochberg corrected
across all principle x group tests. With two groups there is one test per principle (A vs B).
A group with fewer than `min_decisive` decisive votes for a principle is shown and not tested against the others;
when its counterpart (the other group of two, or the rest) has that few and it has enough, the principle is decisive
in it only: that is a difference too, reported "only in" the group with the group's own interval and a two-sided
binomial test of its for vs against votes, corrected with the other tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from icai.errors import DataError
from icai.stats import benjamini_hochberg, binomial_p, constant_mean_interval, direction, wilson_ci
from icai.types import Comparison, Principle, Vote

MIN_DECISIVE = 10
"""Decisive (for or against) votes a group needs, for a principle, before its difference is tested."""

MISSING = "(missing)"


@dataclass(frozen=True)
class Grouping:
    """Which group each comparison belongs to; `groups` in display order (bins in time order)."""

    column: str
    labels: Mapping[str, str]
    """comparison id -> group name (comparisons without a value are absent)."""
    groups: tuple[str, ...]
    n_missing: int = 0
    bins: int | None = None
    ordered: bool = False
    """True for quantile bins: the groups follow the column's order (drift over time)."""

    def sizes(self) -> dict[str, int]:
        counts = dict.fromkeys(self.groups, 0)
        for g in self.labels.values():
            counts[g] += 1
        return counts


def _metadata_value(c: Comparison, column: str) -> Any:
    value = c.metadata.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
        return None
    return value


def group_labels(comparisons: Sequence[Comparison], column: str, *, bins: int | None = None) -> Grouping:
    """Group the comparisons by the metadata `column`; with `bins`, by quantile bins of its values (numbers or dates).

    Comparisons without a value are left out and counted (`n_missing`).
    """
    if not comparisons:
        raise DataError("no comparisons to group")
    if not any(column in c.metadata for c in comparisons):
        found = sorted({k for c in comparisons for k in c.metadata})
        raise DataError(
            f"--by {column}: no such column in the data (metadata columns: {', '.join(found) or 'none'})"
        )
    present = [(c.id, v) for c in comparisons if (v := _metadata_value(c, column)) is not None]
    n_missing = len(comparisons) - len(present)
    if not present:
        raise DataError(f"--by {column}: the column is empty in every row")
    if bins is None:
        labels = {cid: str(v) for cid, v in present}
        groups = tuple(sorted(set(labels.values()), key=_natural_key))
        return Grouping(column, labels, groups, n_missing=n_missing)
    if bins < 2:
        raise DataError(f"--bins must be at least 2, not {bins}")
    return _binned(column, present, bins, n_missing)


def _natural_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _binned(column: str, present: Sequence[tuple[str, Any]], bins: int, n_missing: int) -> Grouping:
    import pandas as pd

    raw = pd.Series([v for _, v in present], dtype=object)
    numbers = pd.to_numeric(raw, errors="coerce")
    is_time = bool(numbers.isna().any())
    if is_time:
        times = pd.to_datetime(raw.astype(str), errors="coerce", utc=True, format="mixed")
        bad = raw[times.isna()]
        if len(bad):
            raise DataError(
                f"--bins: column {column} holds {bad.iloc[0]!r}, which is neither a number nor a date"
            )
        values = ((times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
    else:
        values = numbers.to_numpy(dtype=float)
    cut = pd.qcut(values, q=bins, duplicates="drop")
    categories = list(cut.categories)
    if len(categories) < 2:
        raise DataError(f"--bins: column {column} has a single value, so it cannot be cut into bins")

    def show(x: float) -> str:
        if not is_time:
            return f"{x:g}"
        stamp = pd.Timestamp(x, unit="s", tz="UTC")
        return stamp.strftime("%Y-%m-%d") if all_dates else stamp.strftime("%Y-%m-%d %H:%M")

    all_dates = is_time and bool((times.dt.normalize() == times).all()) if is_time else False
    # bin edges shown from the data inside each bin (qcut's edges lie slightly outside)
    names: list[str] = []
    for k, _ in enumerate(categories):
        inside = values[np.asarray(cut.codes) == k]
        names.append(f"{k + 1}: {show(float(inside.min()))} to {show(float(inside.max()))}")
    labels = {cid: names[code] for (cid, _), code in zip(present, np.asarray(cut.codes), strict=True)}
    return Grouping(column, labels, tuple(names), n_missing=n_missing, bins=bins, ordered=True)


@dataclass(frozen=True)
class GroupStats:
    """One principle in one group."""

    group: str
    n_votes: int
    n_for: int
    n_against: int
    strength: float | None
    strength_ci: tuple[float, float] | None
    agreement: float | None
    agreement_ci: tuple[float, float] | None

    @property
    def n_decisive(self) -> int:
        return self.n_for + self.n_against


@dataclass(frozen=True)
class GroupTest:
    """Whether a principle's strength in `group` differs from its strength in `other` ("rest": all other pairs)."""

    principle_id: str
    group: str
    other: str
    difference: float | None
    """strength in group - strength in other."""
    difference_ci: tuple[float, float] | None
    p_value: float | None
    q_value: float | None = None
    significant: bool = False
    tested: bool = True
    reason: str = ""
    """Why it was not tested (too few decisive votes)."""
    only_in: str = ""
    """Set when the principle is decisive in `only_in` alone (the other side has fewer than min_decisive decisive
    votes): `p_value` is then the binomial test of for vs against there, and the difference is not defined."""


@dataclass(frozen=True)
class PrincipleGroups:
    principle_id: str
    text: str
    groups: tuple[GroupStats, ...]
    tests: tuple[GroupTest, ...]
    in_constitution: bool = True


@dataclass(frozen=True)
class GroupAnalysis:
    """Per-group statistics and difference tests for a set of principles."""

    column: str
    groups: tuple[str, ...]
    group_sizes: Mapping[str, int]
    principles: tuple[PrincipleGroups, ...]
    n_missing: int = 0
    bins: int | None = None
    ordered: bool = False
    alpha: float = 0.05
    n_permutations: int = 2000
    min_decisive: int = MIN_DECISIVE
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Set by callers: the target, the pairs analysed, per-group constitutions."""

    @property
    def tests(self) -> list[GroupTest]:
        return [t for p in self.principles for t in p.tests]

    def stats_of(self, principle_id: str, group: str) -> GroupStats | None:
        return next(
            (g for p in self.principles if p.principle_id == principle_id for g in p.groups if g.group == group), None
        )

    def top_differences(self, k: int = 5) -> list[GroupTest]:
        """The significant tests, smallest q first, then largest |difference|."""
        found = [t for t in self.tests if t.significant]
        found.sort(key=lambda t: (t.q_value if t.q_value is not None else 1.0, -abs(t.difference or 0.0)))
        return found[:k]

    def text_of(self, principle_id: str) -> str:
        return next((p.text for p in self.principles if p.principle_id == principle_id), principle_id)

    def n_untested(self) -> int:
        return sum(not t.tested for t in self.tests)

    def summary(self) -> list[str]:
        """Plain sentences: the principles whose effect differs most, with the groups named; what was not tested."""
        lines = []
        top = self.top_differences()
        if not self.principles:
            lines.append(f"No principle to split by {self.column}: the constitution is empty.")
        elif not top:
            n = sum(t.tested for t in self.tests)
            lines.append(
                f"No principle's strength differs significantly between groups of {self.column} "
                f"({n} tests, BH q < {self.alpha})."
            )
        for t in top:
            if t.only_in:
                lines.append(self._only_line(t))
                continue
            stats = {g.group: g for p in self.principles if p.principle_id == t.principle_id for g in p.groups}
            here = stats.get(t.group)
            there = stats.get(t.other)
            other = f"{t.other} {signed(there.strength)}" if there is not None else f"the other groups {signed(_rest(t, here))}"
            lines.append(
                f"{self.text_of(t.principle_id)!r}: strength {signed(here.strength if here else None)} in {t.group} vs "
                f"{other} (difference {t.difference:+.2f}, q {t.q_value:.3g})"
            )
        untested = self.n_untested()
        if untested:
            lines.append(
                f"{untested} principle x group comparison(s) not tested: fewer than {self.min_decisive} decisive votes."
            )
        if self.n_missing:
            lines.append(f"{self.n_missing} pair(s) without a value of {self.column} are left out.")
        return lines

    def _only_line(self, t: GroupTest) -> str:
        here = self.stats_of(t.principle_id, t.only_in)
        other = t.other if t.only_in == t.group else t.group
        there = self.stats_of(t.principle_id, other)
        n_there = there.n_decisive if there is not None else "fewer than " + str(self.min_decisive)
        return (
            f"{self.text_of(t.principle_id)!r}: decisive only in {t.only_in}, strength {signed(here.strength if here else None)}"
            f"{_ci_text(here.strength_ci if here else None)} on {here.n_decisive if here else 0} decisive votes "
            f"(binomial q {t.q_value:.3g}); {n_there} decisive in {other}"
        )

    def table(self, width: int | None = None) -> str:
        """A table that fits the terminal (`icai.tables`): one row per principle, one column per group (strength [CI],
        decisive votes), and which groups differ (q), or where alone it is decisive."""
        from icai.tables import render_table

        head = ["principle", *self.groups, "differs (q)"]
        rows = []
        for p in self.principles:
            by = {g.group: g for g in p.groups}
            cells = [p.text]
            for name in self.groups:
                g = by.get(name)
                if g is None or g.strength is None:
                    cells.append("-")
                    continue
                ci = f" [{g.strength_ci[0]:+.2f}, {g.strength_ci[1]:+.2f}]" if g.strength_ci else ""
                small = "*" if g.n_decisive < self.min_decisive else ""
                cells.append(f"{g.strength:+.2f}{ci} n={g.n_decisive}{small}")
            sig = [t for t in p.tests if t.significant and not t.only_in]
            only = list(dict.fromkeys((t.only_in, t.q_value) for t in p.tests if t.only_in))
            untested = not any(t.tested for t in p.tests)
            said = [f"{t.group} ({t.q_value:.3g})" for t in sig]
            said += [f"only in {g} (q {q:.3g}{' *' if q is not None and q < self.alpha else ''})" for g, q in only]
            cells.append(", ".join(said) or ("not tested" if untested else "no"))
            rows.append(cells)
        return render_table(
            head, rows, numeric=range(1, len(self.groups) + 1), wide=[0], width=width,
            title=f"Strength by {self.column} (95% bootstrap CI; n = decisive votes; * fewer than {self.min_decisive})",
            notes=[f"only in G: decisive in G alone (the other side has fewer than {self.min_decisive} decisive "
                   "votes); q of G's binomial test, * below alpha"] if any(t.only_in for t in self.tests) else [],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "icai.groups/1",
            "column": self.column,
            "groups": list(self.groups),
            "group_sizes": dict(self.group_sizes),
            "n_missing": self.n_missing,
            "bins": self.bins,
            "ordered": self.ordered,
            "alpha": self.alpha,
            "n_permutations": self.n_permutations,
            "min_decisive": self.min_decisive,
            "seed": self.seed,
            "principles": [asdict(p) for p in self.principles],
            "top_differences": [asdict(t) for t in self.top_differences()],
            "summary": self.summary(),
            **dict(self.extra),
        }


def _ci_text(ci: tuple[float, float] | None) -> str:
    return f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""


def _rest(t: GroupTest, here: GroupStats | None) -> float | None:
    if here is None or here.strength is None or t.difference is None:
        return None
    return here.strength - t.difference


def signed(x: float | None) -> str:
    """A strength or difference for a table: "+0.12", or "n/a"."""
    return "n/a" if x is None else f"{x:+.2f}"


def vote_values(
    principle_ids: Sequence[str], comparisons: Sequence[Comparison], votes: Sequence[Vote]
) -> tuple[np.ndarray, np.ndarray]:
    """(values, voted): +1 the principle picked the preferred response, -1 the other, 0 neither; rows = comparisons.

    The last vote on a (comparison, principle) counts, as in `icai.stats.principle_stats`; an invalid vote is
    a vote with value 0 (it counts against relevance, as there).
    """
    row = {c.id: i for i, c in enumerate(comparisons)}
    col = {pid: j for j, pid in enumerate(principle_ids)}
    values = np.zeros((len(comparisons), len(principle_ids)), dtype=np.int8)
    voted = np.zeros(values.shape, dtype=bool)
    for v in votes:
        i, j = row.get(v.comparison_id), col.get(v.principle_id)
        if i is None or j is None:
            continue
        if v.value == "for":
            values[i, j] = 1
        elif v.value == "against":
            values[i, j] = -1
        elif v.value in ("abstain", "invalid"):
            values[i, j] = 0
        else:  # pragma: no cover - VoteValue is closed
            values[i, j] = direction(v)
        voted[i, j] = True
    return values, voted


def _boot_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of values in {-1, 0, 1}: multinomial counts, exact for this three-valued sample."""
    n = x.size
    p = np.array([(x == -1).sum(), (x == 0).sum(), (x == 1).sum()], dtype=float) / n
    counts = rng.multinomial(n, p, size=n_boot)
    return (counts[:, 2] - counts[:, 0]) / n


def strength_interval(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the strength (mean of votes in {-1, 0, 1}).

    When every vote is the same the bootstrap collapses to a point; the interval then comes from the
    Wilson interval of the share of votes that are not that value (0 of n), so n = 3 and n = 300 differ.
    """
    values = set(np.unique(x).tolist())
    if len(values) > 1:
        return _ci(_boot_means(x, n_boot, rng))
    (v,) = values
    return constant_mean_interval(float(v), int(x.size))


def _ci(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return (float(lo), float(hi))


def difference_test(
    values: np.ndarray,
    labels: np.ndarray,
    group: int,
    other: int | None,
    *,
    n_permutations: int,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, tuple[float, float], float]:
    """(difference, bootstrap CI, permutation p) of mean(values | label == group) - mean(values | label == other).

    values are votes in {-1, 0, 1}. other None: all labels but `group`. Only pairs in the two sides take part; the
    permutation shuffles their labels (`n_permutations` random relabellings; p counts the observed one too).
    """
    mask = np.ones(labels.shape, dtype=bool) if other is None else (labels == group) | (labels == other)
    x = values[mask].astype(float)
    in_group = labels[mask] == group
    a, b = x[in_group], x[~in_group]
    observed = float(a.mean() - b.mean())
    ci = _ci(_boot_means(a, n_boot, rng) - _boot_means(b, n_boot, rng))
    n, n_a = x.size, a.size
    total = x.sum()
    # a random relabelling puts a multivariate-hypergeometric number of the +1, 0 and -1 votes into the group:
    # drawing those counts is the permutation distribution itself, without shuffling arrays
    colors = np.array([(x == 1).sum(), (x == 0).sum(), (x == -1).sum()], dtype=np.int64)
    draws = rng.multivariate_hypergeometric(colors, n_a, size=n_permutations)
    sums_a = (draws[:, 0] - draws[:, 2]).astype(float)
    diffs = sums_a / n_a - (total - sums_a) / (n - n_a)
    p = float((1 + np.sum(np.abs(diffs) >= abs(observed) - 1e-12)) / (n_permutations + 1))
    return observed, ci, p


def analyse_groups(
    principles: Sequence[Principle],
    comparisons: Sequence[Comparison],
    votes: Sequence[Vote],
    grouping: Grouping,
    *,
    alpha: float = 0.05,
    n_permutations: int = 2000,
    n_boot: int = 2000,
    min_decisive: int = MIN_DECISIVE,
    seed: int = 0,
    constitution_ids: Sequence[str] | None = None,
) -> GroupAnalysis:
    """Per-group statistics of every principle and a test of each group's difference; see the module docstring.

    Comparisons without a group are left out. `constitution_ids` marks which principles are in the constitution
    (default: all).
    """
    if n_permutations < 1 or n_boot < 1:
        raise ValueError("n_permutations and n_boot must be positive")
    rng = np.random.default_rng(seed)
    comps = [c for c in {c.id: c for c in comparisons}.values() if c.id in grouping.labels]
    names = list(grouping.groups)
    index = {g: k for k, g in enumerate(names)}
    labels = np.array([index[grouping.labels[c.id]] for c in comps], dtype=int)
    ids = [p.id for p in principles]
    values, voted = vote_values(ids, comps, votes)
    two = len(names) == 2
    stats_rows: list[tuple[Principle, list[GroupStats]]] = []
    pending: list[tuple[int, GroupTest]] = []  # (principle index, test without q)
    for j, p in enumerate(principles):
        col, mask = values[:, j], voted[:, j]
        per_group: list[GroupStats] = []
        for k, name in enumerate(names):
            x = col[mask & (labels == k)]
            n_for, n_against = int((x == 1).sum()), int((x == -1).sum())
            decided = n_for + n_against
            strength = float(x.mean()) if x.size else None
            s_ci = strength_interval(x, n_boot, rng) if x.size else None
            per_group.append(
                GroupStats(
                    group=name,
                    n_votes=int(x.size),
                    n_for=n_for,
                    n_against=n_against,
                    strength=strength,
                    strength_ci=s_ci,
                    agreement=n_for / decided if decided else None,
                    agreement_ci=wilson_ci(n_for, decided) if decided else None,
                )
            )
        stats_rows.append((p, per_group))
        sub_values, sub_labels = col[mask], labels[mask]
        targets = [(0, 1)] if two else [(k, None) for k in range(len(names))]
        for k, other in targets:
            decisive_here = per_group[k].n_decisive
            decisive_there = (
                per_group[other].n_decisive if other is not None else sum(g.n_decisive for g in per_group) - decisive_here
            )
            other_name = names[other] if other is not None else "rest"
            only = (
                names[k] if decisive_here >= min_decisive > decisive_there
                else other_name if other is not None and decisive_there >= min_decisive > decisive_here
                else ""
            )
            if only:
                side = per_group[k] if only == names[k] else per_group[index[only]]
                pending.append((j, GroupTest(
                    p.id, names[k], other_name, None, None, binomial_p(side.n_for, side.n_decisive), only_in=only,
                )))
                continue
            if min(decisive_here, decisive_there) < min_decisive:
                small = names[k] if decisive_here < min_decisive else other_name
                pending.append(
                    (
                        j,
                        GroupTest(
                            p.id, names[k], other_name, None, None, None, tested=False,
                            reason=f"{small}: fewer than {min_decisive} decisive votes",
                        ),
                    )
                )
                continue
            diff, d_ci, p_value = difference_test(
                sub_values, sub_labels, k, other, n_permutations=n_permutations, n_boot=n_boot, rng=rng
            )
            pending.append((j, GroupTest(p.id, names[k], other_name, diff, d_ci, p_value)))
    tested = [t for _, t in pending if t.tested]
    q_values = iter(benjamini_hochberg([t.p_value for t in tested if t.p_value is not None]))
    tests_by_principle: dict[int, list[GroupTest]] = {}
    for j, t in pending:
        if t.tested:
            q = next(q_values)
            t = replace(t, q_value=q, significant=q < alpha)
        tests_by_principle.setdefault(j, []).append(t)
    in_constitution = set(ids if constitution_ids is None else constitution_ids)
    return GroupAnalysis(
        column=grouping.column,
        groups=tuple(names),
        group_sizes=grouping.sizes(),
        principles=tuple(
            PrincipleGroups(p.id, p.text, tuple(gs), tuple(tests_by_principle.get(j, [])), p.id in in_constitution)
            for j, (p, gs) in enumerate(stats_rows)
        ),
        n_missing=grouping.n_missing,
        bins=grouping.bins,
        ordered=grouping.ordered,
        alpha=alpha,
        n_permutations=n_permutations,
        min_decisive=min_decisive,
        seed=seed,
    )
