"""Vote prompt layout: "rule-first" (the rule, then the question) against "rule-last" (the question, then the rule).

Issue 29, item 3. In the rule-last layout the question belongs to the prefix a pair's principles share
(`icai.prompts.vote_branches_request`), so each further principle computes only its rule's tokens. What it may
change is the votes: a small model reads the question before the rule instead of after it.

Setup, declared before any result was seen and the same for both layouts:
- sets: the ICAI synthetic sets (orthogonal, aligned) and LLMBar natural and adversarial, from the repository
  (`icai.datasets`); per seed a seeded sample of `N_PAIRS` pairs of each set;
- principles: `PRINCIPLES`, ten texts, the same for every set: the six hidden rules of the synthetic sets
  written as principles (each is a distractor on the other sets) and four general ones;
- voter: the packaged SmolLM2 (`local/smollm2`), log-prob votes in both orders, `RunConfig` batch size, no
  response cache; the two layouts take turns per (set, seed), on the same pairs;
- measured per layout: computed prompt tokens per vote (input tokens less the ones reused from the shared prefix,
  as the provider reports them), votes per second, the share of decisive votes (for or against the label), and
  agreement with the labels (for / decisive); and between the layouts, the share of votes with the same value.
- intervals: 95% bootstrap over pairs (each pair's votes resampled together); the difference in label agreement
  is a paired bootstrap over the pairs both layouts voted.

Adoption rule (issue 29): rule-last becomes the default only if its agreement with the labels does not drop
beyond the interval: the pooled paired difference (rule-last - rule-first) has a 95% interval reaching 0 or above,
and no set's interval lies wholly below 0.

    nice -n 10 .venv/bin/python bench/vote_layout.py            # writes bench/results/vote_layout.json
    .venv/bin/python bench/vote_layout.py --markdown            # the table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icai import datasets
from icai.config import RunConfig
from icai.files import write_json_atomic
from icai.llm import get_llm
from icai.prompts import VoteLayout
from icai.stats import bootstrap_ci, paired_bootstrap_diff
from icai.types import Comparison, Principle
from icai.vote import vote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recovery import git_commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "vote_layout.json"
SETS = {
    "synthetic_orthogonal": "synthetic-orthogonal",
    "synthetic_aligned": "synthetic-aligned",
    "llmbar_natural": "llmbar-natural",
    "llmbar_adversarial": "llmbar-adversarial",
}
N_PAIRS = 8
LAYOUTS: tuple[VoteLayout, ...] = ("rule-first", "rule-last")
PRINCIPLES = (
    "Select the response that tells a story about a cat rather than a dog.",
    "Select the response that recommends the blue t-shirt rather than the green one.",
    "Select the response that recommends lemon ice cream rather than raspberry.",
    "Select the response that names Washington, D.C. as the capital.",
    "Select the response that names a specific destination in the UK.",
    "Select the response that is willing and glad to help.",
    "Select the response that follows the instruction more closely.",
    "Select the response that is more accurate.",
    "Select the response that is more helpful.",
    "Select the response that answers without unnecessary content.",
)
MODEL = "local/smollm2"
CODE = {"for": 1, "against": -1, "abstain": 0, "invalid": 0}


def sample(name: str, seed: int) -> list[Comparison]:
    comparisons = datasets.load(SETS[name])
    keep = sorted(random.Random(f"vote layout {name} {seed}").sample(range(len(comparisons)), min(N_PAIRS, len(comparisons))))
    return [comparisons[i] for i in keep]


def run_cell(name: str, seed: int) -> dict[str, Any]:
    """Both layouts' votes on one (set, seed): value codes (pair x principle), timing and tokens per layout."""
    pairs = sample(name, seed)
    principles = [Principle.from_text(t) for t in PRINCIPLES]
    cell: dict[str, Any] = {"set": name, "seed": seed, "pairs": [c.id for c in pairs], "layouts": {}}
    order = LAYOUTS if seed % 2 == 0 else tuple(reversed(LAYOUTS))  # alternate which layout runs first
    for layout in order:
        llm = get_llm(MODEL, progress=False)  # no response cache: every vote is computed
        started = time.perf_counter()
        table = vote(pairs, principles, llm, mode="logprob", batch_size=RunConfig().vote_batch_size, layout=layout)
        seconds = time.perf_counter() - started
        usage = llm.usage
        values = [[CODE[table[i * len(principles) + j].value] for j in range(len(principles))] for i in range(len(pairs))]
        n_votes = 2 * len(pairs) * len(principles)  # both orders
        cell["layouts"][layout] = {
            "values": values, "seconds": round(seconds, 2), "calls": usage.calls,
            "input_tokens": usage.input_tokens, "reused_tokens": usage.cached_input_tokens,
            "computed_tokens_per_vote": round((usage.input_tokens - usage.cached_input_tokens) / n_votes, 2),
            "votes_per_second": round(n_votes / seconds, 2), "load_after": list(os.getloadavg()),
        }  # fmt: skip
    return cell


