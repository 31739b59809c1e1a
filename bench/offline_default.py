"""Which voter the offline default should use, measured on every labelled set in the repository (issue 28).

Variants (the LLM principles are the same in all of them: SmolLM2's small-style proposals, clustered by
MiniLM; what differs is who votes and whether the style principles of `icai.style` join the pool):

| variant | votes on the proposed principles | style principles |
|---|---|---|
| logprob | SmolLM2 log-prob A/B scoring, both orders (the default before issue 28) | no |
| logprob+style | the same | yes, voted exactly |
| embedding | MiniLM cosine similarity (`icai.embed_vote`) | no |
| embedding+style | the same | yes |
| consensus+style | a side only where log-prob and embedding votes pick the same side | yes |
| style | none: the style principles alone | yes |

Every variant selects its constitution with icai's own selection (`icai.select.select`, RunConfig defaults:
greedy, duplicate merging, Benjamini-Hochberg verdicts) on the training pairs, and is scored on the held-out
pairs by the judge that follows its voter: the constitution's own votes on each held-out pair, summed as
selection sums them (`icai.evaluate.predict_from_votes`; a tie or an empty constitution scores 0.5). The
surface baseline (`icai.surface`, a logistic regression on the same features) is shown for reference.

Sizes, the same for every variant (CPU is scarce: 2 cores shared by several jobs): each set is cut to a seeded
sample of `N_PAIRS` pairs (the ICAI synthetic sets have 30, so all of them), split 70/30 per seed
(`icai.split.train_test_split`), and principles are proposed from a seeded sample of `PROPOSE_SAMPLE` training
pairs (`RunConfig.propose_sample`) with the small-model prompts (3 calls per pair). SmolLM2's answers go through
one response cache per set, so the proposals are made once and every variant reuses them.

Direction check: on the ICAI synthetic sets each constitution principle is matched to a hidden rule by its text
and by its training votes (`bench/rules.py`); a rule named backwards counts as wrong, never as recovered.

Decision criterion, declared before any result was seen: the winner is the variant with the highest mean
held-out agreement over the sets (each set weighted equally, each set's agreement pooled over its seeds),
among the variants measured on every set and seed, that is not worse than the previous default (logprob)
beyond the paired 95% bootstrap interval on any set where the previous default was measured.

    nice -n 10 .venv/bin/python bench/offline_default.py --work /tmp/icai-offline --log /tmp/icai-offline.log
    .venv/bin/python bench/offline_default.py --markdown     # the table in docs/benchmarks.md, from the results file

Phases: "cheap" (proposals, embedding and style votes, for every set and seed first) then "logprob" (SmolLM2
votes); each (set, seed) is kept in --work as it finishes, so an interrupted run resumes, and the results file is
rewritten after each one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import pickle
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recovery import git_commit  # noqa: E402
from rules import RULES, text_direction, vote_direction  # noqa: E402

from icai import datasets  # noqa: E402
from icai.cluster import cluster  # noqa: E402
from icai.config import RunConfig  # noqa: E402
from icai.embed import get_embedder  # noqa: E402
from icai.embed_vote import vote_by_embedding  # noqa: E402
from icai.evaluate import agreement_scores, predict_from_votes  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.llm import get_llm  # noqa: E402
from icai.propose import propose  # noqa: E402
from icai.select import select  # noqa: E402
from icai.split import propose_pool, train_test_split  # noqa: E402
from icai.stats import bootstrap_ci, paired_bootstrap_diff  # noqa: E402
from icai.style import style_principles, vote_by_style  # noqa: E402
from icai.surface import agreement as surface_agreement  # noqa: E402
from icai.surface import fit_surface  # noqa: E402
from icai.types import Comparison, Principle, Vote  # noqa: E402
from icai.vote import vote  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "offline_default.json"

SETS: dict[str, str] = {
    "synthetic_orthogonal": "synthetic-orthogonal",
    "synthetic_aligned": "synthetic-aligned",
    "llmbar_natural": "llmbar-natural",
    "llmbar_adversarial": "llmbar-adversarial",
    "evalbiasbench": "evalbiasbench",
}
"""Every labelled set the repository ships (`icai.datasets`; arena-small is made up, so it is left out): bench name
(the ICAI ones as in bench/rules.py) -> dataset name."""

N_PAIRS = 30
PROPOSE_SAMPLE = 5
TEST_SIZE = 0.3
MODEL = "local/smollm2"
TOKEN_BUDGET = 65_536
"""SmolLM2 batching for a CPU other work keeps busy (icai.llm.local.CPU_TOKEN_BUDGET); scores are unchanged."""
VARIANTS = ("logprob", "logprob+style", "embedding", "embedding+style", "consensus+style", "style")
PREVIOUS_DEFAULT = "logprob"


def sample_pairs(name: str) -> list[Comparison]:
    comparisons = datasets.load(SETS[name])
    if len(comparisons) <= N_PAIRS:
        return comparisons
    keep = sorted(random.Random(f"offline-default {name}").sample(range(len(comparisons)), N_PAIRS))
    return [comparisons[i] for i in keep]


# -- one (set, seed) cell -------------------------------------------------------------------------


class Cell:
    """Proposals and votes of one set and seed, kept on disk between phases and restarts."""

    def __init__(self, work: Path, name: str, seed: int) -> None:
        self.path = work / f"{name}-{seed}.pkl"
        self.name, self.seed = name, seed
        self.data: dict[str, Any] = pickle.loads(self.path.read_bytes()) if self.path.exists() else {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(self.data))
        tmp.replace(self.path)


def llm_for(work: Path, name: str) -> Any:
    options = {"token_budget": TOKEN_BUDGET} if MODEL.startswith("local/") else {}
    return get_llm(MODEL, cache_path=work / f"cache-{name}.sqlite", progress=False, **options)


def cheap_phase(cell: Cell, work: Path, embedder: Any) -> None:
    if "embedding" in cell.data:
        return
    comparisons = sample_pairs(cell.name)
    train, test = train_test_split(comparisons, test_size=TEST_SIZE, seed=cell.seed)
    config = RunConfig(seed=cell.seed, propose_sample=PROPOSE_SAMPLE, test_size=TEST_SIZE)
    llm = llm_for(work, cell.name)
    started = time.perf_counter()
    proposals = propose(
        propose_pool(train, config), llm, per_pair=config.proposals_per_pair, seed=cell.seed, style="small",
        samples=config.proposal_samples, fallback=config.propose_fallback, form_from=train,
    )  # fmt: skip
    tested = list(cluster(proposals, embedder, n_clusters=config.n_clusters, seed=cell.seed).representatives)
    propose_s = time.perf_counter() - started
    everything = [*train, *test]
    started = time.perf_counter()
    cell.data.update(
        train=train, test=test, tested=tested, style=style_principles(),
        style_votes=vote_by_style(everything, style_principles()),
        embedding=vote_by_embedding(everything, tested, embedder),
        timing={"propose_s": round(propose_s, 1), "embed_vote_s": round(time.perf_counter() - started, 1),
                "propose_calls": llm.usage.as_dict()["calls"], "load_after_propose": list(os.getloadavg())},
    )  # fmt: skip
    cell.save()


def logprob_phase(cell: Cell, work: Path) -> None:
    if "logprob" in cell.data:
        return
    llm = llm_for(work, cell.name)
    started = time.perf_counter()
    everything = [*cell.data["train"], *cell.data["test"]]
    votes = vote(everything, cell.data["tested"], llm, mode="logprob", batch_size=RunConfig().vote_batch_size)
    cell.data["logprob"] = votes
    cell.data["timing"].update(
        logprob_vote_s=round(time.perf_counter() - started, 1), logprob_calls=llm.usage.as_dict()["calls"],
        load_after_logprob=list(os.getloadavg()),
    )  # fmt: skip
    cell.save()


def consensus(a: Sequence[Vote], b: Sequence[Vote], comparisons: Sequence[Comparison]) -> list[Vote]:
    """A pick where both voters pick the same side of a pair, else "neither" (abstain)."""
    from icai.debias import combine_picks, debiased_pick

    preferred = {c.id: c.preferred for c in comparisons}
    other = {(v.comparison_id, v.principle_id): v for v in b}
    out = []
    for v in a:
        w = other[(v.comparison_id, v.principle_id)]
        pa, pb = debiased_pick(v.picks), debiased_pick(w.picks)
        pick = pa if pa == pb and pa in ("a", "b") else "neither"
        out.append(Vote(v.comparison_id, v.principle_id, combine_picks([pick], preferred[v.comparison_id]), (pick,)))
    return out


def variant_votes(cell: Cell, variant: str) -> tuple[list[Principle], list[Vote]] | None:
    d = cell.data
    voter, _, style = variant.partition("+")
    if voter == "style":
        return list(d["style"]), list(d["style_votes"])
    if voter == "logprob" and "logprob" not in d:
        return None
    if voter == "consensus" and "logprob" not in d:
        return None
    everything = [*d["train"], *d["test"]]
    llm_votes = d[voter] if voter != "consensus" else consensus(d["logprob"], d["embedding"], everything)
    principles, votes = list(d["tested"]), list(llm_votes)
    if style:
        principles += d["style"]
        votes += d["style_votes"]
    return principles, votes


def score_variant(cell: Cell, variant: str) -> dict[str, Any] | None:
    got = variant_votes(cell, variant)
    if got is None:
        return None
    principles, votes = got
    train, test = cell.data["train"], cell.data["test"]
    train_ids = {c.id for c in train}
    defaults = RunConfig()
    constitution, _, selection = select(
        principles, train, [v for v in votes if v.comparison_id in train_ids],
        method=defaults.selection, max_principles=defaults.max_principles, min_votes=defaults.min_votes,
        min_gain=defaults.min_gain, duplicate_agreement=defaults.duplicate_agreement, alpha=defaults.alpha,
    )  # fmt: skip
    ids = [p.id for p in constitution.principles]
    items = agreement_scores(predict_from_votes(ids, votes, test), test) if ids else np.full(len(test), 0.5)
    rows = []
    rules = RULES.get(cell.name)
    for p, s in zip(constitution.principles, constitution.stats, strict=True):
        row: dict[str, Any] = {"text": p.text, "origin": p.origin, "n_for": s.n_for, "n_against": s.n_against,
                               "q_value": s.q_value, "verdict": s.verdict}  # fmt: skip
        if rules:
            tj = text_direction(p.text, rules)
            vj = vote_direction([v for v in votes if v.principle_id == p.id], train, rules, rule=tj.rule)
            row.update(text_rule=tj.rule, text_direction=tj.direction, vote_rule=vj.rule,
                       vote_direction=vj.direction if vj.rule else None)  # fmt: skip
        rows.append(row)
    out: dict[str, Any] = {
        "size": len(ids), "n_significant": sum(r["verdict"] == "significant" for r in rows),
        "n_style": sum(r["origin"] == "surface" for r in rows), "principles": rows,
        "held_out": float(items.mean()), "held_out_items": items.tolist(), "n_merges": len(selection.merges),
    }  # fmt: skip
    if rules:
        right = sorted({r["text_rule"] for r in rows if r.get("text_rule") and r["text_direction"] == 1})
        out.update(recovered=right, n_recovered=len(right), n_rules=len(rules),
                   wrong=sum(r.get("text_direction") == -1 or r.get("vote_direction") == -1 for r in rows))  # fmt: skip
    return out


def surface_items(cell: Cell) -> list[float]:
    train, test = cell.data["train"], cell.data["test"]
    return surface_agreement(fit_surface(train, seed=cell.seed).predict(test), test).tolist()


# -- summary ------------------------------------------------------------------------------------


def summarize(cells: dict[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """Per variant and set: held-out agreement pooled over the set's finished seeds with a bootstrap CI, and the
    paired difference from the previous default; then the decision by the declared criterion.

    A variant counts as measured on a set when it was scored on every finished (set, seed) cell of it; the
    criterion compares the variants measured on every finished cell (`coverage` says which those are).
    """
    per: dict[str, dict[str, Any]] = {}
    done = {name: [s for s in seeds if f"{name}-{s}" in cells] for name in SETS}
    for variant in (*VARIANTS, "surface baseline"):
        per[variant] = {}
        for name in SETS:
            got = [cells[f"{name}-{s}"] for s in done[name]]
            if variant == "surface baseline":
                runs = [{"held_out_items": c["surface_items"]} for c in got]
            else:
                runs = [c["variants"].get(variant) for c in got]
            if not runs or any(r is None for r in runs):
                per[variant][name] = {"complete": False, "seeds_done": sum(r is not None for r in runs), "seeds": []}
                continue
            x = np.concatenate([np.asarray(r["held_out_items"]) for r in runs])
            entry: dict[str, Any] = {"complete": True, "seeds": done[name], "n": int(x.size), "agreement": float(x.mean()),
                                     "ci": list(bootstrap_ci(x, seed=0)),
                                     "per_seed": [float(np.mean(r["held_out_items"])) for r in runs]}  # fmt: skip
            if variant != "surface baseline":
                entry.update(size=float(np.mean([r["size"] for r in runs])),
                             n_significant=float(np.mean([r["n_significant"] for r in runs])),
                             n_style=float(np.mean([r["n_style"] for r in runs])))  # fmt: skip
                if "n_recovered" in runs[0]:
                    entry.update(n_recovered=float(np.mean([r["n_recovered"] for r in runs])), n_rules=runs[0]["n_rules"],
                                 wrong=float(np.mean([r["wrong"] for r in runs])))  # fmt: skip
            entry["_x"] = x
            per[variant][name] = entry
    for variant in (*VARIANTS, "surface baseline"):
        for name in SETS:
            e, ref = per[variant][name], per[PREVIOUS_DEFAULT][name]
            if e.get("complete") and ref.get("complete") and variant != PREVIOUS_DEFAULT:
                mean, ci = paired_bootstrap_diff(e["_x"], ref["_x"], seed=0)
                e["minus_previous_default"] = {"mean": mean, "ci": list(ci)}
    for v in per.values():
        for e in v.values():
            e.pop("_x", None)
    finished = [name for name in SETS if done[name]]
    overall = {}
    for variant in (*VARIANTS, "surface baseline"):
        got = [per[variant][n]["agreement"] for n in finished if per[variant][n].get("complete")]
        overall[variant] = {"sets_complete": len(got), "mean_over_sets": float(np.mean(got)) if got else None}
    eligible = []
    for variant in VARIANTS:
        if not finished or overall[variant]["sets_complete"] < len(finished):
            continue
        worse = [n for n in finished if per[variant][n].get("minus_previous_default", {}).get("ci", [0, 0])[1] < 0]
        overall[variant]["worse_than_previous_default_on"] = worse
        if not worse:
            eligible.append(variant)
    winner = max(eligible, key=lambda v: overall[v]["mean_over_sets"]) if eligible else None
    coverage = {
        "cells_finished": {n: done[n] for n in SETS},
        "complete": all(len(done[n]) == len(seeds) for n in SETS),
        "variants_on_every_finished_cell": [v for v in VARIANTS if finished and overall[v]["sets_complete"] == len(finished)],
    }
    return {"per_set": per, "overall": overall, "winner": winner, "eligible": eligible, "coverage": coverage}


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    names = list(SETS)
    head = "| variant | " + " | ".join(names) + " | mean over sets |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for variant in (*VARIANTS, "surface baseline"):
        cells = []
        for n in names:
            e = s["per_set"][variant][n]
            if not e.get("complete"):
                cells.append(f"({e.get('seeds_done', 0)} of {len(report['seeds'])} seeds)")
                continue
            txt = f"{e['agreement']:.3f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}] (n={e['n']}, seeds {','.join(map(str, e['seeds']))})"
            if "n_recovered" in e:
                txt += f"; rules {e['n_recovered']:.2f}/{e['n_rules']}, wrong {e['wrong']:.2f}"
            if "size" in e:
                txt += f"; size {e['size']:.1f} ({e['n_style']:.1f} style)"
            cells.append(txt)
        o = s["overall"][variant]
        mean = "-" if o["mean_over_sets"] is None else f"{o['mean_over_sets']:.3f}"
        if o["sets_complete"] < len(names):
            mean += f" ({o['sets_complete']} of {len(names)} sets)"
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def write(out: Path, cells: dict[str, Any], seeds: Sequence[int], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    report = {
        "description": __doc__.split("\n\n")[0],
        "criterion": "highest mean held-out agreement over the sets (each pooled over its seeds), among variants measured "
        "on every set and seed, not worse than the previous default (logprob) beyond the paired 95% CI on any set",
        "sets": {k: datasets.repo_path(datasets.path(v)) for k, v in SETS.items()}, "n_pairs": N_PAIRS, "propose_sample": PROPOSE_SAMPLE, "test_size": TEST_SIZE, "model": MODEL,
        "seeds": list(seeds), "variants": list(VARIANTS), "cells": cells, "summary": summarize(cells, seeds),
        "sessions": sessions,
    }  # fmt: skip
    summary = report["summary"]
    report["decision"] = {
        "criterion_winner": summary["winner"],
        "default": summary["winner"] or PREVIOUS_DEFAULT,
        "on_all_sets_and_seeds": summary["coverage"]["complete"],
    }
    write_json_atomic(out, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/icai-offline-default"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--phases", nargs="*", default=["cheap", "logprob"], choices=["cheap", "logprob"],
                        help="none: only rescore what --work holds")
    parser.add_argument("--follow", action="store_true", help="logprob phase: wait for cells another process's cheap phase makes")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--markdown", action="store_true", help="print the table from --out and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args.work.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))
    embedder = get_embedder("minilm")
    session = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "bench/offline_default.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(), "load_average_start": list(os.getloadavg()),
    }  # fmt: skip
    session_file = args.work / f"session-{os.getpid()}.json"
    def record() -> dict[str, Any]:
        """Score every finished cell in --work (another process may be filling the same folder) and rewrite --out."""
        cells: dict[str, Any] = {}
        for name in SETS:
            for seed in seeds:
                cell = Cell(args.work, name, seed)
                if "embedding" not in cell.data:
                    continue
                cells[f"{name}-{seed}"] = {
                    "set": name, "seed": seed, "n_train": len(cell.data["train"]), "n_test": len(cell.data["test"]),
                    "n_tested": len(cell.data["tested"]), "timing": cell.data["timing"], "surface_items": surface_items(cell),
                    "variants": {v: r for v in VARIANTS if (r := score_variant(cell, v)) is not None},
                }  # fmt: skip
        session["load_average_last"] = list(os.getloadavg())
        session["updated"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        write_json_atomic(session_file, session)
        sessions = [json.loads(f.read_text()) for f in sorted(args.work.glob("session-*.json"))]
        return write(args.out, cells, seeds, sessions)

    report = record()
    for phase in args.phases:
        for seed in seeds:
            for name in args.sets:
                cell = Cell(args.work, name, seed)
                while phase == "logprob" and args.follow and "embedding" not in cell.data:
                    time.sleep(30)  # another process's cheap phase has not reached this cell yet
                    cell = Cell(args.work, name, seed)
                started = time.perf_counter()
                if phase == "cheap":
                    cheap_phase(cell, args.work, embedder)
                elif "embedding" in cell.data:
                    logprob_phase(cell, args.work)
                report = record()
                print(f"{phase} {name} seed={seed}: {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}",
                      file=sys.stderr, flush=True)  # fmt: skip
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
