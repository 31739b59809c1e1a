"""The example preference sets shipped inside the package, by name.

``icai.datasets.load("llmbar-natural")`` returns the comparisons of a shipped set from any working
directory (the files are package data under ``icai/data/``, so a ``pip install`` has them too);
``path(name)`` gives the file for the command line, ``names()`` lists them. Sources, licences and
row counts are in ``icai/data/README.md`` and beside each set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from icai.errors import DataError
from icai.io import load_comparisons
from icai.types import Comparison

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Where the shipped sets live: ``icai/data/`` in a checkout and in an installed package."""


@dataclass(frozen=True)
class Dataset:
    """One shipped set: its file under `DATA_DIR`, how many pairs it holds, and what it is."""

    name: str
    file: str
    rows: int
    description: str


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "synthetic-orthogonal",
            "icai_synthetic/synthetic_data_orthogonal_adcbg.csv",
            30,
            "ICAI paper's synthetic set: cat over dog, blue over green, lemon over raspberry",
        ),
        Dataset(
            "synthetic-aligned",
            "icai_synthetic/synthetic_data_aligned_vqvtb.csv",
            30,
            "ICAI paper's synthetic set: the correct, helpful answer is preferred",
        ),
        Dataset(
            "synthetic-annotated-pairs",
            "icai_synthetic/example_annotated_pairs.json",
            1,
            "the ICAI repository's AnnotatedPairs v2.0 example (one pair, three principle annotators)",
        ),
        Dataset(
            "llmbar-natural",
            "llmbar/natural.csv",
            100,
            "LLMBar Natural: instruction following, one response objectively better",
        ),
        Dataset(
            "llmbar-adversarial",
            "llmbar/adversarial.csv",
            319,
            "LLMBar Adversarial (Neighbor, GPTInst, GPTOut, Manual): the worse response looks good",
        ),
        Dataset(
            "evalbiasbench",
            "offsetbias/evalbiasbench.csv",
            80,
            "EvalBiasBench (OffsetBias): the worse response carries a judge-bias feature",
        ),
        Dataset(
            "arena-small",
            "arena_small/arena_small.csv",
            160,
            "made-up Arena-style pairs with model_a, model_b and timestamp (for --target and --by)",
        ),
    )
}


def names() -> list[str]:
    """The names `load` and `path` accept, in the order of `DATASETS`."""
    return list(DATASETS)


def info(name: str) -> Dataset:
    """The `Dataset` record of a shipped set; `DataError` for an unknown name."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; the shipped sets are: {', '.join(DATASETS)}") from None


def path(name: str) -> Path:
    """The file of a shipped set (absolute), e.g. for ``icai run "$(python -c ...)"`` or `load_comparisons`."""
    return DATA_DIR / info(name).file


def repo_path(file: str | Path) -> str:
    """How results files name data: ``icai/data/...`` for a shipped file, else the path as given."""
    resolved = Path(file).resolve()
    if resolved.is_relative_to(DATA_DIR):
        return (Path("icai") / "data" / resolved.relative_to(DATA_DIR)).as_posix()
    return str(file)


def load(name: str) -> list[Comparison]:
    """The comparisons of a shipped set, read with `icai.io.load_comparisons`."""
    return load_comparisons(path(name))


__all__ = ["DATASETS", "DATA_DIR", "Dataset", "info", "load", "names", "path", "repo_path"]
