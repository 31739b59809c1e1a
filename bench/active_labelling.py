"""Labels needed with icai's choice of the next pair (icai.active) against a random order (issue 30).

A simulated labeller answers from the labels of a labelled set. Per set, annotator and seed:

1. Split the pairs: 70% pool (the pairs a person would label), 30% held out (seeded).
2. Label-free principles from the pool (`icai.propose.propose_unlabelled`: each difference in both
   directions), clustered (hash embedder), joined by the style principles (`icai.style`, both directions,
   voted by counting) as `icai label` does, and voted on every pool and held-out pair, once.
   No label is read here.
3. Label the pool one pair at a time, in two orders: active (`icai.active.next_pair`, 20% of choices
   at random, as `icai label` does) and random (a seeded permutation). After each label the constitution
   is selected from the labelled pairs' votes exactly as a run selects it (`select_ids_as_configured`:
   greedy, 5 principles) and scored on the held-out pairs (the sign of its principles' summed votes
   against the label; undecided pairs score 0.5, as `icai.evaluate.agreement_scores` does).
4. Labels needed: the smallest n from which the held-out agreement stays within TOLERANCE (2 points)
   of the agreement of the constitution learnt from all pool labels, for every later n. Also given:
   the first n that comes within 2 points (`first_hit`).

A cell (set, annotator, seed) where the all-labels constitution is not above 0.5 + TOLERANCE held out
needs 0 labels in both orders and has no ratio: it is counted as "not informative", not averaged in.
`labels_ratio_active_vs_random` is the median over the informative cells of labels(active) / labels(random).

Annotators: `fake` is the packaged fake/keyword (rules about words one response uses; votes by
word presence); `simulated` is bench/calls.py's SimulatedAnnotator (a hidden world of latent
principles with known relevance and agreement) taught the label-free proposal prompt here.
No model, no network: the whole benchmark runs offline.

    nice -n 10 .venv/bin/python bench/active_labelling.py     # writes bench/results/active_labelling.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calls import PARAPHRASES, TRAITS, SimulatedAnnotator, _rules  # noqa: E402
from recovery import git_commit  # noqa: E402

import icai.datasets as datasets  # noqa: E402
from icai.active import next_pair, side_matrix  # noqa: E402
from icai.cluster import cluster  # noqa: E402
from icai.config import RunConfig  # noqa: E402
from icai.embed import get_embedder  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.llm.base import Completion, Request  # noqa: E402
from icai.llm.client import LLM  # noqa: E402
from icai.llm.fake import fake_provider  # noqa: E402
from icai.pipeline import with_style_principles  # noqa: E402
from icai.propose import propose_unlabelled  # noqa: E402
from icai.select import VoteMatrix, select_ids_as_configured  # noqa: E402
from icai.split import train_test_split  # noqa: E402
from icai.stats import bootstrap_ci  # noqa: E402
from icai.types import Comparison  # noqa: E402
from icai.vote import vote  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "active_labelling.json"
SETS = ("llmbar-natural", "llmbar-adversarial", "synthetic-orthogonal", "synthetic-aligned", "evalbiasbench")
ANNOTATORS = ("fake", "simulated")
TOLERANCE = 0.02
TEST_SIZE = 0.3
RANDOM_SHARE = 0.2
STRATEGY = "eig"
NEGATION = "Select the response that does not do this: {t}."


class LabelFreeSimulator(SimulatedAnnotator):
    """SimulatedAnnotator that also answers label-free proposals, and votes on the opposite of each latent rule.

    For a label-free pair it names latent principles that decide the pair (seeded choice; one in five
    replaced by a random latent, as its labelled proposals are unfaithful too), each as the rule for the
    side it picks and `NEGATION` of it for the other side.
    """

    def __init__(self, comparisons: Sequence[Comparison], *, seed: int = 0) -> None:
        super().__init__(comparisons, seed=seed)
        self.negated = {NEGATION.format(t=t): j for j, t in enumerate(TRAITS)}

    def complete(self, request: Request) -> Completion:
        prompt = request.prompt_text
        if "Nobody has said which one is better" not in prompt:
            return super().complete(request)
        rng = random.Random(f"{self.seed}\n{prompt}")
        i, swapped = self._pair(prompt)
        found = re.search(r"Write (\d+) ways", prompt)
        n = int(found.group(1)) if found else 3
        deciding = [j for j in range(len(TRAITS)) if self.truth[i, j] != 0]
        chosen = rng.sample(deciding, min(n, len(deciding)))
        if chosen and rng.random() < 0.2:
            chosen[-1] = rng.randrange(len(TRAITS))
        out = []
        for j in dict.fromkeys(chosen):
            has, lacks = rng.choice(PARAPHRASES).format(t=TRAITS[j]), NEGATION.format(t=TRAITS[j])
            shown = self._shown_side(self.side(i, j), swapped)
            out.append({"a": has, "b": lacks} if shown != "B" else {"a": lacks, "b": has})
        text = json.dumps({"differences": out})
        return Completion(text, input_tokens=len(prompt) // 4, output_tokens=len(text) // 4)

    def _vote(self, prompt: str, rng: random.Random) -> str:
        i, swapped = self._pair(prompt)
        rules = _rules(prompt, after="Rules:")
        answer = {}
        for n, rule in enumerate(rules, start=1):
            if rule in self.negated:
                side = self.side(i, self.negated[rule])
                c = self.comparisons[i]
                side = None if side is None else (c.rejected if side == c.preferred else c.preferred)
            else:
                side = self.side(i, self.latent_of.get(rule))
            answer[str(n)] = self._noisy(self._shown_side(side, swapped), len(rules), rng)
        return json.dumps(answer)


def prepare(name: str, annotator: str, seed: int, embedder: Any, config: RunConfig) -> dict[str, Any]:
    """Split, label-free proposals on the pool, clustering, and votes on every pair: the only model calls."""
    comparisons = datasets.load(name)
    pool, test = train_test_split(comparisons, test_size=TEST_SIZE, seed=seed)
    provider = fake_provider("keyword") if annotator == "fake" else LabelFreeSimulator(comparisons, seed=seed)
    llm = LLM(provider, progress=False)
    hidden = [c.with_preferred("a") for c in pool]  # the proposer never sees a label
    proposals = propose_unlabelled(hidden, llm, per_pair=config.proposals_per_pair, seed=seed)
    tested = list(cluster(proposals, embedder, n_clusters=config.n_clusters, seed=seed).representatives) if proposals else []
    if config.style_principles:  # as icai label does (prepare_labelling): the style features in both directions
        _, tested = with_style_principles([], tested)
    everything = [c.with_preferred("a") for c in [*pool, *test]]
    votes = vote(everything, tested, llm, batch_size=config.vote_batch_size) if tested else []
    ids = [p.id for p in tested]
    return {
        "pool": pool,
        "test": test,
        "principle_ids": ids,
        "pool_sides": side_matrix([c.id for c in pool], ids, votes),
        "test_sides": side_matrix([c.id for c in test], ids, votes),
        "calls": llm.usage.as_dict()["calls"],
    }


def _labels(pairs: Sequence[Comparison]) -> np.ndarray:
    return np.array([1 if c.preferred == "a" else -1 for c in pairs], dtype=np.int8)


def held_out_agreement(ids: Sequence[str], chosen: Sequence[str], test_sides: np.ndarray, test_labels: np.ndarray) -> float:
    """The constitution-following prediction from the votes (sign of the summed sides) scored against the labels."""
    if len(test_labels) == 0:
        return float("nan")
    cols = [ids.index(c) for c in chosen]
    total = test_sides[:, cols].sum(axis=1) if cols else np.zeros(len(test_labels))
    pred = np.sign(total)
    return float(np.where(pred == 0, 0.5, (pred == test_labels).astype(float)).mean())


def curve(order_kind: str, prep: dict[str, Any], config: RunConfig, seed: int) -> tuple[list[float], list[int]]:
    """Held-out agreement after 0, 1, ..., n_pool labels in the given order, and the order itself."""
    ids, sides, test_sides = prep["principle_ids"], prep["pool_sides"], prep["test_sides"]
    truth, test_labels = _labels(prep["pool"]), _labels(prep["test"])
    n = len(truth)
    labels = np.zeros(n, dtype=np.int8)
    permutation = np.random.default_rng(seed).permutation(n).tolist()
    order: list[int] = []
    scores = [held_out_agreement(ids, [], test_sides, test_labels)]
    for step in range(n):
        if order_kind == "active":
            choice = next_pair(
                sides, labels, k=config.max_principles, random_share=RANDOM_SHARE, seed=seed * 100_003 + step, strategy=STRATEGY
            )
            assert choice is not None
            row = choice.index
        else:
            row = permutation[step]
        labels[row] = truth[row]
        order.append(row)
        labelled = np.flatnonzero(labels)
        m = VoteMatrix.from_directions(ids, sides[labelled] * labels[labelled][:, None])
        chosen = select_ids_as_configured(config, m) if ids else []
        scores.append(held_out_agreement(ids, chosen, test_sides, test_labels))
    return scores, order


def labels_needed(scores: Sequence[float], target: float, *, tolerance: float = TOLERANCE) -> tuple[int, int]:
    """(smallest n from which every later score is within `tolerance` of `target`, first n within it)."""
    ok = [s >= target - tolerance - 1e-12 for s in scores]
    first = next(i for i, good in enumerate(ok) if good)
    stays = len(ok) - 1
    while stays > 0 and ok[stays - 1]:
        stays -= 1
    return stays, first


def run_cell(name: str, annotator: str, seed: int, embedder: Any, config: RunConfig) -> dict[str, Any]:
    started = time.perf_counter()
    prep = prepare(name, annotator, seed, embedder, config)
    active, active_order = curve("active", prep, config, seed)
    rand, _ = curve("random", prep, config, seed)
    full = active[-1]
    assert abs(full - rand[-1]) < 1e-9, "all labels give the same constitution in either order"
    a_stays, a_first = labels_needed(active, full)
    r_stays, r_first = labels_needed(rand, full)
    informative = full > 0.5 + TOLERANCE
    return {
        "set": name,
        "annotator": annotator,
        "seed": seed,
        "n_pool": len(prep["pool"]),
        "n_test": len(prep["test"]),
        "n_tested_principles": len(prep["principle_ids"]),
        "model_calls_before_labelling": prep["calls"],
        "full_agreement": full,
        "informative": informative,
        "labels_active": a_stays,
        "labels_random": r_stays,
        "first_hit_active": a_first,
        "first_hit_random": r_first,
        "ratio": a_stays / r_stays if informative and r_stays > 0 else None,
        "curve_active": [round(x, 4) for x in active],
        "curve_random": [round(x, 4) for x in rand],
        "seconds": round(time.perf_counter() - started, 2),
    }


def _mean_ci(values: Sequence[float], seed: int) -> dict[str, Any]:
    if not values:
        return {"mean": None, "ci": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(arr, seed=seed) if len(arr) > 1 else (float(arr[0]), float(arr[0]))
    return {"mean": float(arr.mean()), "ci": [float(lo), float(hi)], "n": len(arr)}


def _median_ci(values: Sequence[float], seed: int, n_resamples: int = 2000) -> dict[str, Any]:
    if not values:
        return {"median": None, "ci": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(arr, size=(n_resamples, len(arr)), replace=True), axis=1)
    return {"median": float(np.median(arr)), "ci": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))], "n": len(arr)}


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for name in dict.fromkeys(c["set"] for c in cells):
        for annotator in dict.fromkeys(c["annotator"] for c in cells):
            group = [c for c in cells if c["set"] == name and c["annotator"] == annotator]
            if not group:
                continue
            useful = [c for c in group if c["ratio"] is not None]
            rows.append(
                {
                    "set": name,
                    "data": datasets.repo_path(datasets.path(name)),
                    "annotator": annotator,
                    "seeds": len(group),
                    "informative_seeds": len(useful),
                    "n_pool": group[0]["n_pool"],
                    "n_test": group[0]["n_test"],
                    "full_agreement": _mean_ci([c["full_agreement"] for c in group], 0),
                    "labels_active": _mean_ci([c["labels_active"] for c in useful], 0),
                    "labels_random": _mean_ci([c["labels_random"] for c in useful], 0),
                    "first_hit_active": _mean_ci([c["first_hit_active"] for c in useful], 0),
                    "first_hit_random": _mean_ci([c["first_hit_random"] for c in useful], 0),
                    "ratio": _median_ci([c["ratio"] for c in useful], 0),
                }
            )
    ratios = [c["ratio"] for c in cells if c["ratio"] is not None]
    first = [c["first_hit_active"] / c["first_hit_random"] for c in cells if c["ratio"] is not None and c["first_hit_random"] > 0]
    by_annotator = {
        a: _median_ci([c["ratio"] for c in cells if c["annotator"] == a and c["ratio"] is not None], 0)
        for a in dict.fromkeys(c["annotator"] for c in cells)
    }
    overall = _median_ci(ratios, 0)
    return {
        "labels_ratio_active_vs_random": overall["median"],
        "labels_ratio_ci": overall["ci"],
        "informative_cells": len(ratios),
        "cells_total": len(cells),
        "first_hit_ratio_median": float(np.median(first)) if first else None,
        "ratio_by_annotator": by_annotator,
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=datasets.names())
    parser.add_argument("--annotators", nargs="+", default=list(ANNOTATORS), choices=ANNOTATORS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--strategy", choices=("eig", "disagreement"), default=STRATEGY)
    args = parser.parse_args(argv)
    globals()["STRATEGY"] = args.strategy
    config = RunConfig(model="fake/keyword", embedder="hash")
    embedder = get_embedder("hash")
    started = time.perf_counter()
    cells = []
    for name in args.sets:
        for annotator in args.annotators:
            for seed in range(args.seeds):
                cell = run_cell(name, annotator, seed, embedder, config)
                cells.append(cell)
                print(
                    f"{name:22s} {annotator:9s} seed {seed}: full {cell['full_agreement']:.3f}  labels active "
                    f"{cell['labels_active']:4d}  random {cell['labels_random']:4d}  ratio {cell['ratio']}  ({cell['seconds']}s)",
                    flush=True,
                )
    result = {
        "benchmark": "active_labelling",
        "issue": 30,
        "command": "nice -n 10 .venv/bin/python bench/active_labelling.py " + " ".join(argv or sys.argv[1:]),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_end": list(os.getloadavg())},
        "wall_s": round(time.perf_counter() - started, 1),
        "settings": {
            "sets": args.sets,
            "annotators": list(args.annotators),
            "seeds": args.seeds,
            "test_size": TEST_SIZE,
            "tolerance": TOLERANCE,
            "random_share": RANDOM_SHARE,
            "strategy": STRATEGY,
            "embedder": "hash",
            "selection": config.selection,
            "max_principles": config.max_principles,
            "n_clusters": config.n_clusters,
            "proposals_per_pair": config.proposals_per_pair,
            "style_principles": config.style_principles,
            "labels_needed": "smallest n from which held-out agreement stays within tolerance of the all-labels constitution's",
        },
        **summarise(cells),
        "cells": cells,
    }
    write_json_atomic(Path(args.out), result)
    print(
        f"labels_ratio_active_vs_random = {result['labels_ratio_active_vs_random']} (CI {result['labels_ratio_ci']}, "
        f"{result['informative_cells']} of {result['cells_total']} cells informative); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
