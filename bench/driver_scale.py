"""The driver at scale: `icai test` and `icai run` on generated pairs with the packaged fake annotator.

Run: nice -n 10 .venv/bin/python bench/driver_scale.py [--pairs 10000,100000,1000000] [--commands test,run]
     [--executors local,ray] [--out bench/results/driver_scale.json]

The fake annotator (`fake/keyword`) answers in microseconds, so what is measured is icai's own work on
one driver: prompts, the response cache, parsing, the vote table, statistics, selection with its
bootstrap, votes.csv and the report. Each setting runs as a fresh `icai` process in a new run
directory (no cache) under /usr/bin/time-like accounting: wall seconds and the peak resident memory
of the process and its children (`resource.getrusage(RUSAGE_CHILDREN)`), with the load average before
and after, since the machine may be shared. Pairs are generated (`generate_pairs`): a prompt and two
~40-word responses from a 400-word vocabulary; the label prefers the response with more of the first
five principles' words (ties: a seeded coin). The 40 principles are "mentions '<word>'" rules the fake
can decide. `icai run` proposes from a 200-pair sample (`--propose-sample 200`), clusters into 40 and
votes those on every pair.

Writes bench/results/driver_scale.json (`rows`: pairs, command, executor, seconds, peak_rss_mb, ...).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recovery import git_commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "driver_scale.json"
N_PRINCIPLES = 40
RESPONSE_WORDS = 40
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su", "da", "fo")


def vocabulary(size: int = 400, seed: int = 7) -> list[str]:
    """`size` made-up three-syllable words, sorted (none is a stopword of the fake annotator)."""
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), size=3)))
    return sorted(words)


def principles(n: int = N_PRINCIPLES) -> list[str]:
    """The principles tested: one "mentions '<word>'" rule per word of the vocabulary's first `n`."""
    return [f"Select the response that mentions '{w}' in its text." for w in vocabulary()[:n]]


def generate_pairs(n: int, path: str | Path, *, seed: int = 0, chunk: int = 50_000) -> Path:
    """Write `n` generated pairs as ICAI CSV (id, prompt, text_a, text_b, preferred_text) to `path`; deterministic."""
    vocab = np.array(vocabulary())
    key_ids = np.arange(5)  # the first five principles' words decide the label
    rng = np.random.default_rng(seed)
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "prompt", "text_a", "text_b", "preferred_text"])
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            a = rng.integers(0, len(vocab), size=(m, RESPONSE_WORDS))
            b = rng.integers(0, len(vocab), size=(m, RESPONSE_WORDS))
            q = rng.integers(0, len(vocab), size=(m, 8))
            coin = rng.random(m) < 0.5
            # how many of the five label words each response mentions
            score_a = sum((a == k).any(axis=1).astype(int) for k in key_ids)
            score_b = sum((b == k).any(axis=1).astype(int) for k in key_ids)
            prefer_a = np.where(score_a != score_b, score_a > score_b, coin)
            words_a, words_b, words_q = vocab[a].tolist(), vocab[b].tolist(), vocab[q].tolist()
            writer.writerows(
                (
                    f"p{start + i}",
                    "Question: " + " ".join(words_q[i]),
                    " ".join(words_a[i]),
                    " ".join(words_b[i]),
                    "text_a" if prefer_a[i] else "text_b",
                )
                for i in range(m)
            )
    return path


def _icai(args: list[str], *, env: dict[str, str]) -> tuple[float, float, float, int]:
    """Run `python -m icai ARGS` as a child; (wall seconds, peak RSS MB, CPU seconds of it and its children, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "icai", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = after.ru_maxrss
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
    # ru_maxrss of children is the largest of any reaped descendant so far: main() runs each setting in its own
    # bench process (--one), so it is that setting's icai process (Ray's worker processes are not counted: the
    # driver's peak is what this benchmark is about)
    return seconds, peak / 1024, cpu, proc.returncode


def measure(pairs: int, command: str, executor: str, work: Path) -> dict[str, Any]:
    data = work / f"pairs_{pairs}.csv"
    if not data.exists():
        generate_pairs(pairs, data)
    rules = work / "principles.txt"
    rules.write_text("\n".join(principles()) + "\n", encoding="utf-8")
    out = work / f"run_{command}_{executor}_{pairs}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: an old one of the same data would resume from its cache
    args = [command, str(data), "--model", "fake/keyword", "--out", str(out)]
    if command == "test":
        args += ["--principles", str(rules)]
    else:
        args += ["--embedder", "hash", "--propose-sample", "200", "--n-clusters", str(N_PRINCIPLES)]
    if executor == "ray":
        args += ["--executor", "ray"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    load_before = os.getloadavg()
    seconds, peak_mb, cpu, code = _icai(args, env=env)
    load_after = os.getloadavg()
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()} if out.exists() else {}
    columns = out / "votes.columns"
    if columns.is_dir():
        sizes["votes.columns"] = sum(p.stat().st_size for p in columns.iterdir())
    return {
        "pairs": pairs,
        "principles": N_PRINCIPLES,
        "votes": pairs * N_PRINCIPLES,
        "command": command,
        "executor": executor,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "exit_code": code,
        "commit": git_commit(),  # rows measured by different code can be told apart
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "file_bytes": sizes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="10000,100000")
    parser.add_argument("--commands", default="test,run")
    parser.add_argument("--executors", default="local,ray")
    parser.add_argument("--work", default=None, help="folder for generated data and run directories (default: a temp dir)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--one", action="store_true", help="measure one setting in this process's only child and print its row")
    args = parser.parse_args()
    sizes = [int(x) for x in args.pairs.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="icai-driver-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    if out.exists() and not args.one:
        import json

        rows = [r for r in json.loads(out.read_text(encoding="utf-8")).get("rows", [])]
    for pairs in sizes:
        for command in args.commands.split(","):
            for executor in args.executors.split(","):
                if args.one:
                    row = measure(pairs, command, executor, work)
                else:
                    # one bench child per setting, so ru_maxrss of its children is that setting's peak
                    proc = subprocess.run(
                        [sys.executable, __file__, "--one", "--pairs", str(pairs), "--commands", command,
                         "--executors", executor, "--work", str(work), "--out", os.devnull],
                        capture_output=True, text=True,
                    )  # fmt: skip
                    import json

                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                    if not lines:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        continue
                    row = json.loads(lines[-1])
                rows = [r for r in rows if (r["pairs"], r["command"], r["executor"]) != (pairs, command, executor)]
                rows.append(row)
                rows.sort(key=lambda r: (r["command"], r["executor"], r["pairs"]))
                if args.one:
                    import json

                    print(json.dumps(row))
                else:
                    print(f"{pairs:>9,} pairs  icai {command:<4} {executor:<5} {row['seconds']:>8.1f} s  {row['peak_rss_mb']:>7.0f} MB  load {row['load_before'][0]:.1f}", flush=True)
                    _write(out, rows)
    return 0


def _write(out: Path, rows: list[dict[str, Any]]) -> None:
    from icai.files import write_json_atomic

    write_json_atomic(
        out,
        {
            "benchmark": "bench/driver_scale.py",
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "annotator": "fake/keyword",
            "note": "wall time and peak RSS of one `icai` process per row; load averages before and after each row "
            "(the machine may be shared: compare rows only at similar load)",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
