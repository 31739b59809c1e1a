"""Form hints on data nobody tuned to: which surface features separate the pairs, and what SmolLM2 proposes.

Run: .venv/bin/python bench/form_hints.py [--data PATH] [--pairs 10] [--seed 0] [--threads 1]

For each dataset: the surface baseline's cross-validated accuracy on all its
pairs and its largest weights (`icai.surface`, no model calls), the form
features that separate preferred from rejected responses on all pairs and on a
seeded slice of `--pairs` pairs, and the small-style proposals the packaged
SmolLM2-135M writes for that slice (`icai.propose.propose(style="small")`,
3 samples per pair; the last is the form prompt where the pair shows a feature
that separates all pairs, as `icai run --propose-sample` does with the training set). It records what is proposed and from which hint, not
whether a rule is right. Writes bench/results/form_hints.json.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ("evalbiasbench", "llmbar-natural")
"""Shipped sets (`icai.datasets`) the benchmark reads when no --data is given."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="dataset (repeatable; default: evalbiasbench, llmbar natural)")
    parser.add_argument("--pairs", type=int, default=10, help="pairs in the slice SmolLM2 proposes from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is faster on a loaded 2-core machine)")
    parser.add_argument("--no-model", action="store_true", help="surface statistics only; no SmolLM2 proposals")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "form_hints.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from icai import datasets
    from icai.files import write_json_atomic
    from icai.io import load_comparisons
    from icai.propose import propose, small_plan
    from icai.surface import agreement, cross_val_picks, fit_surface, separating_features

    llm = None
    tmp = tempfile.TemporaryDirectory()
    if not args.no_model:
        import torch

        from icai.llm import get_llm

        torch.set_num_threads(args.threads)
        llm = get_llm("local/smollm2", cache_path=Path(tmp.name) / "cache.sqlite", progress=False)

    results: list[dict[str, Any]] = []
    for path in args.data or [datasets.path(name) for name in DEFAULT_DATA]:
        pairs = load_comparisons(path)
        start = time.perf_counter()
        cv = cross_val_picks(pairs, seed=args.seed)
        weights = sorted(fit_surface(pairs, seed=args.seed).weights().items(), key=lambda kv: -abs(kv[1]))
        chosen = sorted(random.Random(args.seed).sample(range(len(pairs)), min(args.pairs, len(pairs))))
        slice_ = [pairs[i] for i in chosen]
        _, forms = small_plan(slice_, form_from=pairs)
        entry: dict[str, Any] = {
            "data": datasets.repo_path(path),
            "n_pairs": len(pairs),
            "surface_cv_accuracy": None if cv is None else float(agreement(cv, pairs).mean()),
            "surface_top_weights": {k: round(v, 3) for k, v in weights[:5]},
            "separating_all_pairs": [_signal(s) for s in separating_features(pairs)],
            "slice_ids": [c.id for c in slice_],
            "separating_slice": [_signal(s) for s in separating_features(slice_)],
            "slice_form_hints": {c.id: f.hint for c, f in zip(slice_, forms, strict=True) if f is not None},
        }
        if llm is not None:
            calls = llm.usage.calls
            principles = propose(slice_, llm, style="small", samples=3, seed=args.seed, form_from=pairs)
            entry["model_calls"] = llm.usage.calls - calls
            entry["proposals"] = [
                {"text": p.text, "origin": p.origin, "hint": p.hint, "source_ids": list(p.source_ids)} for p in principles
            ]
            entry["form_rules"] = [p.text for p in principles if p.hint.startswith("form:")]
        entry["seconds"] = round(time.perf_counter() - start, 1)
        results.append(entry)
        print(_summary(entry))
    tmp.cleanup()
    write_json_atomic(
        args.out,
        {
            "command": "bench/form_hints.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": f"{platform.machine()}, {platform.python_version()}",
            "model": None if llm is None else llm.model,
            "seed": args.seed,
            "datasets": results,
        },
    )
    print(f"wrote {args.out}")
    return 0


def _signal(s: Any) -> dict[str, Any]:
    return {"hint": s.hint, "phrase": s.phrase, "n_agree": s.n_agree, "n_differ": s.n_differ, "wilson_low": round(s.low, 3)}


def _summary(entry: dict[str, Any]) -> str:
    lines = [
        f"{entry['data']}: {entry['n_pairs']} pairs, surface baseline cross-validated accuracy "
        f"{entry['surface_cv_accuracy']:.3f}, top weights {entry['surface_top_weights']}",
        f"  separating (all pairs): {[s['hint'] for s in entry['separating_all_pairs']]}",
        f"  separating (slice of {len(entry['slice_ids'])}): {[s['hint'] for s in entry['separating_slice']]}",
    ]
    for p in entry.get("proposals", []):
        lines.append(f"  [{p['origin']} | {p['hint']}] {p['text']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
