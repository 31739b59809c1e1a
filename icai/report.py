"""A static, self-contained HTML report of a run directory.

One file, no server, no external assets: CSS is inline and plots are inline SVG.
Every value that comes from the run is passed through `html.escape`. A missing
or unreadable file never stops the report; its section says what is missing.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icai.store import COMPARISON_COLUMNS, VOTE_COLUMNS, RunStore
from icai.surface import versus_sentence
from icai.textfmt import DASH, ci_pair, escape, is_missing, num, p_value
from icai.types import Constitution, PrincipleStats, stats_from_dict
from icai.votes import VoteTable

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
EXAMPLE_CHARS = 400
EXAMPLES_PER_SIDE = 2
BASELINE_COLOR = "#8a94a6"
HIGHLIGHT_COLOR = "#1f5fbf"
WARN_COLOR = "#c0392b"

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
       max-width: 1180px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #dde2ea; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; }
th, td { border: 1px solid #dde2ea; padding: .3em .45em; vertical-align: top; text-align: left; }
th { background: #f3f5f9; } td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.ci { color: #667085; font-size: .88em; } .missing { color: #8a4b00; background: #fff6e5; padding: .5em .8em; }
.flag { color: #c0392b; font-weight: 600; } .muted { color: #667085; }
.warning { background: #fdecea; border-left: 4px solid #c0392b; padding: .3em .9em; margin: .8em 0; font-weight: 600; }
figure.plot { margin: 1em 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #667085; font-size: .9em; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: .6em; margin: .6em 0 1.2em; }
.pair .prompt { grid-column: 1 / span 2; background: #f3f5f9; padding: .4em .6em; }
.response { border: 1px solid #dde2ea; padding: .4em .6em; white-space: pre-wrap; }
.response.preferred { border-color: #1f5fbf; box-shadow: inset 3px 0 0 #1f5fbf; }
.label { font-size: .8em; font-weight: 600; color: #667085; display: block; }
#constitution td:nth-child(2), #length-confounds td:nth-child(2) { min-width: 14em; }
#constitution .ci { display: block; }
.table-wrap { overflow-x: auto; } .pair > * { min-width: 0; overflow-wrap: anywhere; }
pre { background: #f3f5f9; padding: .6em; overflow-x: auto; font-size: .85em; }
"""


@dataclass
class Run:
    """What could be read from a run directory; `problems` explains what could not."""

    path: Path
    constitution: Constitution | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    principles: pd.DataFrame | None = None
    votes: pd.DataFrame | None = None
    """votes.csv; from a run whose votes are columns, only the rows the examples show (`n_votes` counts them all)."""
    n_votes: int | None = None
    comparisons: pd.DataFrame | None = None
    """comparisons.csv, only the rows the examples show when the votes are columns (`split_counts` counts them all)."""
    split_counts: tuple[int, dict[str, int]] | None = None
    evaluation: dict[str, Any] | None = None
    problems: dict[str, str] = field(default_factory=dict)


# --- public API -----------------------------------------------------------------------------


def render_report(run_dir: str | Path) -> str:
    """The HTML report of the run in `run_dir`."""
    run = load_run(run_dir)
    sections = [
        _header(run),
        _constitution_section(run),
        _user_principles_section(run),
        _evaluation_section(run),
        _curve_section(run),
        _scatter_section(run),
        groups_section(run.path),
        _length_section(run),
        _examples_section(run),
    ]
    title = f"ICAI report: {run.path.name}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )


def analysis_sections(run_dir: str | Path) -> list[str]:
    """The report's held-out evaluation, principle-count curve and candidate scatter sections (for `icai app`)."""
    run = load_run(run_dir)
    return [_evaluation_section(run), _curve_section(run), _scatter_section(run)]


def pair_html(row: Mapping[str, Any]) -> str:
    """One comparison as the report shows it: the prompt, then both responses side by side, the preferred one marked."""
    return _pair(row)


def write_report(run_dir: str | Path) -> Path:
    """Render the report and write it (through the run's store, atomically) to `run_dir/report.html`."""
    path = RunStore.existing(run_dir).save_report(render_report(run_dir))
    log.info("wrote report to %s", path)
    return path


