"""Where the tests find the bundled datasets, and what they do when a tool is missing (importable by name:
`from testdata import data_file, missing`)."""

import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def data_file(name: str) -> Path:
    """A bundled dataset: the shared copy when present, else the one in data/."""
    for candidate in (SHARED / "icai_synthetic" / name, ROOT / "data" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)


def missing(message: str) -> NoReturn:
    """Skip a test whose tool, browser or packaged model is not installed; under CI, which installs them all, fail."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI installs it, so this test may not skip there)")
    pytest.skip(message)