def per_pair(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(votes for, decisive votes) per pair, from a (pairs x principles) array of +1/-1/0."""
    return (values == 1).sum(axis=1).astype(float), (values != 0).sum(axis=1).astype(float)


def ratio_ci(num: np.ndarray, den: np.ndarray, seed: int = 0) -> tuple[float, list[float]]:
    """sum(num)/sum(den) and its bootstrap interval over pairs."""
    if den.sum() == 0:
        return float("nan"), [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(2000, len(num)))
    boots = num[idx].sum(axis=1) / np.maximum(den[idx].sum(axis=1), 1)
    return float(num.sum() / den.sum()), [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]


def summarize(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {"all": list(cells)}
    for c in cells:
        groups.setdefault(c["set"], []).append(c)
    out: dict[str, Any] = {}
    for group, members in groups.items():
        row: dict[str, Any] = {"cells": len(members), "pairs": sum(len(c["pairs"]) for c in members)}
        arrays = {lay: np.concatenate([np.array(c["layouts"][lay]["values"]) for c in members]) for lay in LAYOUTS}
        agreements = {}
        for lay in LAYOUTS:
            votes_for, decisive = per_pair(arrays[lay])
            agreement, ci = ratio_ci(votes_for, decisive)
            n_votes = sum(2 * len(c["pairs"]) * len(PRINCIPLES) for c in members)
            computed = sum(c["layouts"][lay]["input_tokens"] - c["layouts"][lay]["reused_tokens"] for c in members)
            seconds = sum(c["layouts"][lay]["seconds"] for c in members)
            row[lay] = {
                "label_agreement": agreement, "label_agreement_ci": ci,
                "decisive_share": float(decisive.sum() / arrays[lay].size),
                "computed_tokens_per_vote": round(computed / n_votes, 2), "votes_per_second": round(n_votes / seconds, 2),
                "pair_principles_per_second": round(n_votes / 2 / seconds, 2),
            }  # fmt: skip
            # per pair: agreement where decisive, else 0.5 (a pair with no decisive vote counts as a coin)
            agreements[lay] = np.where(decisive > 0, votes_for / np.maximum(decisive, 1), 0.5)
        same = (arrays[LAYOUTS[0]] == arrays[LAYOUTS[1]]).mean(axis=1)
        row["same_vote"] = float(same.mean())
        row["same_vote_ci"] = [float(x) for x in bootstrap_ci(same)]
        diff, ci = paired_bootstrap_diff(agreements["rule-last"], agreements["rule-first"], value_range=(-1.0, 1.0))
        row["agreement_diff_per_pair"] = {"mean": float(diff), "ci": [float(ci[0]), float(ci[1])]}
        out[group] = row
    return out


def decide(summary: dict[str, Any]) -> dict[str, Any]:
    pooled = summary["all"]["agreement_diff_per_pair"]["ci"]
    worse_sets = [s for s in SETS if s in summary and summary[s]["agreement_diff_per_pair"]["ci"][1] < 0]
    adopt = pooled[1] >= 0 and not worse_sets
    return {"adopt_rule_last": bool(adopt), "pooled_diff_ci": pooled, "sets_worse_beyond_interval": worse_sets}


def write(out: Path, cells: list[dict[str, Any]], session: dict[str, Any]) -> dict[str, Any]:
    summary = summarize(cells) if cells else {}
    report = {
        "benchmark": "vote_layout", "description": __doc__.split("\n\n")[0],
        "sets": {k: datasets.repo_path(datasets.path(v)) for k, v in SETS.items()}, "n_pairs": N_PAIRS,
        "principles": list(PRINCIPLES), "model": MODEL, "layouts": list(LAYOUTS), "session": session,
        "cells": cells, "summary": summary, "decision": decide(summary) if summary else None,
    }  # fmt: skip
    write_json_atomic(out, report)
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| set | pairs | layout | computed tokens / vote | votes / s | decisive | agreement with labels [95% CI] | same vote as rule-first | agreement difference per pair [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group, row in report["summary"].items():
        for lay in LAYOUTS:
            r = row[lay]
            same = diff = ""
            if lay == "rule-last":
                same = f"{row['same_vote']:.3f} [{row['same_vote_ci'][0]:.3f}, {row['same_vote_ci'][1]:.3f}]"
                d = row["agreement_diff_per_pair"]
                diff = f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
            lines.append(
                f"| {group} | {row['pairs']} | {lay} | {r['computed_tokens_per_vote']:.1f} | {r['votes_per_second']:.2f} | "
                f"{r['decisive_share']:.2f} | {r['label_agreement']:.3f} [{r['label_agreement_ci'][0]:.3f}, "
                f"{r['label_agreement_ci'][1]:.3f}] | {same} | {diff} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    session = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "bench/vote_layout.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(), "load_average_start": list(os.getloadavg()),
    }  # fmt: skip
    cells: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for name in args.sets:
            started = time.perf_counter()
            cells.append(run_cell(name, seed))
            session["load_average_last"] = list(os.getloadavg())
            report = write(args.out, cells, session)
            print(f"{name} seed={seed}: {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    print(markdown(report))
    print(json.dumps(report["decision"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
