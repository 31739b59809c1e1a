"""Every results file and bench script that README.md or docs/*.md cite exists, with the keys the docs rely on.

A citation is a path `bench/results/<name>.json`, optionally followed by `#a.b.c`: the key path
the text takes its number from (list items by index), which must then exist in the file.
`REQUIRED_KEYS` lists the keys each results file must hold for the sections that cite it.
"""

from __future__ import annotations

import json
import os
import re
import sys
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


# --- generated blocks: a docs table that is made from code or a results file is checked against it --------------

WRITE_DOCS = os.environ.get("ICAI_WRITE_DOCS") == "1"
"""ICAI_WRITE_DOCS=1 pytest tests/test_docs.py rewrites the generated blocks instead of failing on a difference."""


def generated_block(text: str, name: str, body: str) -> str:
    """`text` with the block between `<!-- NAME: ... -->` and `<!-- NAME: end -->` replaced by `body`."""
    pattern = re.compile(rf"(<!-- {re.escape(name)}: (?!end)[^\n]*-->\n)(.*?)(<!-- {re.escape(name)}: end -->)", re.S)
    found = pattern.search(text)
    assert found, f"no <!-- {name}: ... --> block"
    return text[: found.start(2)] + body + text[found.end(2) :]


def check_generated(path: Path, name: str, body: str) -> None:
    text = path.read_text(encoding="utf-8")
    wanted = generated_block(text, name, body)
    if WRITE_DOCS and text != wanted:
        path.write_text(wanted, encoding="utf-8")
        return
    assert text == wanted, f"{path.name}: the {name} block differs from what it is generated from; run ICAI_WRITE_DOCS=1 pytest {Path(__file__).name}"


def export_formats_table() -> str:
    from icai.export import EXPORT_FORMATS

    rows = ["| `--format` | file in an `--out` folder | reads beside constitution.json | what |", "|---|---|---|---|"]
    for f in EXPORT_FORMATS.values():
        reads = ", ".join(f"`{t}`" for t in f.tables) or "nothing"
        rows.append(f"| `{f.name}` | `{f.file_name}` | {reads} | {f.help} |")
    return "\n".join(rows) + "\n"


def test_the_readme_lists_every_export_format_as_the_table_says() -> None:
    from icai.export import EXPORT_FORMATS

    check_generated(ROOT / "README.md", "export-formats", export_formats_table())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"--format {'|'.join(EXPORT_FORMATS)}" in readme  # the quick-start line names them all, in order


def test_the_benchmarks_headline_table_is_what_the_results_files_give() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from docs_tables import headline_table
    finally:
        sys.path.remove(str(ROOT / "bench"))
    table = headline_table()
    check_generated(ROOT / "docs" / "benchmarks.md", "headline-numbers", table)
    assert 4 <= table.count("\n") - 2 <= 8  # a short table


def test_a_generated_block_that_differs_is_caught() -> None:
    text = "a\n<!-- t: made by x -->\nold\n<!-- t: end -->\nb\n"
    assert generated_block(text, "t", "new\n") == "a\n<!-- t: made by x -->\nnew\n<!-- t: end -->\nb\n"
    assert generated_block(text, "t", "old\n") == text


def _data_values(node: Any) -> list[str]:
    """Every string under a "data" key, at any depth."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "data" and isinstance(v, str)]
        return found + [x for v in node.values() for x in _data_values(v)]
    if isinstance(node, list):
        return [x for v in node for x in _data_values(v)]
    return []


def test_results_files_name_their_data_by_a_repository_path() -> None:
    absolute = {
        str(path.relative_to(ROOT)): value
        for path in sorted((ROOT / "bench" / "results").rglob("*.json"))
        for value in _data_values(json.loads(path.read_text(encoding="utf-8")))
        if value.startswith(("/", "~", "..")) or ":\\" in value
    }
    assert absolute == {}
