from pathlib import Path

import pytest
from testdata import data_file

from icai.io import load_comparisons
from icai.types import Comparison


@pytest.fixture
def orthogonal_csv() -> Path:
    return data_file("synthetic_data_orthogonal_adcbg.csv")


@pytest.fixture
def orthogonal(orthogonal_csv: Path) -> list[Comparison]:
    """The orthogonal synthetic set (30 pairs, three hidden keyword rules) as comparisons."""
    return load_comparisons(orthogonal_csv)