def load_run(run_dir: str | Path) -> Run:
    """Read every file of a run directory that exists (through icai.store); record the others in `problems`."""
    store = RunStore.existing(run_dir)
    run = Run(store.path)
    run.constitution = _try(run, store, "constitution.json", store.read_constitution)
    if run.constitution is not None:
        run.metadata = dict(run.constitution.metadata)
    run.principles = _try(run, store, "principles.csv", lambda: _read_principles(store))
    if store.has_vote_columns():  # a run of any size: only what the report shows is read
        examples = _try(run, store, "votes.csv", lambda: _example_votes(store, run.constitution))
        if examples is not None:
            run.votes, run.n_votes = examples
        needed = set(run.votes["comparison_id"]) if run.votes is not None else set()
        compared = _try(run, store, "comparisons.csv", lambda: _comparison_rows(store, needed))
        if compared is not None:
            run.comparisons, run.split_counts = compared
    else:
        run.votes = _try(run, store, "votes.csv", lambda: store.read_csv("votes.csv", VOTE_COLUMNS))
        run.n_votes = None if run.votes is None else len(run.votes)
        run.comparisons = _try(run, store, "comparisons.csv", lambda: store.read_csv("comparisons.csv", COMPARISON_COLUMNS))
        if run.comparisons is not None:
            run.split_counts = _count_splits(run.comparisons)
    run.evaluation = _try(run, store, "evaluation.json", lambda: store.read_json("evaluation.json"))
    return run


def _example_votes(store: RunStore, constitution: Constitution | None) -> tuple[pd.DataFrame, int]:
    """The vote rows the examples section shows (the first few for and against of each constitution principle)
    from the vote columns, and the number of votes in all."""
    import pandas as pd

    table = store.load_votes()
    assert isinstance(table, VoteTable)
    rows: list[tuple[str, str, str]] = []
    principles = constitution.principles if constitution is not None else ()
    for principle, j in zip(principles, table.columns_for([p.id for p in principles]).tolist(), strict=True):
        if j < 0:
            continue
        column = np.asarray(table.values[:, j])
        for code, value in ((0, "for"), (1, "against")):
            for i in np.flatnonzero(column == code)[:EXAMPLES_PER_SIDE].tolist():
                rows.append((table.comparison_ids[i], principle.id, value))
    return pd.DataFrame(rows, columns=["comparison_id", "principle_id", "value"]), len(table)


def _comparison_rows(store: RunStore, ids: set[str]) -> tuple[pd.DataFrame, tuple[int, dict[str, int]]]:
    """The rows of comparisons.csv with these ids, and the split counts of all rows, read a chunk at a time."""
    import pandas as pd

    kept: list[pd.DataFrame] = []
    total, counts = 0, dict[str, int]()
    for frame in store.read_csv_chunks("comparisons.csv", COMPARISON_COLUMNS):
        total += len(frame)
        if "split" in frame.columns:
            for name, n in frame["split"].value_counts(sort=False).items():
                counts[str(name)] = counts.get(str(name), 0) + int(n)
        kept.append(frame[frame["id"].isin(ids)])
    return pd.concat(kept, ignore_index=True), (total, counts)


def _count_splits(comparisons: pd.DataFrame) -> tuple[int, dict[str, int]]:
    if "split" not in comparisons.columns:
        return len(comparisons), {}
    return len(comparisons), {str(k): int(n) for k, n in comparisons["split"].value_counts().items()}


def _try(run: Run, store: RunStore, name: str, read: Callable[[], Any]) -> Any:
    if not store.has(name):
        run.problems[name] = f"{name} is missing"
        return None
    try:
        return read()
    except (OSError, ValueError, KeyError, TypeError) as exc:  # DataError and JSON errors are ValueErrors
        log.warning("cannot read %s: %s", store.path / name, exc)
        run.problems[name] = f"{name} could not be read: {exc}"
        return None


def _read_principles(store: RunStore) -> pd.DataFrame:
    import pandas as pd

    frame = store.read_csv("principles.csv", ("id", "text", "in_constitution"))
    for column in frame.columns:
        if column not in ("id", "text", "in_constitution", "rank", "origin", "hint"):
            converted = pd.to_numeric(frame[column], errors="coerce")
            # boolean columns such as length_confounded stay text; kappa and relevance are always numbers
            if converted.notna().any() or (frame[column] == "").all() or column in ("kappa", "relevance"):
                frame[column] = converted
    frame["in_constitution"] = frame["in_constitution"].str.strip().str.lower().isin(["true", "1", "yes"])
    return frame


# --- formatting -----------------------------------------------------------------------------


def with_ci(value: Any, ci: Any, digits: int = 2) -> str:
    """'0.81 [0.70, 0.90]' with the interval in a muted span; no brackets when there is no CI."""
    text = num(value, digits)
    if (interval := ci_pair(ci)) is not None:
        text += f' <span class="ci">[{num(interval[0], digits)}, {num(interval[1], digits)}]</span>'
    return text


def _flag(value: Any) -> str:
    if value is None:
        return DASH
    return '<span class="flag">confounded</span>' if value else "no"


