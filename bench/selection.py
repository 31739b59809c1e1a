"""Greedy selection vs the strength top 5 on LLMBar adversarial, with bench/calls.py's SimulatedAnnotator (issue 14).

For each seed (its own split and hidden world), one pipeline run per selection method
(`RunConfig.selection`), 30% held out. Reported per run and pooled over seeds:

- the constitution's size, and the knee of the held-out principle-count curve
  (`Evaluation.curve`: principles in greedy forward-selection order on the training votes, each
  prefix scored on held-out votes). The knee is the smallest k whose held-out agreement is within
  KNEE_TOLERANCE of the curve's maximum;
- held-out agreement of the constitution-following judge with a 95% bootstrap CI, the same judge
  without a constitution, and the paired difference greedy - strength;
- the simulator's true score r x (2a - 1) of each chosen principle (how good it really is), and
  the significance verdicts.

    .venv/bin/python bench/selection.py        # writes bench/results/selection.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calls import SimulatedAnnotator, load_dataset  # noqa: E402
from recovery import git_commit, selection_metadata, verdict_of  # noqa: E402

from icai.config import RunConfig  # noqa: E402
from icai.embed import get_embedder  # noqa: E402
from icai.evaluate import agreement_scores, judge  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.llm.cache import ResponseCache  # noqa: E402
from icai.llm.client import LLM  # noqa: E402
from icai.pipeline import run  # noqa: E402
from icai.stats import bootstrap_ci, paired_bootstrap_diff  # noqa: E402
from icai.store import RunStore  # noqa: E402
from icai.types import Constitution  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "selection.json"
KNEE_TOLERANCE = 0.01
METHODS = ("greedy", "strength")


def knee(curve: Sequence[float], *, tolerance: float = KNEE_TOLERANCE) -> int | None:
    """The smallest k (1-based) whose value is within `tolerance` of the curve's maximum; None for an empty curve."""
    if not curve:
        return None
    best = max(curve)
    return next(k for k, a in enumerate(curve, start=1) if a >= best - tolerance)


def run_one(dataset: str, seed: int, method: str, embedder: Any) -> dict[str, Any]:
    comparisons = load_dataset(dataset)
    if "selection" not in {f.name for f in dataclasses.fields(RunConfig)}:
        raise SystemExit("this icai has no RunConfig.selection yet; merge main first")
    sim = SimulatedAnnotator(comparisons, seed=seed)
    config = RunConfig(model=sim.model, embedder=embedder.name, vote_mode="generate", test_size=0.3, seed=seed, selection=method)  # type: ignore[call-arg]
    with tempfile.TemporaryDirectory(prefix="icai-selection-") as tmp:
        store = RunStore(tmp)
        llm = LLM(sim, cache=ResponseCache(store.cache_path), progress=False)
        started = time.perf_counter()
        result = run(comparisons, llm=llm, embedder=embedder, config=config, store=store)
        wall = time.perf_counter() - started
        calls = llm.usage.as_dict()["calls"]
        saved = json.loads((Path(tmp) / "constitution.json").read_text())
        test = list(result.test)
        with_c = agreement_scores(judge(test, llm, principles=result.constitution.texts), test)
        without = agreement_scores(judge(test, llm), test)
    constitution = Constitution.from_dict(saved)
    ev = result.evaluation
    assert ev is not None
    curve = list(ev.curve.agreement) if ev.curve else []
    rows = saved["principles"]
    latent = [sim.latent_of.get(t) for t in constitution.texts]
    c = ev.score_for("constitution")
    return {
        "dataset": dataset, "seed": seed, "selection": method, "n_train": len(result.train), "n_test": len(test),
        "n_tested": len(result.tested), "size": len(constitution), "constitution": constitution.texts,
        "verdicts": [verdict_of(r)[0] for r in rows], "verdict_source": sorted({verdict_of(r)[1] for r in rows}),
        "true_scores": [round(sim.score(j), 3) if j is not None else None for j in latent],
        "curve_held_out": curve, "curve_knee": knee(curve), "curve_argmax": (int(np.argmax(curve)) + 1) if curve else None,
        "held_out": {"agreement": c.agreement, "ci": list(c.ci)} if c else None,
        "held_out_items": {"constitution": with_c.tolist(), "default": without.tolist()},
        "selection_metadata": selection_metadata(dict(constitution.metadata)),
        "calls": calls, "wall_s": round(wall, 1),
    }  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    x = np.concatenate([np.asarray(r["held_out_items"]["constitution"]) for r in rows])
    y = np.concatenate([np.asarray(r["held_out_items"]["default"]) for r in rows])
    d, dci = paired_bootstrap_diff(x, y)
    true = [s for r in rows for s in r["true_scores"] if s is not None]
    return {
        "seeds": [r["seed"] for r in rows],
        "size": float(np.mean([r["size"] for r in rows])),
        "sizes": [r["size"] for r in rows],
        "curve_knee": float(np.mean([r["curve_knee"] for r in rows if r["curve_knee"] is not None])),
        "curve_knees": [r["curve_knee"] for r in rows],
        "n_significant": float(np.mean([sum(v == "significant" for v in r["verdicts"]) for r in rows])),
        "mean_true_score": float(np.mean(true)) if true else None,
        "harmful_principles": sum(s <= 0 for s in true),
        "held_out": {"agreement": float(x.mean()), "ci": list(bootstrap_ci(x)), "n": int(x.size)},
        "vs_no_constitution": {"mean": d, "ci": list(dci)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="llmbar_adversarial")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    embedder = get_embedder(args.embedder)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for seed in range(args.seeds):
        for method in METHODS:
            row = run_one(args.dataset, seed, method, embedder)
            rows[method].append(row)
            print(f"seed={seed} {method}: size {row['size']}, knee {row['curve_knee']}, held-out {row['held_out']['agreement']:.3f}, "
                  f"verdicts {row['verdicts']}, {row['wall_s']} s", file=sys.stderr, flush=True)  # fmt: skip
    summary = {m: summarize(r) for m, r in rows.items()}
    g = np.concatenate([np.asarray(r["held_out_items"]["constitution"]) for r in rows["greedy"]])
    s = np.concatenate([np.asarray(r["held_out_items"]["constitution"]) for r in rows["strength"]])
    mean, ci = paired_bootstrap_diff(g, s)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.platform()}",
        "command": "bench/selection.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(),
        "dataset": args.dataset, "annotator": "SimulatedAnnotator (bench/calls.py)", "embedder": args.embedder,
        "knee_tolerance": KNEE_TOLERANCE,
        "summary": summary,
        "greedy_minus_strength": {"mean": mean, "ci": list(ci), "n": int(g.size)},
        "runs": rows,
    }  # fmt: skip
    write_json_atomic(args.out, report)
    print("| selection | seeds | size (per seed) | curve knee (per seed) | significant | mean true score | held-out agreement [95% CI] | vs no constitution [95% CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for m, v in summary.items():
        h, d = v["held_out"], v["vs_no_constitution"]
        print(f"| {m} | {len(v['seeds'])} | {v['size']:.1f} ({', '.join(map(str, v['sizes']))}) | {v['curve_knee']:.1f} ({', '.join(map(str, v['curve_knees']))}) "
              f"| {v['n_significant']:.1f} | {v['mean_true_score']:.3f} | {h['agreement']:.3f} [{h['ci'][0]:.3f}, {h['ci'][1]:.3f}] "
              f"| {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] |")  # fmt: skip
    print(f"\ngreedy - strength: {mean:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] (n = {g.size} held-out pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
