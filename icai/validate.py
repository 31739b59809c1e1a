"""Every problem in a preference dataset, found in one pass: what `icai validate` prints.

An *error* is something `icai run` refuses (a row it cannot load, no usable pair at all); a *warning*
is something it accepts but that can mislead a run (duplicates, identical responses with a label,
extreme length ratios, labels skewed to one position, broken encodings); *info* lines say what was
read and dropped. Pure functions over comparisons; the CLI prints the table.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from icai.io import FormatName, LoadReport, RowError, Source, scan_comparisons
from icai.split import duplicate_groups, stratified_test_indices, train_test_split
from icai.turns import render_turns
from icai.types import Comparison

Severity = Literal["error", "warning", "info"]

MAX_EXAMPLES = 3
"""Examples (rows or ids) shown per finding."""

_MOJIBAKE = re.compile(r"Ã[\u0080-\u00bf]|â€[\u0080-\u00bf\u2013-\u203a\u0153\u0161\u017e\u02dc\u2122]|Â[\u00a0-\u00bf]")
"""UTF-8 read as Latin-1 or cp1252: "Ã©" for "é", "â€™" for "’", "Â " for a no-break space."""


@dataclass(frozen=True)
class Finding:
    """One kind of problem: how many rows have it, a one-sentence explanation, and a few examples."""

    severity: Severity
    check: str
    count: int
    detail: str
    examples: tuple[str, ...] = ()
    more: bool = False
    """Whether there are more examples than `examples` shows."""


@dataclass(frozen=True)
class Validation:
    """What a validation read and found."""

    source: str
    report: LoadReport
    n_prefer_a: int
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "load": asdict(self.report),
            "n_prefer_a": self.n_prefer_a,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
        }

    def summary(self) -> str:
        r = self.report
        return (
            f"{self.source}: format {r.format}" + (f" ({r.container})" if r.container else "") + f", {r.n_rows} rows, "
            f"{r.n_loaded} usable comparisons ({self.n_prefer_a} prefer a, {r.n_loaded - self.n_prefer_a} prefer b); "
            f"dropped {r.n_dropped_ties} ties and {r.n_dropped_missing} without a preference"
            + (f"; {r.n_invalid} rows have errors" if r.n_invalid else "")
        )

    def table(self, width: int | None = None) -> str:
        """The findings as a table that fits the terminal (`icai.tables`), errors first."""
        from icai.tables import render_table

        rows = [(f.severity, f.check, str(f.count), _with_examples(f)) for f in self.findings]
        return render_table(["severity", "check", "rows", "detail"], rows, numeric=[2], wide=[3], width=width)


def validate_file(
    source: Source,
    *,
    format: FormatName = "auto",
    columns: Mapping[str, str] | None = None,
    label_map: Mapping[str, str] | None = None,
    test_size: float = 0.3,
    seed: int = 0,
    max_length_ratio: float = 10.0,
    alpha: float = 0.05,
) -> Validation:
    """Load a dataset, skipping bad rows, and run every check; raises `DataError` only for a file that cannot be read."""
    comparisons, report, problems = scan_comparisons(source, format=format, columns=columns, label_map=label_map)
    findings = row_findings(problems)
    if not comparisons:
        findings.append(
            Finding("error", "no usable pairs", 0, f"none of the {report.n_rows} rows is a labelled pair icai can use")
        )
    findings += check_comparisons(
        comparisons, test_size=test_size, seed=seed, max_length_ratio=max_length_ratio, alpha=alpha
    )
    findings += load_findings(report)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])
    n_a = sum(c.preferred == "a" for c in comparisons)
    return Validation(report.source, report, n_a, tuple(findings))


def row_findings(problems: Sequence[RowError]) -> list[Finding]:
    """One error finding per kind of row problem the loader met."""
    by_kind: dict[str, list[RowError]] = defaultdict(list)
    for p in problems:
        by_kind[p.kind].append(p)
    return [
        Finding(
            "error",
            kind,
            len(items),
            str(items[0]).split(": ", 1)[-1],
            tuple(_where(p) for p in items[:MAX_EXAMPLES]),
            len(items) > MAX_EXAMPLES,
        )
        for kind, items in by_kind.items()
    ]


def load_findings(report: LoadReport) -> list[Finding]:
    """Info lines: what the loader dropped and how it read the shape."""
    found = []
    if report.n_dropped_ties:
        found.append(Finding("info", "ties dropped", report.n_dropped_ties, "ties carry no preference; they are dropped"))
    if report.n_dropped_missing:
        found.append(
            Finding("info", "no preference", report.n_dropped_missing, "rows without a preference are dropped")
        )
    found += [Finding("info", "how it was read", 0, note) for note in report.notes]
    return found


def check_comparisons(
    comparisons: Sequence[Comparison],
    *,
    test_size: float = 0.3,
    seed: int = 0,
    max_length_ratio: float = 10.0,
    alpha: float = 0.05,
) -> list[Finding]:
    """Every check on loaded pairs, each a finding only when it finds something (position skew always reports)."""
    found: list[Finding] = []
    found += _duplicates(comparisons, test_size=test_size, seed=seed)
    identical = [c for c in comparisons if c.text_a.strip() == c.text_b.strip()]
    if identical:
        found.append(
            Finding(
                "warning",
                "identical responses",
                len(identical),
                "both responses are the same text but the label prefers one (a tie, or a copying mistake)",
                _ids(identical),
            )
        )
    whitespace_prompts = [c for c in comparisons if c.prompt and not c.prompt.strip()]
    if whitespace_prompts:
        found.append(
            Finding("warning", "blank prompt", len(whitespace_prompts), "the prompt holds only whitespace", _ids(whitespace_prompts))
        )
    found += _length_ratios(comparisons, max_length_ratio)
    found += _position_skew(comparisons, alpha)
    found += _encoding(comparisons)
    found += _scripts(comparisons)
    return found


def _duplicates(comparisons: Sequence[Comparison], *, test_size: float, seed: int) -> list[Finding]:
    groups = [g for g in duplicate_groups(comparisons) if len(g) > 1]
    if not groups:
        return []
    n_copies = sum(len(g) for g in groups)
    found = []
    # what a split that ignored duplicates would do (icai's own split keeps copies together)
    naive = stratified_test_indices(comparisons, test_size=test_size, seed=seed) if 0 < test_size < 1 else set()
    straddle = sum(1 for g in groups if 0 < sum(i in naive for i in g) < len(g))
    train, test = train_test_split(comparisons, test_size=test_size, seed=seed) if 0 < test_size < 1 else ([], [])
    test_ids = {c.id for c in test}
    kept_apart = sum(1 for g in groups if 0 < sum(comparisons[i].id in test_ids for i in g) < len(g))
    found.append(
        Finding(
            "warning",
            "duplicate pairs",
            n_copies,
            f"{len(groups)} pairs appear more than once ({n_copies} rows); a split that ignored this "
            f"(test size {test_size:g}, seed {seed}) would put copies of {straddle} of them on both sides; "
            f"icai's split keeps every copy on one side ({kept_apart} straddle)",
            tuple(" = ".join(comparisons[i].id for i in g[:3]) for g in groups[:MAX_EXAMPLES]),
            len(groups) > MAX_EXAMPLES,
        )
    )
    conflicting = [g for g in groups if len({comparisons[i].text(comparisons[i].preferred).strip() for i in g}) > 1]
    if conflicting:
        found.append(
            Finding(
                "warning",
                "conflicting duplicates",
                sum(len(g) for g in conflicting),
                f"{len(conflicting)} repeated pairs are labelled both ways",
                tuple(" = ".join(comparisons[i].id for i in g[:3]) for g in conflicting[:MAX_EXAMPLES]),
                len(conflicting) > MAX_EXAMPLES,
            )
        )
    return found


def _length_ratios(comparisons: Sequence[Comparison], max_ratio: float) -> list[Finding]:
    extreme = []
    longer_preferred = 0
    for c in comparisons:
        len_a, len_b = len(render_turns(c.text_a).strip()), len(render_turns(c.text_b).strip())
        if max(len_a, len_b) >= max_ratio * max(1, min(len_a, len_b)):
            extreme.append(c)
            longer_preferred += (len_a > len_b) == (c.preferred == "a")
    if not extreme:
        return []
    return [
        Finding(
            "warning",
            "extreme length ratio",
            len(extreme),
            f"one response is at least {max_ratio:g}x as long as the other; the longer one is preferred in "
            f"{longer_preferred} of {len(extreme)}",
            _ids(extreme),
        )
    ]


def _position_skew(comparisons: Sequence[Comparison], alpha: float) -> list[Finding]:
    n = len(comparisons)
    if n == 0:
        return []
    from scipy.stats import binomtest

    n_a = sum(c.preferred == "a" for c in comparisons)
    p = float(binomtest(n_a, n, 0.5).pvalue)
    share = f"A is preferred in {n_a} of {n} pairs ({n_a / n:.0%}), two-sided binomial test p = {_p(p)}"
    if p < alpha:
        return [
            Finding(
                "warning",
                "position skew",
                n,
                share + f" < {alpha:g}: an annotator that always answers one position scores above chance",
            )
        ]
    return [Finding("info", "position balance", n, share)]


def _encoding(comparisons: Sequence[Comparison]) -> list[Finding]:
    hits: dict[str, list[str]] = {"replacement characters": [], "control characters": [], "mojibake": []}
    for c in comparisons:
        kinds: Counter[str] = Counter()
        for text in (c.prompt, c.text_a, c.text_b):
            if "\ufffd" in text:
                kinds["replacement characters"] += 1
            if any(_is_control(ch) for ch in text):
                kinds["control characters"] += 1
            if _MOJIBAKE.search(text):
                kinds["mojibake"] += 1
        for kind in kinds:
            hits[kind].append(c.id)
    details = {
        "replacement characters": "text holds U+FFFD, where bytes were lost decoding it before icai read it",
        "control characters": "text holds control or invisible format characters (other than tab and newline)",
        "mojibake": "text looks like UTF-8 decoded as Latin-1/cp1252 (e.g. 'Ã©' for 'é', 'â€™' for '’')",
    }
    return [
        Finding("warning", kind, len(ids), details[kind], tuple(f"id {i}" for i in ids[:MAX_EXAMPLES]), len(ids) > MAX_EXAMPLES)
        for kind, ids in hits.items()
        if ids
    ]


def _scripts(comparisons: Sequence[Comparison]) -> list[Finding]:
    """Pairs whose two responses are written in different scripts (one answered in another language, say)."""
    mixed = []
    for c in comparisons:
        script_a, script_b = _script(render_turns(c.text_a)), _script(render_turns(c.text_b))
        if script_a and script_b and script_a != script_b:
            mixed.append(c)
    if not mixed:
        return []
    return [
        Finding(
            "warning",
            "mixed scripts",
            len(mixed),
            "the two responses are written in different scripts (e.g. Latin and Cyrillic): a language "
            "preference can explain these alone",
            _ids(mixed),
        )
    ]


def _script(text: str, *, letters: int = 200, least: int = 20) -> str | None:
    """The script most of a text's first `letters` letters are in ("LATIN", "CYRILLIC", "CJK", ...); None if it has few."""
    counts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            counts[_SCRIPT_OF.get(unicodedata.name(ch, "?").split(" ")[0], unicodedata.name(ch, "?").split(" ")[0])] += 1
            if sum(counts.values()) >= letters:
                break
    if sum(counts.values()) < least:
        return None
    return counts.most_common(1)[0][0]


_SCRIPT_OF = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "FULLWIDTH": "LATIN"}
"""Scripts counted as one: Japanese kana with CJK ideographs."""


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    category = unicodedata.category(ch)
    return category == "Cc" or (category == "Cf" and ch not in "\u200d")  # ZWJ joins emoji


def _ids(comparisons: Sequence[Comparison]) -> tuple[str, ...]:
    return tuple(f"id {c.id}" for c in comparisons[:MAX_EXAMPLES]) + (("...",) if len(comparisons) > MAX_EXAMPLES else ())


def _where(problem: RowError) -> str:
    return problem.where + (f" ({problem.column})" if problem.column else "")


def _with_examples(finding: Finding) -> str:
    if not finding.examples:
        return finding.detail
    more = ", ..." if finding.more else ""
    return f"{finding.detail} [{', '.join(finding.examples)}{more}]"


def _p(p: float) -> str:
    if p < 1e-4:
        return f"{p:.1e}"
    return f"{p:.3f}" if not math.isnan(p) else "nan"
