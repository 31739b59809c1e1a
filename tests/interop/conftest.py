"""A real `icai run` shared by the interop tests: fake/keyword annotator, hash embedder, 30% held out."""

from __future__ import annotations

from pathlib import Path

import pytest
from interop_env import export

from icai import datasets
from icai.cli import main


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "interop: runs an export in the real tool that reads it (`make interop` builds the tools; CI runs them)",
    )


@pytest.fixture(scope="session")
def icai_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of `icai run` on the synthetic orthogonal set."""
    data = datasets.path("synthetic-orthogonal")
    out = tmp_path_factory.mktemp("interop") / "run"
    argv = ["run", str(data), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash", "--test-size", "0.3"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="session")
def annotated_pairs_export(icai_run: Path) -> Path:
    return export(icai_run, "annotated-pairs", "constitution.annotated_pairs.json")
