"""Where the tests find the bundled datasets (importable by name: `from testdata import data_file`)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def data_file(name: str) -> Path:
    """A bundled dataset: the shared copy when present, else the one in data/."""
    for candidate in (SHARED / "icai_synthetic" / name, ROOT / "data" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)
