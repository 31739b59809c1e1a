"""icai.datasets: every shipped set loads by name from any folder, with the rows its file holds; the
repository reads no data from outside itself."""

from __future__ import annotations

import csv
import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

import icai
from icai import datasets
from icai.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "synthetic-orthogonal": 30,
    "synthetic-aligned": 30,
    "synthetic-annotated-pairs": 1,
    "llmbar-natural": 100,
    "llmbar-adversarial": 319,
    "evalbiasbench": 80,
    "arena-small": 160,
}


def _rows_in_file(path: Path) -> int:
    """The records of a file, read without icai: CSV rows, or an AnnotatedPairs file's comparisons."""
    if path.suffix == ".json":
        return len(json.loads(path.read_text(encoding="utf-8"))["comparisons"])
    with path.open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.DictReader(f))


def test_names_are_the_shipped_sets() -> None:
    assert datasets.names() == list(EXPECTED)
    assert icai.datasets is datasets and "datasets" in icai.__all__


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_set_loads_with_the_rows_of_its_file(name: str) -> None:
    path = datasets.path(name)
    assert path.is_file() and path.is_relative_to(ROOT / "icai" / "data")
    pairs = datasets.load(name)
    assert len(pairs) == _rows_in_file(path) == EXPECTED[name] == datasets.info(name).rows
    assert all(c.preferred in ("a", "b") and c.text_a and c.text_b for c in pairs)
    assert len({c.id for c in pairs}) == len(pairs)


@pytest.mark.parametrize("folder", sorted({Path(d.file).parts[0] for d in datasets.DATASETS.values()}))
def test_every_set_has_its_source_and_licence(folder: str) -> None:
    readme = (datasets.DATA_DIR / folder / "README.md").read_text(encoding="utf-8")
    assert re.search(r"Licence: \*{0,2}[A-Za-z]", readme), f"{folder}/README.md names no licence"
    if folder != "arena_small":  # made up here, under the project's own licence
        assert "Source: https://github.com/" in readme and "commit" in readme
        assert (datasets.DATA_DIR / folder / "LICENSE").read_text(encoding="utf-8").strip()


def test_data_readme_lists_every_set_with_its_rows() -> None:
    table = (datasets.DATA_DIR / "README.md").read_text(encoding="utf-8")
    for name, rows in EXPECTED.items():
        file = datasets.info(name).file
        assert re.search(rf"^\| `{re.escape(name)}` \| `{re.escape(file)}` \| {rows} \|", table, re.M), name


def test_every_data_file_is_declared_package_data() -> None:
    """`pip install` ships what the checkout has: each file under icai/data matches a package-data glob."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["icai"]

    def declared(relative: PurePosixPath) -> bool:
        return any(
            len(g.split("/")) == len(relative.parts) and all(map(fnmatch.fnmatchcase, relative.parts, g.split("/")))
            for g in globs
        )

    files = [PurePosixPath(p.relative_to(ROOT / "icai").as_posix()) for p in datasets.DATA_DIR.rglob("*") if p.is_file()]
    assert len(files) >= len(EXPECTED) + 5  # the sets, their READMEs and licences
    assert [str(f) for f in files if not declared(f)] == []


def test_unknown_name_is_one_sentence_listing_the_known_ones() -> None:
    with pytest.raises(DataError) as info:
        datasets.load("llmbar")
    message = str(info.value)
    assert message == (
        "unknown dataset 'llmbar'; the shipped sets are: synthetic-orthogonal, synthetic-aligned, "
        "synthetic-annotated-pairs, llmbar-natural, llmbar-adversarial, evalbiasbench, arena-small"
    )
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        datasets.path("nope")


def test_loads_from_another_working_directory(tmp_path: Path) -> None:
    code = "import icai; print(len(icai.datasets.load('llmbar-natural')), icai.datasets.path('arena-small').is_file())"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["100", "True"]


def test_repo_path_names_shipped_files_by_their_repository_path(tmp_path: Path) -> None:
    assert datasets.repo_path(datasets.path("llmbar-natural")) == "icai/data/llmbar/natural.csv"
    elsewhere = tmp_path / "mine.csv"
    assert datasets.repo_path(elsewhere) == str(elsewhere)


# --- nothing reads data from outside the repository ------------------------------------------

SEARCHED = ["icai", "tests", "bench", "notebooks", "Makefile", ".ci"]
SHARED = "shared"  # spelt apart so that a grep of the repository for the paths finds only real uses
OUTSIDE = re.compile(
    rf"{SHARED}/data|/work/{SHARED}|ICAI_{SHARED.upper()}_DATA|\"{SHARED}\"\s*/\s*\"data\"|'{SHARED}'\s*/\s*'data'"
)


def test_no_data_path_outside_the_repository() -> None:
    """Code, tests, benchmarks and their results files, notebooks, Makefile and CI name no data
    folder beside the checkout."""
    found = []
    for top in SEARCHED:
        start = ROOT / top
        files = [start] if start.is_file() else sorted(p for p in start.rglob("*") if p.is_file())
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            found += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "data read from outside the repository (use icai.datasets): " + ", ".join(found)
