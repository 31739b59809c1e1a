"""The numbers of `make demo`, from one run of exactly its command (issue 14).

Runs `icai run <DEMO_DATA> --out <dir> --test-size 0.3` through `icai.cli.main` (the Makefile's
`demo` target, same data file, default options: SmolLM2-135M and MiniLM, offline) and records what
docs/benchmarks.md cites: the constitution's texts, origins, verdicts, q-values and statistics,
held-out scores with CIs, stability and selection metadata, calls and tokens, wall time.

    .venv/bin/python bench/demo.py             # writes bench/results/demo.json (about 3-6 min on 2 cores)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recovery import git_commit, selection_metadata, verdict_of  # noqa: E402
from rules import ORTHOGONAL, text_direction  # noqa: E402

from icai import datasets  # noqa: E402
from icai.cli import main as icai_main  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "demo.json"
DEMO_DATA = datasets.path("synthetic-orthogonal")
"""As the Makefile's DEMO_DATA."""


def demo_report(run_dir: Path, *, wall_s: float, command: list[str], stdout: str) -> dict[str, Any]:
    """What the docs cite, read back from a finished run directory."""
    constitution = json.loads((run_dir / "constitution.json").read_text())
    evaluation_path = run_dir / "evaluation.json"
    evaluation = json.loads(evaluation_path.read_text()) if evaluation_path.exists() else None
    principles = []
    for row in constitution["principles"]:
        s = row.get("stats") or {}
        verdict, source = verdict_of(row)
        tj = text_direction(row["text"], ORTHOGONAL)
        principles.append({
            "rank": row["rank"], "text": row["text"], "origin": row.get("origin"), "verdict": verdict,
            "verdict_source": source, "q_value": s.get("q_value"), "p_value": s.get("p_value"),
            "n_for": s.get("n_for"), "n_against": s.get("n_against"), "agreement": s.get("agreement"),
            "agreement_ci": s.get("agreement_ci"), "strength": s.get("strength"),
            "hidden_rule_by_text": tj.rule, "direction_by_text": tj.direction,
        })  # fmt: skip
    scores = {s["name"]: {"agreement": s["agreement"], "ci": s["ci"], "n": s["n"]} for s in (evaluation or {}).get("scores", [])}
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "icai " + " ".join(command),
        "commit": git_commit(),
        "wall_s": round(wall_s, 1),
        "model": constitution.get("model"),
        "embedder": constitution.get("embedder"),
        "n_train": constitution.get("n_train"),
        "n_test": constitution.get("n_test"),
        "n_candidates": constitution.get("n_candidates"),
        "n_tested": constitution.get("n_tested"),
        "candidate_origins": constitution.get("candidate_origins"),
        "usage": constitution.get("usage"),
        "principles": principles,
        "held_out": scores,
        "differences": (evaluation or {}).get("differences"),
        "curve": (evaluation or {}).get("curve"),
        "selection": selection_metadata(constitution),
        "stdout": stdout,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--commit", help="record this commit instead of the checkout's (icai imported from elsewhere)")
    parser.add_argument(
        "--warm-cache", type=Path, default=None,
        help="start from a copy of this response cache (e.g. bench/recovery.py's local seed-0 cache); the wall time is then not a cold run's",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="icai-demo-") as tmp:
        run_dir = Path(tmp) / "demo"
        if args.warm_cache is not None:
            run_dir.mkdir()
            with sqlite3.connect(args.warm_cache) as src, sqlite3.connect(run_dir / "cache.sqlite") as dst:
                src.backup(dst)
        command = ["run", str(DEMO_DATA), "--out", str(run_dir), "--test-size", "0.3"]
        buffer = io.StringIO()
        load_at_start = list(os.getloadavg())
        started = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            rc = icai_main(command)
        wall = time.perf_counter() - started
        sys.stdout.write(buffer.getvalue())
        if rc != 0:
            print(f"icai run exited with {rc}", file=sys.stderr)
            return rc
        data = datasets.repo_path(DEMO_DATA)
        shown = ["run", data, "--out", "runs/demo", "--test-size", "0.3"]  # as the Makefile writes it
        report = demo_report(run_dir, wall_s=wall, command=shown, stdout=buffer.getvalue())
        report["response_cache"] = f"warm: a copy of {args.warm_cache}" if args.warm_cache else "cold (empty)"
        # the machine is shared: the load average says how much of it this run had
        report["load_average_at_start"], report["load_average_at_end"] = load_at_start, list(os.getloadavg())
        report["icai_imported_from"] = str(Path(icai_main.__code__.co_filename).parent)
        if args.commit:
            report["commit"] = args.commit
        log_path = run_dir / "run.log"
        if log_path.exists():  # the progress lines (stage k/N, ETA) the run logged
            report["progress_log"] = [line for line in log_path.read_text().splitlines() if "icai.progress" in line]
    write_json_atomic(args.out, report)
    print(f"wrote {args.out} ({report['wall_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
