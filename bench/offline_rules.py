"""Offline default on the orthogonal synthetic set: are the three hidden rules recovered, per vote tier?

Run: .venv/bin/python bench/offline_rules.py [--n-clusters 20] [--threads 1]

Runs `icai.pipeline.run` three times with the packaged SmolLM2-135M and MiniLM,
changing only how principles are voted on:

- llm:       the default (log-prob A/B votes by SmolLM2 on every pair x principle);
- embedding: `vote_mode="embedding"` (cosine similarity only, no LLM votes);
- cascade:   `cascade=True` (the embedder skips clearly irrelevant items, SmolLM2 votes the rest).

Proposals (small-model style, chosen automatically for local models) are made
once; the later tiers reuse them through the shared response cache, as they do
the LLM votes the cascade keeps. A hidden rule counts as recovered when one of
the top 5 principles matches its keyword pattern. Agreement is the share of
pairs whose human label the constitution reconstructs from that tier's votes
(`predict_from_votes`; abstentions score 0.5), on all pairs (there is no held-out
split: the set has 30 pairs). Prints a markdown summary and writes
bench/results/offline_rules.json.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from icai import datasets

ROOT = Path(__file__).resolve().parents[1]
DATA = datasets.path("synthetic-orthogonal")

RULES: dict[str, re.Pattern[str]] = {
    "cat>dog": re.compile(r"\b(cats?|dogs?|felines?|kittens?)\b", re.IGNORECASE),
    "blue>green": re.compile(r"\b(blue|green)\b", re.IGNORECASE),
    "lemon>raspberry": re.compile(r"\b(lemons?|raspberr(?:y|ies)|citrus)\b", re.IGNORECASE),
}

TIERS: dict[str, dict[str, Any]] = {
    "llm": {},
    "embedding": {"vote_mode": "embedding"},
    "cascade": {"cascade": True},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-clusters", type=int, default=20)
    parser.add_argument("--tiers", default=",".join(TIERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is much faster on a loaded 2-core machine)")
    parser.add_argument("--cache", type=Path, default=None, help="response cache (default: a fresh temporary file)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "offline_rules.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "transformers", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from icai.config import RunConfig
    from icai.embed import get_embedder
    from icai.evaluate import agreement_scores, predict_from_votes
    from icai.files import write_json_atomic
    from icai.io import load_comparisons
    from icai.llm import get_llm
    from icai.pipeline import run

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    comparisons = load_comparisons(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "cache.sqlite"
        llm = get_llm("local/smollm2", cache_path=cache, progress=False)
        embedder = get_embedder("minilm")
        tiers: dict[str, Any] = {}
        for name in args.tiers.split(","):
            config = RunConfig(n_clusters=args.n_clusters, seed=args.seed, **TIERS[name])
            calls_before, hits_before = llm.usage.calls, llm.usage.cache_hits
            t0 = time.perf_counter()
            result = run(comparisons, llm=llm, embedder=embedder, config=config)
            seconds = time.perf_counter() - t0
            constitution = result.constitution
            ids = [p.id for p in constitution.principles]
            agreement = float(agreement_scores(predict_from_votes(ids, result.votes, comparisons), comparisons).mean())
            top = []
            for p in constitution.principles[:5]:
                s = constitution.stats_for(p.id)
                top.append(
                    {
                        "text": p.text,
                        "origin": p.origin,
                        "rules": [r for r, pattern in RULES.items() if pattern.search(p.text)],
                        "agreement": s.agreement if s else None,
                        "relevance": s.relevance if s else None,
                        "n_for": s.n_for if s else None,
                        "n_against": s.n_against if s else None,
                    }
                )
            recovered = {r: next((t["origin"] for t in top if r in t["rules"]), None) for r in RULES}
            tiers[name] = {
                "seconds": round(seconds, 1),
                "llm_calls": llm.usage.calls - calls_before,
                "llm_cache_hits": llm.usage.cache_hits - hits_before,
                "n_candidates": len(result.candidates),
                "candidate_origins": constitution.metadata.get("candidate_origins"),
                "n_tested": len(result.tested),
                "recovered": recovered,
                "n_recovered": sum(v is not None for v in recovered.values()),
                "agreement": round(agreement, 4),
                "cascade": constitution.metadata.get("cascade"),
                "constitution": top,
                "candidates": [{"text": p.text, "origin": p.origin, "n_sources": len(p.source_ids)} for p in result.candidates],
            }
    total = time.perf_counter() - start
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python bench/offline_rules.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": datasets.repo_path(args.data),
        "n_pairs": len(comparisons),
        "n_clusters": args.n_clusters,
        "seed": args.seed,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {platform.system()}, torch {torch.__version__}",
        "total_seconds": round(total, 1),
        "tiers": tiers,
    }
    write_json_atomic(args.out, report)
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['n_pairs']} pairs, n_clusters={report['n_clusters']}, seed={report['seed']}, {report['threads']} torch thread(s), "
        f"total {report['total_seconds']:.0f} s",
        "",
        "| tier | rules in top 5 | cat>dog | blue>green | lemon>raspberry | agreement | skip rate | LLM calls | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in report["tiers"].items():
        cells = [t["recovered"][r] or "-" for r in RULES]
        skip = f"{t['cascade']['skip_rate']:.0%}" if t.get("cascade") else "-"
        lines.append(
            f"| {name} | {t['n_recovered']}/3 | {' | '.join(cells)} | {t['agreement']:.3f} | {skip} | "
            f"{t['llm_calls']} (+{t['llm_cache_hits']} cached) | {t['seconds']:.0f} |"
        )
    for name, t in report["tiers"].items():
        lines += ["", f"{name}: top 5 ({t['n_candidates']} candidates, origins {t['candidate_origins']})"]
        for i, p in enumerate(t["constitution"], start=1):
            lines.append(
                f"{i}. [{p['origin']}] {p['text']} (agreement {p['agreement']:.2f}, relevance {p['relevance']:.2f})"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
