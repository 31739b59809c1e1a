"""Docs tables made from results files: the headline numbers at the top of docs/benchmarks.md.

`headline_table()` reads bench/results/*.json and returns the markdown table; tests/test_docs.py fails when the
committed block in docs/benchmarks.md differs from it (`ICAI_WRITE_DOCS=1 pytest tests/test_docs.py` rewrites it).
Each row is a number the section it links to already states, taken from the results file it names.

    python bench/docs_tables.py     # prints the table
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def headline_rows() -> list[tuple[str, str, str, str]]:
    """(what, number, results file and key, docs section anchor) for each headline number."""
    offline_file = _load("offline_default.json")
    offline, winner = offline_file["summary"], offline_file["summary"]["winner"]
    cells = f"{len(offline_file['cells'])} of {len(offline_file['sets']) * len(offline_file['seeds'])} set·seed cells"
    demo = _load("demo.json")
    groups = _load("groups.json")["false_positives"]
    edit = _load("app_edit.json")
    local = {r["mode"]: r for r in _load("local_vote.json")["results"]}
    fast, slow = local["logprob, prefix reuse"], local["generate (batch 5)"]
    labels = _load("active_labelling.json")
    low, high = labels["labels_ratio_ci"]
    return [
        (
            "Offline default (`local/smollm2`): voter chosen by held-out agreement over every shipped labelled set",
            f"`{winner}`, {offline['overall'][winner]['mean_over_sets']:.3f} mean held-out agreement ({cells})",
            f"`bench/results/offline_default.json`, `summary.overall.{winner}.mean_over_sets`",
            "#offline-default-chosen-by-measurement-issue-28",
        ),
        (
            "Subgroup test on random splits (no real difference): tests with p < 0.05",
            f"{groups['share_p_below_alpha']:.1%} of {groups['n_tests']:,}",
            "`bench/results/groups.json`, `false_positives.share_p_below_alpha`",
            "#subgroup-differences-issue-18",
        ),
        (
            "SmolLM2 voting on the 2-core CPU: log-prob votes with prefix reuse against generated votes",
            f"{fast['pairs_principles_per_s']:.2f} pairs·principles/s, "
            f"{fast['pairs_principles_per_s'] / slow['pairs_principles_per_s']:.1f}x the generated votes' rate",
            "`bench/results/local_vote.json`, `results.*.pairs_principles_per_s`",
            "#local-voting-issue-5",
        ),
        (
            "`make demo` (SmolLM2 proposals, MiniLM votes and style principles, 30 pairs, cold cache, shared machine)",
            f"{demo['usage']['calls']:,} model calls, {demo['wall_s']:,.0f} s",
            "`bench/results/demo.json`, `usage.calls`, `wall_s`",
            "#make-demo-recorded",
        ),
        (
            "Workbench: an edited principle to its new statistics",
            f"median {edit['fake']['median_s']:.3f} s (`fake/keyword`, {edit['fake']['n_train']} pairs); "
            f"{edit['local']['seconds_edit_to_statistics']:.1f} s (`local/smollm2`, {edit['local']['n_train']} pairs)",
            "`bench/results/app_edit.json`, `fake.median_s`, `local.seconds_edit_to_statistics`",
            "#the-workbench-time-from-edit-to-new-statistics-issue-19",
        ),
        (
            "Active labelling: labels icai's order needs against a random order",
            f"{labels['labels_ratio_active_vs_random']:.2f} (95% CI {low:.2f}–{high:.2f})",
            "`bench/results/active_labelling.json`, `labels_ratio_active_vs_random`",
            "#active-labelling-labels-needed-icais-order-against-a-random-one-issue-30",
        ),
    ]


def headline_table() -> str:
    rows = ["| what | number | from | section |", "|---|---|---|---|"]
    rows += [f"| {what} | {number} | {source} | [details]({anchor}) |" for what, number, source, anchor in headline_rows()]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(headline_table(), end="")
