"""Run the fake-annotator pipeline, `icai test` and every export format, then compare two such snapshots.

Used to show that a refactoring changes no output: make a snapshot with one checkout of the code and one
with another, then compare them byte for byte.

    PYTHONPATH=/path/to/old python bench/same_outputs.py snap /tmp/old
    PYTHONPATH=$PWD          python bench/same_outputs.py snap /tmp/new
    python bench/same_outputs.py diff /tmp/old /tmp/new

What legitimately differs between two snapshots, and is normalised before comparing:
- run.log: each line's timestamp, and the absolute run directory in "wrote report to ...";
- report.html / compare report: the run directory's absolute path where it is printed;
- cache.sqlite: compared as its sorted rows without the `created` time column (the file's pages depend
  on write timing), not as bytes; the schema version (PRAGMA user_version) is not compared;
- the annotated-pairs export: its `created_at` time;
- run.lock: the process id of the run that held it.
The CLI's printed output is compared after replacing the run directory path. Nothing else is normalised.
"""

from __future__ import annotations

import difflib
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this checkout's copies (icai.datasets is not imported: PYTHONPATH may name an older checkout without it)
DATA = ROOT / "icai" / "data" / "icai_synthetic" / "synthetic_data_orthogonal_adcbg.csv"
ARENA = ROOT / "icai" / "data" / "arena_small" / "arena_small.csv"
FAKE = ["--model", "fake/keyword", "--embedder", "hash"]
PRINCIPLES = (
    "Select the response that mentions 'cat' in its text.\n"
    "Select the response that mentions 'blue' in its text.\n"
    "Select the response that is shorter.\n"
)
EXPORTS = {
    "annotated-pairs": "annotated_pairs.json",
    "prompt": "prompt.txt",
    "promptfoo": "promptfoo.yaml",
    "inspect": "inspect_scorer.py",
    "pairwise-prompt": "pairwise.json",
    "pairwise-inspect": "pairwise_task.py",
    "pairwise-promptfoo": "pairwise_promptfoo.yaml",
    "reward-weights": "reward.json",
}


def _icai(*args: str, cwd: Path) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "icai", *args], cwd=cwd, env=env, capture_output=True, text=True)
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"


def snap(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=False)
    (out / "principles.txt").write_text(PRINCIPLES, encoding="utf-8")
    printed = {}
    printed["run"] = _icai("run", str(DATA), *FAKE, "--out", "run", "--test-size", "0.3", cwd=out)
    printed["test"] = _icai("test", str(DATA), *FAKE, "--principles", "principles.txt", "--out", "test", "--test-size", "0.3", cwd=out)
    printed["groups"] = _icai(
        "run", str(ARENA), *FAKE, "--out", "groups", "--by", "model_a", "--per-group-constitution", "--target", "model:alpha", cwd=out
    )
    printed["compare"] = _icai("compare", "run", "groups", "--out", "compare", "--yes", cwd=out)
    printed["report"] = _icai("report", "run", cwd=out)
    (out / "exports").mkdir()
    for fmt, name in EXPORTS.items():
        printed[f"export-{fmt}"] = _icai("export", "run/constitution.json", "--format", fmt, "--out", f"exports/{name}", cwd=out)
    for key, text in printed.items():
        (out / f"printed-{key}.txt").write_text(text, encoding="utf-8")


def _normalised(path: Path, root: Path) -> list[str]:
    if path.suffix == ".sqlite":
        with sqlite3.connect(path) as db:
            lines = []
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
                columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})") if c[1] != "created"]
                for row in sorted(db.execute(f"SELECT {', '.join(columns)} FROM {table}"), key=repr):
                    lines.append(f"{table}: {row!r}\n")
            return lines
    text = path.read_bytes().decode("utf-8", errors="replace")
    text = text.replace(str(root.resolve()), "<SNAP>").replace(str(root), "<SNAP>")
    if path.name == "run.log":
        text = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "<TIME> ", text, flags=re.M)
    if path.name == "annotated_pairs.json":
        text = re.sub(r'"created_at": "[^"]*"', '"created_at": "<TIME>"', text)
    if path.name == "run.lock":
        text = "<PID>"
    return text.splitlines(keepends=True)


def diff(old: Path, new: Path) -> int:
    old_files = {p.relative_to(old) for p in old.rglob("*") if p.is_file()}
    new_files = {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    problems = 0
    for missing in sorted(old_files ^ new_files):
        print(f"only in {'old' if missing in old_files else 'new'}: {missing}")
        problems += 1
    for rel in sorted(old_files & new_files):
        a, b = _normalised(old / rel, old), _normalised(new / rel, new)
        if a != b:
            problems += 1
            print(f"DIFFERS: {rel}")
            sys.stdout.writelines(list(difflib.unified_diff(a, b, f"old/{rel}", f"new/{rel}", n=1))[:60])
    print(f"{len(old_files & new_files)} files compared, {problems} differ or are missing")
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["snap"] and len(sys.argv) == 3:
        snap(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["diff"] and len(sys.argv) == 4:
        sys.exit(diff(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
