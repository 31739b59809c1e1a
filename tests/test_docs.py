"""Every results file and bench script that README.md or docs/*.md cite exists, with the keys the docs rely on.

A citation is a path `bench/results/<name>.json`, optionally followed by `#a.b.c`: the key path
the text takes its number from (list items by index), which must then exist in the file.
`REQUIRED_KEYS` lists the keys each results file must hold for the sections that cite it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULT = re.compile(r"bench/results/([\w.\-]+\.json)(?:#([\w.\-]+))?")
SCRIPT = re.compile(r"\bbench/([\w\-]+\.py)\b")

REQUIRED_KEYS: dict[str, list[str]] = {
    "recovery.json": ["summary", "runs", "sessions", "oracle_check", "rules"],
    "selection.json": ["date", "machine", "command", "summary.greedy", "summary.strength", "greedy_minus_strength", "runs"],
    "demo.json": ["date", "machine", "command", "wall_s", "principles", "held_out", "usage", "selection"],
    "groups.json": [
        "date", "machine", "command", "n_splits", "false_positives.share_p_below_alpha",
        "false_positives.share_splits_with_any_significant", "power.by_effect",
    ],
}


def citations(pattern: re.Pattern[str]) -> list[tuple[str, re.Match[str]]]:
    return [(doc.name, m) for doc in DOCS if doc.exists() for m in pattern.finditer(doc.read_text(encoding="utf-8"))]


def lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, list) and part.lstrip("-").isdigit():
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(part)
    return data


def test_the_docs_cite_results_at_all() -> None:
    assert citations(RESULT), "README.md and docs/*.md cite no bench/results file; did the pattern break?"


@pytest.mark.parametrize(("doc", "match"), citations(RESULT), ids=lambda x: x if isinstance(x, str) else x.group(0))
def test_cited_results_file_exists_with_the_cited_key(doc: str, match: re.Match[str]) -> None:
    name, key = match.group(1), match.group(2)
    path = ROOT / "bench" / "results" / name
    assert path.exists(), f"{doc} cites {match.group(0)}, which does not exist"
    data = json.loads(path.read_text(encoding="utf-8"))
    if key:
        try:
            lookup(data, key)
        except (KeyError, IndexError):
            pytest.fail(f"{doc} cites {match.group(0)}, but {name} has no key {key!r}")
    for required in REQUIRED_KEYS.get(name, []):
        try:
            lookup(data, required)
        except (KeyError, IndexError):
            pytest.fail(f"{doc} cites {name}, which lacks the key {required!r} the docs rely on")


@pytest.mark.parametrize(("doc", "match"), citations(SCRIPT), ids=lambda x: x if isinstance(x, str) else x.group(0))
def test_cited_bench_script_exists(doc: str, match: re.Match[str]) -> None:
    assert (ROOT / "bench" / match.group(1)).exists(), f"{doc} cites {match.group(0)}, which does not exist"


def test_a_dangling_citation_is_caught(tmp_path: Path) -> None:
    text = "see `bench/results/no_such_file.json#summary.x` and `bench/results/calls.json`"
    found = [m.group(1) for m in RESULT.finditer(text)]
    assert found == ["no_such_file.json", "calls.json"]
    assert not (ROOT / "bench" / "results" / "no_such_file.json").exists()
    with pytest.raises(KeyError):
        lookup({"summary": {"y": 1}}, "summary.x")
    assert lookup({"a": [{"b": 2}]}, "a.0.b") == 2
