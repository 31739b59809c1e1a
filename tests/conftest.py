from pathlib import Path

import pytest
from testdata import data_file


@pytest.fixture
def orthogonal_csv() -> Path:
    return data_file("synthetic_data_orthogonal_adcbg.csv")
