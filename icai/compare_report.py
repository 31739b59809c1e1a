"""compare.html: the comparison of two runs (`icai compare`), in the report's style (`icai.report`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from icai.report import CSS, html_figure, html_table, note, strength_plot, truncate, with_ci
from icai.textfmt import DASH, escape, p_value


def render_compare(data: Mapping[str, Any]) -> str:
    """The HTML page of a compare.json object: summary, one row per principle, strength on each side with CIs."""
    name_a, name_b = str(data.get("a", "A")), str(data.get("b", "B"))
    rows_data = list(data.get("rows", []))
    n_pairs = data.get("n_pairs") or {}
    cross = data.get("cross_votes") or {}
    head = (
        f"<h1>ICAI comparison: {escape(name_a)} vs {escape(name_b)}</h1>\n"
        f"<p>{escape(name_a)}: {escape(n_pairs.get(name_a, '?'))} pairs; {escape(name_b)}: {escape(n_pairs.get(name_b, '?'))} pairs. "
        f"Model {escape(data.get('model', '?'))}, embedder {escape(data.get('embedder', '?'))}. Each constitution was tested on "
        f"the other side's pairs ({escape(cross.get('new', 0))} new votes, {escape(cross.get('reused', 0))} reused). "
        f"Principles are matched when their texts' embedding similarity is at least {escape(data.get('min_similarity'))} and "
        "their votes agree; a matched pair is measured with the first side's wording. Differences: bootstrap 95% CI, "
        f"permutation test ({escape(data.get('n_permutations'))} shuffles), Benjamini-Hochberg q below {escape(data.get('alpha'))}; "
        f"fewer than {escape(data.get('min_decisive'))} decisive votes on both sides: not tested; on one side only: "
        "reported as decisive only in the other, with its binomial test.</p>"
    )
    summary = "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in data.get("summary", [])) + "</ul>"
    if not rows_data:
        return _page(name_a, name_b, head + summary + note("Neither constitution has a principle to compare."))
    rows, series = [], []
    for r in rows_data:
        text = escape(truncate(str(r.get("text", "")), 200))
        if r.get("matched_text"):
            text += f'<span class="ci">matched: {escape(truncate(str(r["matched_text"]), 160))} (similarity {float(r["similarity"]):.2f})</span>'
        cells = [text, escape(r.get("found_in", ""))]
        for side in ("a", "b"):
            s = r.get(side) or {}
            cells.append(
                DASH if s.get("strength") is None
                else with_ci(s["strength"], s.get("strength_ci")) + f'<span class="ci">n={s["n_for"] + s["n_against"]}</span>'
            )
        if r.get("only_in"):
            cells.append(escape(f"only in {r['only_in']} (decisive there alone; binomial test)"))
        else:
            cells.append(with_ci(r["difference"], r.get("difference_ci")) if r.get("difference") is not None else escape(r.get("reason", "")))
        q = p_value(r.get("q_value")) if r.get("q_value") is not None else DASH
        cells.append(f'<span class="flag">{q}</span>' if r.get("significant") else q)
        cells.append(escape(r.get("other_side") or ""))
        rows.append(cells)
        series.append(
            (
                truncate(str(r.get("text", "")), 60),
                [(name_a, (r.get("a") or {}).get("strength"), (r.get("a") or {}).get("strength_ci")),
                 (name_b, (r.get("b") or {}).get("strength"), (r.get("b") or {}).get("strength_ci"))],
            )
        )
    table = html_table(
        "compare-table",
        ["principle", "in constitution of", f"strength {escape(name_a)}", f"strength {escape(name_b)}", "difference", "q", "other side"],
        rows,
        {2, 3, 4, 5},
    )
    svg = strength_plot(series[:10], [name_a, name_b], ordered=False, salt="plot-compare")
    figure = html_figure("plot-compare", svg, f"Strength of each principle on {name_a}'s and {name_b}'s pairs, 95% bootstrap intervals.")
    return _page(name_a, name_b, f"{head}\n{summary}\n{table}\n{figure}")


def _page(name_a: str, name_b: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(f'ICAI comparison: {name_a} vs {name_b}')}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
