"""Where the tests find the shipped datasets, and what they do when a tool is missing (importable by name:
`from testdata import data_file, missing`)."""

import os
from pathlib import Path
from typing import NoReturn

import pytest

from icai.datasets import DATA_DIR, DATASETS
from icai.types import Comparison, Principle

_BY_FILE_NAME = {Path(d.file).name: DATA_DIR / d.file for d in DATASETS.values()}


def data_file(name: str) -> Path:
    """A shipped dataset's file (icai/data/...) by its file name; `icai.datasets.path` takes the set's name."""
    return _BY_FILE_NAME[name]


def missing(message: str) -> NoReturn:
    """Skip a test whose tool, browser or packaged model is not installed; under CI, which installs them all, fail."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI installs it, so this test may not skip there)")
    pytest.skip(message)


PAIRS = [
    Comparison("p1", "A cat sat on the mat.", "A dog sat on the mat.", "a", prompt="Write about a pet."),
    Comparison("p2", "My dog barks.", "My cat purrs softly.", "b", prompt="Write about a pet."),
    Comparison("p3", "The cat naps all day.", "The dog runs all day.", "a", prompt="Write about a pet."),
]
CAT = Principle.from_text("Select the response that mentions 'cat' in its text.")
DOG = Principle.from_text("Select the response that mentions 'dog' in its text.")
"""Three pet pairs and two keyword rules (cat agrees with every label, dog with none): the stage tests' toy data."""