def note(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def _problem(run: Run, *names: str) -> str | None:
    found = [run.problems[n] for n in names if n in run.problems]
    return "; ".join(found) if found else None


def truncate(text: str, limit: int = EXAMPLE_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def html_table(table_id: str | None, head: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """A table from already-escaped cells; columns in `numeric` are right-aligned."""
    attr = f' id="{table_id}"' if table_id else ""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "\n".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<div class="table-wrap">\n<table{attr}>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n</div>'


def html_figure(figure_id: str, svg: str, caption: str) -> str:
    return f'<figure class="plot" id="{figure_id}">\n{svg}\n<figcaption>{escape(caption)}</figcaption>\n</figure>'


def _rank_label(value: Any) -> str:
    """'#2' from a CSV rank cell ("2", "2.0"); empty for candidates without a rank."""
    try:
        return f"#{int(float(value))}"
    except (TypeError, ValueError):
        return ""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, f"{name}."))
        else:
            out.append((name, value))
    return out


# --- plots ----------------------------------------------------------------------------------


def _new_figure(width: float = 7.5, height: float = 3.8) -> Figure:
    # a bare Figure, not pyplot: no global backend or figure registry to leak into callers
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, salt: str) -> str:
    """The figure as an inline <svg> element (deterministic ids, text kept as text)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _agreement_plot(scores: Sequence[Mapping[str, Any]]) -> str:
    names = [str(s.get("name", "?")) for s in scores]
    values = [float(s["agreement"]) if not is_missing(s.get("agreement")) else math.nan for s in scores]
    lows, highs = [], []
    for value, score in zip(values, scores, strict=True):
        ci = ci_pair(score.get("ci"))
        ok = ci is not None and not math.isnan(value)
        lows.append(max(value - ci[0], 0.0) if ci and ok else 0.0)
        highs.append(max(ci[1] - value, 0.0) if ci and ok else 0.0)
    fig = _new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    colors = [HIGHLIGHT_COLOR if n == "constitution" else BASELINE_COLOR for n in names]
    xs = range(len(names))
    ax.bar(xs, values, color=colors, yerr=[lows, highs], capsize=5, ecolor="#1d2330")
    ax.axhline(0.5, color=WARN_COLOR, linestyle="--", linewidth=1, label="chance (0.5)")
    for x, value in zip(xs, values, strict=True):
        if not math.isnan(value):
            ax.annotate(f"{value:.2f}", (x, value), xytext=(6, 3), textcoords="offset points", fontsize=9)
    ax.set_xticks(list(xs), names, rotation=15, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("agreement with human labels")
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig, "plot-agreement")


def _curve_plot(ids: Sequence[Any], agreement: Sequence[Any], baselines: Mapping[str, float]) -> str:
    ys = [float(v) if not is_missing(v) else math.nan for v in agreement]
    start = 0 if ids and len(ys) == len(ids) + 1 else 1  # a leading point may stand for "no principles"
    xs = list(range(start, start + len(ys)))
    fig = _new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    ax.plot(xs, ys, marker="o", color=HIGHLIGHT_COLOR, label="first k principles")
    for (name, value), style in zip(sorted(baselines.items()), ("--", ":", "-.", (0, (5, 1))), strict=False):
        ax.axhline(value, color=BASELINE_COLOR, linestyle=style, linewidth=1, label=name)
    ax.set_xticks(xs)
    ax.set_xlabel("number of principles (in the order selection added them)")
    ax.set_ylabel("agreement")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig, "plot-curve")


def _scatter_plot(frame: pd.DataFrame) -> str:
    points = frame.dropna(subset=["kappa", "relevance"])
    members, others = points[points["in_constitution"]], points[~points["in_constitution"]]
    fig = _new_figure(7.5, 4.2)
    ax = fig.add_subplot()
    ax.scatter(others["relevance"], others["kappa"], s=18, color=BASELINE_COLOR, alpha=0.6, label="candidate")
    ax.scatter(
        members["relevance"], members["kappa"], s=60, color=HIGHLIGHT_COLOR, edgecolor="white", label="in constitution"
    )
    if "rank" in members.columns:
        for _, row in members.iterrows():
            if label := _rank_label(row["rank"]):
                ax.annotate(
                    label, (row["relevance"], row["kappa"]), xytext=(5, 4), textcoords="offset points", fontsize=9
                )
    ax.axhline(0, color="#1d2330", linewidth=0.6)
    ax.set_xlabel("relevance (share of votes that pick a side)")
    ax.set_ylabel("kappa (2 × agreement − 1)")
    ax.legend(loc="best", fontsize=8)
    return _svg(fig, "plot-scatter")


# --- sections -------------------------------------------------------------------------------


def _header(run: Run) -> str:
    meta = run.metadata
    facts: list[tuple[str, str]] = []
    for key in ("dataset_hash", "model", "version"):
        if key in meta:
            value = meta[key]
            facts.append(
                (key.replace("_", " "), escape(value if isinstance(value, str) else json.dumps(value, default=str)))
            )
    if run.constitution is not None:
        facts.append(("principles in constitution", str(len(run.constitution))))
    if run.principles is not None:
        facts.append(("candidate principles", str(len(run.principles))))
    if run.split_counts is not None:
        facts.append(("comparisons", escape(_split_counts(*run.split_counts))))
    if run.n_votes is not None:
        facts.append(("votes", str(run.n_votes)))
    usage = meta.get("usage")
    if isinstance(usage, Mapping):
        facts.extend((f"usage: {escape(k)}", escape(f"{v:,}" if isinstance(v, int) else v)) for k, v in _flatten(usage))
    rows = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    parts = [f'<header id="summary">\n<h1>ICAI report: {escape(run.path.name)}</h1>']
    notes = [n for n in meta.get("notes") or [] if isinstance(n, str)]
    if notes:
        items = "".join(f"<p>{escape(n)}</p>" for n in notes)
        parts.append(f'<div class="warning" id="notes">{items}</div>')
    parts.append(f'<table id="run-facts">\n{rows}\n</table>')
    if run.problems:
        items = "".join(f"<li>{escape(p)}</li>" for p in run.problems.values())
        parts.append(f'<div class="missing" id="problems">Some files were not available:<ul>{items}</ul></div>')
    if "config" in meta:
        config = json.dumps(meta["config"], indent=2, default=str, ensure_ascii=False)
        parts.append(f"<details><summary>configuration</summary><pre>{escape(config)}</pre></details>")
    parts.append("</header>")
    return "\n".join(parts)


def _split_counts(total: int, counts: Mapping[str, int]) -> str:
    """"N (train: n, test: m)", the largest split first."""
    if not counts:
        return f"{total}"
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return f"{total} (" + ", ".join(f"{name}: {n}" for name, n in ordered) + ")"


def _constitution_section(run: Run) -> str:
    head = '<section id="constitution-section">\n<h2>Constitution</h2>'
    if run.constitution is None:
        return f"{head}\n{note(_problem(run, 'constitution.json') or 'no constitution')}\n</section>"
    if not run.constitution.principles:
        return f"{head}\n{note('The constitution is empty: no principle passed selection.')}\n</section>"
    columns = [
        "rank",
        "principle",
        "origin",
        "for",
        "against",
        "abstain",
        "invalid",
        "agreement [95% CI]",
        "relevance",
        "kappa",
        "strength",
        "q-value",
        "swap consistency",
        "length confound",
        "verdict",
        "in resamples",
    ]
    meta = run.metadata
    stability: Mapping[str, Any] = meta["stability"] if isinstance(meta.get("stability"), Mapping) else {}
    frequency = stability.get("frequency") or {}
    rows = []
    for rank, principle in enumerate(run.constitution.principles, start=1):
        s = run.constitution.stats_for(principle.id)
        share = num(frequency.get(principle.id, 0.0)) if stability else DASH
        rows.append(
            [
                str(rank),
                escape(principle.text),
                _provenance(principle.origin, principle.hint),
                *_stats_cells(s),
                escape(s.verdict_text if s and s.verdict else DASH),
                share,
            ]
        )
    table = html_table("constitution", columns, rows, numeric={0, *range(3, 13), 15})
    caption = (
        '<p class="muted">Agreement = for / (for + against); relevance = (for + against) / all votes '
        "(abstain and invalid count as not applicable); kappa = 2 × agreement − 1 (Cohen's kappa with chance "
        "agreement 0.5); strength = kappa × relevance, as in Feedback Forensics. "
        "The q-value is the Benjamini-Hochberg adjusted p-value; a principle is significant when it is below "
        f"alpha = {escape((meta.get('selection') or {}).get('alpha', 0.05))}, else exploratory. "
        "In resamples: share of bootstrap resamples of the training pairs whose constitution holds the principle. "
        "Origin: who wrote the principle "
        "(<code>llm</code>, or <code>hint-fallback</code> for a rule written by code from a key word) and what "
        "the writer was shown (<code>keywords</code>: contrastive words of the pair; <code>form:&lt;feature&gt;:"
        "&lt;more|less&gt;</code>: a surface feature that separates preferred from rejected responses).</p>"
    )
    lines = []
    selection: Mapping[str, Any] = meta["selection"] if isinstance(meta.get("selection"), Mapping) else {}
    if selection:
        merges = selection.get("merges") or []
        lines.append(
            f"Built by {escape(selection.get('method'))} selection from {len(selection.get('qualified') or [])} qualifying "
            f"principles; {len(merges)} merged as duplicates of a stronger one."
        )
    if stability and stability.get("expected_overlap") is not None:
        lines.append(
            f"Stability: over {escape(stability.get('n_resamples'))} bootstrap resamples, a resampled constitution holds "
            f"{num(stability['expected_overlap'])} of these principles on average "
            f"(mean size {num(stability.get('mean_size'), 1)})."
        )
    facts = "".join(f'<p id="selection-facts">{line}</p>' if i == 0 else f"<p>{line}</p>" for i, line in enumerate(lines))
    return f"{head}\n{caption}\n{facts}\n{table}\n</section>"


def _user_principles_section(run: Run) -> str:
    """Every principle the user gave (icai run --principles, icai test), selected or not, with its statistics."""
    rows_data = run.metadata.get("user_principles")
    if not isinstance(rows_data, list) or not rows_data:
        return ""
    columns = [
        "principle", "place", "for", "against", "abstain", "invalid", "agreement [95% CI]", "relevance", "kappa",
        "strength", "q-value", "swap consistency", "length confound", "verdict",
    ]
    rows = []
    for row in rows_data:
        if not isinstance(row, Mapping):
            continue
        s = stats_from_dict(row["stats"]) if isinstance(row.get("stats"), Mapping) else None
        place = (
            f"rank {escape(row.get('rank'))}"
            if row.get("in_constitution")
            else f"merged into {escape(row.get('merged_into'))}" if row.get("merged_into") else "not selected"
        )
        rows.append([escape(row.get("text", "")), place, *_stats_cells(s), escape(s.verdict_text if s and s.verdict else DASH)])
    table = html_table("user-principles", columns, rows, numeric=set(range(2, 13)))
    caption = (
        '<p class="muted">The principles you gave (origin <code>user</code>): never clustered away, voted on the '
        "same pairs as every candidate and selected like them, so each appears here whether or not it entered "
        "the constitution. Columns as in the constitution table.</p>"
    )
    return f'<section id="user-principles">\n<h2>Your principles</h2>\n{caption}\n{table}\n</section>'


def _provenance(origin: Any, hint: Any) -> str:
    """'llm', 'llm · form:words:less', or a flagged 'hint-fallback · keywords' (escaped)."""
    origin_text = "" if is_missing(origin) else str(origin)
    hint_text = "" if is_missing(hint) else str(hint)
    cell = escape(origin_text or "llm")
    if origin_text and origin_text != "llm":
        cell = f'<span class="flag">{cell}</span>'
    return cell + (f' <span class="muted">\u00b7 {escape(hint_text)}</span>' if hint_text else "")


def _stats_cells(s: PrincipleStats | None) -> list[str]:
    if s is None:
        return [DASH] * 11
    return [
        str(s.n_for),
        str(s.n_against),
        str(s.n_abstain),
        str(s.n_invalid),
        with_ci(s.agreement, s.agreement_ci),
        num(s.relevance),
        num(s.kappa),
        num(s.strength),
        p_value(s.q_value),
        num(s.swap_consistency),
        _flag(s.length_confounded),
    ]


def _scores(run: Run) -> list[Mapping[str, Any]]:
    scores = (run.evaluation or {}).get("scores") or []
    return [s for s in scores if isinstance(s, Mapping)]


def _evaluation_section(run: Run) -> str:
    head = '<section id="evaluation">\n<h2>Reconstruction of the human labels</h2>'
    scores = _scores(run)
    if not scores:
        why = _problem(run, "evaluation.json") or "evaluation.json has no scores"
        return f"{head}\n{note(why + '; the agreement plot needs an evaluation run.')}\n</section>"
    rows = [
        [
            escape(s.get("name", "?")),
            with_ci(s.get("agreement"), s.get("ci")),
            escape(s.get("n", DASH)),
            escape(s.get("n_invalid", DASH)),
        ]
        for s in scores
    ]
    parts = [
        head,
        html_figure(
            "plot-agreement",
            _agreement_plot(scores),
            "Agreement with the human labels on the test split; error bars are 95% confidence intervals.",
        ),
        html_table("scores", ["annotator", "agreement [95% CI]", "n", "invalid"], rows, numeric={1, 2, 3}),
    ]
    explanations = (run.evaluation or {}).get("explanations")
    if isinstance(explanations, Mapping) and explanations:
        items = "".join(f"<li><b>{escape(name)}</b>: {escape(text)}</li>" for name, text in explanations.items())
        parts.append(f'<ul id="score-explanations" class="muted">{items}</ul>')
    differences = (run.evaluation or {}).get("differences") or {}
    if isinstance(differences, Mapping) and differences:
        diff_rows = [
            [f"{escape(name)} \u2212 default", with_ci(d.get("mean"), d.get("ci"), 3)]
            for name, d in differences.items()
            if isinstance(d, Mapping)
        ]
        surface_diff = _surface(run).get("constitution_minus_surface")
        if isinstance(surface_diff, Mapping):
            diff_rows.append(
                ["constitution \u2212 surface", with_ci(surface_diff.get("mean"), surface_diff.get("ci"), 3)]
            )
        parts.append("<h3>Paired differences from the default annotator (and from surface features)</h3>")
        parts.append(html_table("differences", ["annotators", "mean difference [95% CI]"], diff_rows, numeric={1}))
    parts.append(_surface_note(run))
    parts.append("</section>")
    return "\n".join(parts)


def _surface(run: Run) -> Mapping[str, Any]:
    surface = (run.evaluation or {}).get("surface")
    return surface if isinstance(surface, Mapping) else {}


def _surface_note(run: Run) -> str:
    """What the surface baseline is, how it was fitted, its largest weights, and constitution - surface."""
    surface = _surface(run)
    if not surface:
        return '<p class="muted" id="surface-note">No surface-feature baseline in this evaluation.</p>'
    how = (
        f"fitted on the {escape(surface.get('n_train', '?'))} training pairs and scored on the held-out ones"
        if surface.get("fit") == "train"
        else "cross-validated on the evaluated pairs (no training pairs were given)"
    )
    cv = surface.get("cv_accuracy")
    cv_text = (
        f"; cross-validated training accuracy {num(cv, 3)}" if surface.get("fit") == "train" and not is_missing(cv) else ""
    )
    weights = surface.get("coefficients") or {}
    top = sorted(
        ((str(k), float(v)) for k, v in weights.items() if isinstance(v, int | float)), key=lambda kv: -abs(kv[1])
    )[:4]
    weight_text = ", ".join(f"{escape(k)} {v:+.2f}" for k, v in top if abs(v) > 1e-9) or "all zero"
    diff = surface.get("constitution_minus_surface")
    verdict = ""
    if isinstance(diff, Mapping) and not is_missing(diff.get("mean")):
        mean = float(diff["mean"])
        ci = ci_pair(diff.get("ci"))
        interval = f" (95% CI {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f})" if ci else ""
        sentence = versus_sentence(mean, ci) if ci else versus_sentence(mean, (mean, mean))
        verdict = f" <strong>{escape(sentence[0].upper() + sentence[1:])}</strong>{interval}."
    return (
        '<p id="surface-note"><strong>surface</strong>: a logistic regression on cheap features of A \u2212 B '
        "(length in characters and words, sentences, markdown headers, list items, bold, code blocks, links, "
        f"question marks, refusal, hedging and politeness phrases; no model calls), {how}{cv_text}. "
        f"Largest standardised weights (positive: favours the side with more): {weight_text}.{verdict}</p>"
    )


def _curve_section(run: Run) -> str:
    head = '<section id="curve">\n<h2>Agreement by number of principles</h2>'
    curve = (run.evaluation or {}).get("curve")
    if not isinstance(curve, Mapping) or not curve.get("agreement"):
        why = _problem(run, "evaluation.json") or "evaluation.json has no principle-count curve"
        return f"{head}\n{note(why + '.')}\n</section>"
    baselines = {
        str(s["name"]): float(s["agreement"])
        for s in _scores(run)
        if s.get("name") in ("default", "random", "surface") and not is_missing(s.get("agreement"))
    }
    svg = _curve_plot(curve.get("principle_ids") or [], curve["agreement"], baselines)
    caption = "Held-out agreement of the first k principles that forward selection added; grey lines are baselines."
    return f"{head}\n{html_figure('plot-curve', svg, caption)}\n</section>"


def _scatter_section(run: Run) -> str:
    head = '<section id="candidates">\n<h2>All candidate principles</h2>'
    frame = run.principles
    if frame is None:
        return f"{head}\n{note(_problem(run, 'principles.csv') or 'principles.csv is missing')}\n</section>"
    if not {"kappa", "relevance"} <= set(frame.columns) or frame.dropna(subset=["kappa", "relevance"]).empty:
        return f"{head}\n{note('No candidate has both kappa and relevance.')}\n{_candidate_list(frame)}\n</section>"
    svg = _scatter_plot(frame)
    n_in = int(frame["in_constitution"].sum())
    caption = f"Kappa against relevance for {len(frame)} candidates; the {n_in} constitution members are highlighted."
    return f"{head}\n{html_figure('plot-scatter', svg, caption)}\n{_candidate_list(frame)}\n</section>"


def _candidate_list(frame: pd.DataFrame) -> str:
    """Every candidate with its provenance and statistics, constitution members first, in a collapsed block."""
    has = set(frame.columns)
    rows = []
    ordered = frame.assign(_member=~frame["in_constitution"]).sort_values(["_member"], kind="stable")
    for record in ordered.to_dict("records"):
        rows.append(
            [
                _rank_label(record.get("rank")) or DASH,
                escape(record.get("text", "")),
                _provenance(record.get("origin"), record.get("hint")) if "origin" in has else DASH,
                escape(record.get("cluster", DASH)) if not is_missing(record.get("cluster")) else DASH,
                num(record.get("agreement", DASH)),
                num(record.get("relevance", DASH)),
                num(record.get("kappa", DASH)),
            ]
        )
    origins = ""
    if "origin" in has:
        counts = frame["origin"].replace("", "llm").value_counts()
        origins = " (" + ", ".join(f"{escape(name)}: {n}" for name, n in counts.items()) + ")"
    table = html_table(
        "candidate-list", ["rank", "principle", "origin", "cluster", "agreement", "relevance", "kappa"], rows, {4, 5, 6}
    )
    return f"<details><summary>all {len(frame)} candidates{origins}</summary>\n{table}\n</details>"


def _length_section(run: Run) -> str:
    head = '<section id="length">\n<h2>Length confounds</h2>'
    if run.constitution is None:
        return f"{head}\n{note(_problem(run, 'constitution.json') or 'no constitution')}\n</section>"
    rows = []
    for rank, principle in enumerate(run.constitution.principles, start=1):
        s = run.constitution.stats_for(principle.id)
        rows.append(
            [
                str(rank),
                escape(principle.text),
                p_value(s.length_adjusted_p if s else None),
                _flag(s.length_confounded if s else None),
            ]
        )
    intro = (
        '<p class="muted">A principle is flagged when its agreement is no longer significant '
        "once response length is accounted for: it may just prefer longer (or shorter) answers.</p>"
    )
    table = html_table("length-confounds", ["rank", "principle", "length-adjusted p", "flag"], rows, numeric={0, 2})
    return f"{head}\n{intro}\n{table}\n</section>"


def _examples_section(run: Run) -> str:
    head = '<section id="examples">\n<h2>Example pairs</h2>'
    why = _problem(run, "constitution.json", "votes.csv", "comparisons.csv")
    if run.constitution is None or run.votes is None or run.comparisons is None:
        return f"{head}\n{note((why or 'data missing') + '; examples need all three files.')}\n</section>"
    by_id = {str(r["id"]): r for r in run.comparisons.to_dict("records")}
    parts = [head]
    for rank, principle in enumerate(run.constitution.principles, start=1):
        votes = run.votes[run.votes["principle_id"] == principle.id]
        parts.append(
            f'<article class="principle-examples" id="examples-{rank}">\n<h3>#{rank}: {escape(principle.text)}</h3>'
        )
        for value, label in (
            ("for", "Voted for (picks the human-preferred response)"),
            ("against", "Voted against (picks the rejected response)"),
        ):
            ids = [c for c in votes.loc[votes["value"] == value, "comparison_id"] if c in by_id][:EXAMPLES_PER_SIDE]
            parts.append(f"<h4>{escape(label)}</h4>")
            parts.extend(_pair(by_id[c]) for c in ids)
            if not ids:
                parts.append(f'<p class="muted">No comparison where it voted {escape(value)}.</p>')
        parts.append("</article>")
    parts.append("</section>")
    return "\n".join(parts)


def _pair(row: Mapping[str, Any]) -> str:
    preferred = str(row.get("preferred", "")).strip().lower()
    cells = [
        f'<div class="prompt"><span class="label">prompt · comparison {escape(row["id"])}</span>{escape(truncate(str(row["prompt"])))}</div>'
    ]
    for side in ("a", "b"):
        mark = " preferred" if side == preferred else ""
        tag = "response " + side.upper() + (" (human-preferred)" if mark else "")
        cells.append(
            f'<div class="response{mark}"><span class="label">{tag}</span>{escape(truncate(str(row["text_" + side])))}</div>'
        )
    return '<div class="pair">' + "".join(cells) + "</div>"


# --- subgroups (icai.groups; `icai run --by`) -----------------------------------------------------


def strength_plot(
    rows: Sequence[tuple[str, Sequence[tuple[str, float | None, Sequence[float] | None]]]],
    groups: Sequence[str],
    *,
    ordered: bool,
    salt: str,
    ylabel: str = "strength ((for \u2212 against) / votes)",
) -> str:
    """Strength of each principle (one series per row label) in each group, with interval bars, as inline SVG.

    rows: (label, [(group, strength, (low, high)), ...]); ordered groups (time bins) are joined by lines.
    """
    fig = _new_figure(7.5, 3.2 + 0.15 * len(rows))
    ax = fig.add_subplot()
    xs = {g: k for k, g in enumerate(groups)}
    width = 0.8 / max(len(rows), 1)
    for r, (label, points) in enumerate(rows):
        shift = 0.0 if ordered else (r - (len(rows) - 1) / 2) * width
        px, py, lo, hi = [], [], [], []
        for group, value, ci in points:
            if value is None or group not in xs:
                continue
            px.append(xs[group] + shift)
            py.append(value)
            lo.append(max(value - ci[0], 0.0) if ci else 0.0)
            hi.append(max(ci[1] - value, 0.0) if ci else 0.0)
        ax.errorbar(
            px, py, yerr=[lo, hi], fmt="o-" if ordered else "o", capsize=4, markersize=5, linewidth=1.2, label=label
        )
    ax.axhline(0, color=BASELINE_COLOR, linestyle="--", linewidth=1)
    ax.set_xticks(list(xs.values()), [truncate(g, 28) for g in groups], rotation=15 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
    ax.set_ylim(-1.1, 1.1)
    ax.set_ylabel(ylabel)
    if rows:
        ax.legend(loc="best", fontsize=7)
    return _svg(fig, salt)


def groups_section(run_dir: str | Path) -> str:
    """The report section of groups.json: per-group strength with CIs, the tests, the principles that differ most."""
    store = RunStore.existing(run_dir)
    if not store.has("groups.json"):
        return ""  # the run was not split (`icai run --by COLUMN`)
    head = '<section id="groups">\n<h2>Subgroups</h2>'
    try:
        data = store.read_json("groups.json")
        groups = [str(g) for g in data["groups"]]
        principles = list(data["principles"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{head}\n{note(f'groups.json could not be read: {exc}')}\n</section>"
    column = str(data.get("column", "?"))
    target = (data.get("target") or {}).get("target", "label")
    sizes = data.get("group_sizes") or {}
    intro = (
        f"<p>Pairs split by <code>{escape(column)}</code>"
        + (f" into {len(groups)} quantile bins" if data.get("bins") else f" into {len(groups)} groups")
        + f" ({escape(', '.join(f'{g}: {sizes.get(g, 0)}' for g in groups))}; {escape(data.get('pairs', ''))}). "
        f"Label: {escape(target)}. Each group's strength is tested against the other pairs' by permutation "
        f"({escape(data.get('n_permutations'))} shuffles), Benjamini-Hochberg corrected across principles \u00d7 groups; "
        f"a group with fewer than {escape(data.get('min_decisive'))} decisive votes for a principle is shown, not tested.</p>"
    )
    summary = "".join(f"<li>{escape(line)}</li>" for line in data.get("summary", []))
    rows = []
    series = []
    for p in principles:
        by = {g["group"]: g for g in p.get("groups", [])}
        cells = [escape(truncate(str(p.get("text", "")), 160)) + ("" if p.get("in_constitution", True) else ' <span class="muted">(group constitution)</span>')]
        for g in groups:
            st = by.get(g)
            if not st or st.get("strength") is None:
                cells.append(DASH)
                continue
            small = int(st["n_for"]) + int(st["n_against"]) < int(data.get("min_decisive", 10))
            cells.append(with_ci(st["strength"], st.get("strength_ci")) + f'<span class="ci">n={st["n_for"] + st["n_against"]}{" (not tested)" if small else ""}</span>')
        tests = [t for t in p.get("tests", []) if t.get("significant")]
        cells.append(", ".join(
            f'<span class="flag">{escape(("only in " + str(t["only_in"])) if t.get("only_in") else t["group"])}</span> q {p_value(t["q_value"])}'
            for t in tests
        ) or "no")
        rows.append(cells)
        series.append(
            (
                truncate(str(p.get("text", "")), 60),
                [(g, by[g].get("strength"), by[g].get("strength_ci")) for g in groups if g in by],
            )
        )
    table = html_table("groups-table", ["principle", *map(escape, groups), "differs (q)"], rows, set(range(1, len(groups) + 1)))
    svg = strength_plot(series[:8], groups, ordered=bool(data.get("ordered")), salt="plot-groups")
    caption = (
        "Strength of each principle over time (quantile bins of " + column + "), 95% bootstrap intervals."
        if data.get("ordered")
        else "Strength of each principle in each group of " + column + ", 95% bootstrap intervals."
    )
    per_group = data.get("per_group_constitutions") or {}
    extra = "".join(
        f"<li><b>{escape(g)}</b>: {escape('; '.join(r['text'] for r in rows_) or 'empty')}</li>" for g, rows_ in per_group.items()
    )
    per_group_html = f"<h3>Constitution per group (from the shared votes)</h3><ul>{extra}</ul>" if per_group else ""
    return f"{head}\n{intro}\n<ul>{summary}</ul>\n{table}\n{html_figure('plot-groups', svg, caption)}\n{per_group_html}\n</section>"
