from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def data_file(name: str) -> Path:
    """A bundled dataset: the shared copy when present, else the one in data/."""
    for candidate in (SHARED / "icai_synthetic" / name, ROOT / "data" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)


@pytest.fixture
def orthogonal_csv() -> Path:
    return data_file("synthetic_data_orthogonal_adcbg.csv")
