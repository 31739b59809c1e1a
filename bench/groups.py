"""The group-difference test of icai.groups (`icai run --by`): false positives on random splits, power on a planted difference.

Data: LLMBar natural + adversarial (419 pairs, icai/data/llmbar, `icai.datasets`). Annotator: the packaged fake
(`fake/keyword`) voting N_PRINCIPLES principles "mentions '<word>'" for the most common words of the
responses; the votes are made once (both orders, as a run does) and every split reuses them.

- false positives: SPLITS random 50/50 splits of the pairs into groups x / y, the labels untouched, so no
  principle differs between the groups. Reported: the share of tests with permutation p < alpha (about alpha
  expected), the share with BH q < alpha, and the share of splits with any significant principle (BH keeps
  this at or below alpha when nothing differs).
- power: the same random splits, and in group x a planted rule: for the principle PLANTED, a share `effect`
  of its decisive pairs in x are relabelled to the response it picks (its strength rises in x only). Reported
  per effect: the share of splits where that principle is significant (q < alpha), and the share where any
  other principle is.

    .venv/bin/python bench/groups.py            # writes bench/results/groups.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from icai import datasets
from icai.debias import combine_picks
from icai.files import write_json_atomic
from icai.groups import analyse_groups, group_labels
from icai.llm import get_llm
from icai.llm.fake import _words
from icai.types import Comparison, Principle, Vote
from icai.vote import vote

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "groups.json"
N_PRINCIPLES = 12
ALPHA = 0.05
EFFECTS = (0.25, 0.5, 0.75, 1.0)


def load_pairs() -> list[Comparison]:
    pairs: list[Comparison] = []
    for name in ("llmbar-natural", "llmbar-adversarial"):
        pairs += datasets.load(name)
    return pairs


def principles_for(pairs: list[Comparison], n: int) -> list[Principle]:
    """The n words that appear in exactly one response of the most pairs: principles that decide many pairs."""
    counts: Counter[str] = Counter()
    for c in pairs:
        a, b = set(_words(c.text_a)), set(_words(c.text_b))
        counts.update(a ^ b)
    return [Principle.from_text(f"Select the response that mentions '{w}' in its text.") for w, _ in counts.most_common(n)]


def relabel(pairs: list[Comparison], votes: list[Vote], labels: dict[str, str]) -> list[Vote]:
    """The votes re-read against new labels (the picks stay; only which side is preferred changes)."""
    by_id = {c.id: c for c in pairs}
    out = []
    for v in votes:
        preferred = labels.get(v.comparison_id, by_id[v.comparison_id].preferred)
        out.append(Vote(v.comparison_id, v.principle_id, combine_picks(v.picks, preferred), v.picks))  # type: ignore[arg-type]
    return out


def split(pairs: list[Comparison], rng: np.random.Generator) -> list[Comparison]:
    halves = rng.permutation(len(pairs)) < len(pairs) // 2
    return [Comparison(c.id, c.text_a, c.text_b, c.preferred, c.prompt, {"half": "x" if h else "y"}) for c, h in zip(pairs, halves, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    pairs = load_pairs()
    principles = principles_for(pairs, N_PRINCIPLES)
    votes = vote(pairs, principles, get_llm("fake/keyword"), batch_size=40)
    ids = [p.id for p in principles]
    decisive = Counter(v.principle_id for v in votes if v.value in ("for", "against"))
    planted = max(ids, key=lambda pid: decisive[pid])
    rng = np.random.default_rng(0)

    n_tests = n_p = n_q = splits_any = 0
    power: dict[float, dict[str, int]] = {e: {"planted": 0, "others": 0} for e in EFFECTS}
    for s in range(args.splits):
        grouped = split(pairs, rng)
        grouping = group_labels(grouped, "half")
        null = analyse_groups(principles, grouped, votes, grouping, alpha=ALPHA, n_permutations=args.permutations, seed=s)
        tested = [t for t in null.tests if t.tested]
        n_tests += len(tested)
        n_p += sum(t.p_value is not None and t.p_value < ALPHA for t in tested)
        n_q += sum(t.significant for t in tested)
        splits_any += any(t.significant for t in tested)
        in_x = [c for c in grouped if c.metadata["half"] == "x"]
        pick = {v.comparison_id: v for v in votes if v.principle_id == planted and v.value in ("for", "against")}
        for effect in EFFECTS:
            # relabel a share `effect` of the planted principle's decisive pairs in x to the side it picks
            candidates = [c for c in in_x if c.id in pick]
            chosen = rng.choice(len(candidates), size=int(round(effect * len(candidates))), replace=False)
            labels = {}
            for k in chosen:
                c = candidates[int(k)]
                v = pick[c.id]
                labels[c.id] = c.preferred if v.value == "for" else c.rejected
            shifted = relabel(grouped, votes, labels)
            relabelled = [Comparison(c.id, c.text_a, c.text_b, labels.get(c.id, c.preferred), c.prompt, c.metadata) for c in grouped]  # type: ignore[arg-type]
            found = analyse_groups(principles, relabelled, shifted, grouping, alpha=ALPHA, n_permutations=args.permutations, seed=s)
            power[effect]["planted"] += any(t.significant for t in found.tests if t.principle_id == planted)
            power[effect]["others"] += any(t.significant for t in found.tests if t.principle_id != planted)
    by_id = {p.id: p for p in principles}
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "bench/groups.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": "icai/data/llmbar/natural.csv + adversarial.csv",
        "n_pairs": len(pairs),
        "annotator": "fake/keyword",
        "principles": [p.text for p in principles],
        "n_splits": args.splits,
        "n_permutations": args.permutations,
        "alpha": ALPHA,
        "false_positives": {
            "n_tests": n_tests,
            "share_p_below_alpha": n_p / n_tests,
            "share_q_below_alpha": n_q / n_tests,
            "share_splits_with_any_significant": splits_any / args.splits,
        },
        "power": {
            "planted_principle": by_id[planted].text,
            "planted_decisive_pairs": decisive[planted],
            "by_effect": {
                str(e): {
                    "share_splits_planted_significant": power[e]["planted"] / args.splits,
                    "share_splits_other_significant": power[e]["others"] / args.splits,
                }
                for e in EFFECTS
            },
        },
        "wall_s": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(args.out, result)
    print(json.dumps({k: result[k] for k in ("false_positives", "power", "wall_s")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
