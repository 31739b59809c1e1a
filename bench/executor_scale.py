"""Voting throughput by executor: this process (threads) vs a local Ray cluster with 1 and 2 workers.

Run: .venv/bin/python bench/executor_scale.py [--pairs N] [--models fake,local]

Two annotators vote the same pairs and principles with `icai.vote.vote`:
- "fake": `fake/keyword` with a fixed delay per call standing in for an API round trip
  (generated JSON, 5 rules per call, 4 threads per process);
- "local": the packaged SmolLM2 (log-prob votes; batched scoring, prefix reuse).
Every setting starts without a response cache and with models already loaded (Ray
actors are built and warmed before the clock starts), so the numbers are voting
work only. Each setting's votes are checked equal to the in-process votes.
Writes bench/results/executor_scale.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icai import datasets
from icai.executor import Executor, LocalExecutor
from icai.files import write_json_atomic
from icai.io import load_comparisons
from icai.llm import Request, get_llm
from icai.ray_executor import RayExecutor
from icai.types import Comparison, Principle, Vote
from icai.vote import VoteMode, vote

ROOT = Path(__file__).resolve().parents[1]
DATA = {
    # the fake is fast: the 319 LLMBar adversarial pairs; SmolLM2: the 30 synthetic pairs
    "fake": datasets.path("llmbar-adversarial"),
    "local": datasets.path("synthetic-orthogonal"),
}

PRINCIPLES = [
    "Select the response that mentions 'cat' in its text.",
    "Select the response that mentions 'blue' in its text.",
    "Select the response that mentions 'lemon' in its text.",
    "Select the response that is about a cat rather than a dog.",
    "Select the response that recommends the blue t-shirt rather than the green one.",
    "Select the response that recommends lemon ice cream.",
    "Select the response that uses more exclamation marks.",
    "Select the response that is written in a more formal tone.",
    "Select the response that is shorter.",
    "Select the response that gives a concrete example.",
]

# model -> (spec, extra provider options, vote mode, threads per process)
MODELS: dict[str, tuple[str, dict[str, Any], VoteMode, int]] = {
    "fake": ("fake/keyword", {"delay": 0.05}, "generate", 4),
    "local": ("local/smollm2", {}, "logprob", 1),
}


def timed_vote(
    spec: str, options: dict[str, Any], mode: VoteMode, threads: int, executor: Executor,
    pairs: Sequence[Comparison], principles: Sequence[Principle], shard_size: int,
) -> tuple[list[Vote], float, int]:
    llm = get_llm(spec, progress=False, executor=executor, concurrency=threads, shard_size=shard_size, **options)
    if isinstance(executor, RayExecutor):
        assert llm.recipe is not None
        executor.actors(llm.recipe)  # every worker built and its model loaded before timing
    else:
        llm.provider.complete(Request.chat("Hi", max_tokens=1))  # load the model before timing
    start = time.perf_counter()
    votes = vote(pairs, principles, llm, mode=mode, batch_size=5)
    return votes, time.perf_counter() - start, llm.usage.calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="first N pairs of each model's data (default: all)")
    parser.add_argument("--models", default="fake,local")
    parser.add_argument("--shard-size", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "executor_scale.json")
    args = parser.parse_args(argv)

    import ray

    principles = [Principle.from_text(t) for t in PRINCIPLES]
    rows: list[dict[str, Any]] = []
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        for model in args.models.split(","):
            spec, options, mode, threads = MODELS[model]
            pairs = load_comparisons(DATA[model])[: args.pairs]
            reference: list[Vote] | None = None
            for label, workers in (("local", None), ("ray", 1), ("ray", 2)):
                executor: Executor = LocalExecutor() if workers is None else RayExecutor(workers=workers)
                try:
                    votes, seconds, calls = timed_vote(spec, options, mode, threads, executor, pairs, principles, args.shard_size)
                finally:
                    executor.close()
                reference = votes if reference is None else reference
                row = {
                    "model": spec,
                    "data": datasets.repo_path(DATA[model]),
                    "vote_mode": mode,
                    "executor": label,
                    "workers": workers,
                    "threads_per_process": threads,
                    "pairs": len(pairs),
                    "principles": len(principles),
                    "calls": calls,
                    "seconds": seconds,
                    "pairs_per_s": len(pairs) / seconds,
                    "pairs_principles_per_s": len(pairs) * len(principles) / seconds,
                    "votes_equal_to_local": votes == reference,
                    # a different torch thread count changes float sums: count what that moved
                    "values_differing": sum(v.value != r.value for v, r in zip(votes, reference, strict=True)),
                    "margins_differing": sum(v.raw != r.raw for v, r in zip(votes, reference, strict=True)),
                }
                rows.append(row)
                print(f"{spec} {label} workers={workers}: {seconds:.1f} s, {row['pairs_per_s']:.2f} pairs/s", file=sys.stderr)
    finally:
        ray.shutdown()

    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/executor_scale.py", *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "ray": ray.__version__,
        "shard_size": args.shard_size,
        "rows": rows,
    }
    write_json_atomic(args.out, report)
    print("| annotator | executor | workers | calls | wall s | pairs/s | pairs·principles/s | vote values differing | raw margins differing |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} ({r['vote_mode']}) | {r['executor']} | {r['workers'] or '-'} | {r['calls']} "
            f"| {r['seconds']:.1f} | {r['pairs_per_s']:.2f} | {r['pairs_principles_per_s']:.1f} "
            f"| {r['values_differing']}/{r['pairs'] * r['principles']} | {r['margins_differing']} |"
        )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
