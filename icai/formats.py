"""Containers the loader reads besides text files: parquet, Arrow, and folders (a saved Hugging Face dataset,
or parquet shards). Each returns plain records (dicts) for `icai.io` to shape into comparisons.

pyarrow and datasets are the optional extra ``icai[data]``; without them a parquet or dataset input gets one
sentence saying what to install, never a UTF-8 error.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from icai.errors import DataError
from icai.textfmt import one_line

Container = Literal["csv", "tsv", "json", "jsonl", "parquet", "arrow", "hf_dataset", "parquet_shards", "dataframe"]
"""How the records were stored (`LoadReport.container`)."""

DATA_INSTALL_HINT = "install with: pip install 'icai[data]'"

PARQUET_MAGIC = b"PAR1"
ARROW_FILE_MAGIC = b"ARROW1"
ARROW_STREAM_MAGIC = b"\xff\xff\xff\xff"


@dataclass(frozen=True)
class Table:
    """Records read from a binary container, with the column names in file order."""

    columns: list[str]
    records: list[dict[str, Any]]
    container: Container


def sniff_binary(path: Path, head: bytes) -> Container | None:
    """'parquet' or 'arrow' when the file's suffix or first bytes say so, else None (a text file)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet" or head.startswith(PARQUET_MAGIC):
        return "parquet"
    if suffix in (".arrow", ".feather") or head.startswith(ARROW_FILE_MAGIC) or head.startswith(ARROW_STREAM_MAGIC):
        return "arrow"
    return None


def read_binary(path: Path, kind: Container) -> Table:
    """Records from a parquet or Arrow file."""
    pa = _pyarrow(path, f"this looks like {kind}")
    try:
        table = _read_parquet(path) if kind == "parquet" else _read_arrow(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: file is not valid {kind} ({one_line(str(exc))})") from None
    return Table(list(table.column_names), table.to_pylist(), kind)


def read_folder(path: Path) -> Table:
    """Records from a folder: a `datasets` ``save_to_disk`` folder (every split), or a folder of parquet shards."""
    saved = (path / "dataset_info.json").exists() or (path / "state.json").exists()
    splits = _saved_splits(path)
    if saved or splits:
        return _read_saved_dataset(path, splits)
    shards = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if shards:
        _pyarrow(path, "this folder holds parquet shards")
        tables = [read_binary(p, "parquet") for p in shards]
        columns = list(dict.fromkeys(c for t in tables for c in t.columns))
        return Table(columns, [r for t in tables for r in t.records], "parquet_shards")
    raise DataError(
        f"{path}: is a directory with neither a saved Hugging Face dataset nor parquet shards; pass a data file"
    )


def _saved_splits(path: Path) -> list[str]:
    """The split folders of a saved DatasetDict (dataset_dict.json), in its order."""
    index = path / "dataset_dict.json"
    if not index.exists():
        return []
    try:
        splits = json.loads(index.read_text(encoding="utf-8")).get("splits")
    except (OSError, ValueError, AttributeError):
        raise DataError(f"{path}: dataset_dict.json is not valid JSON") from None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise DataError(f"{path}: dataset_dict.json has no list of 'splits'")
    return splits


def _read_saved_dataset(path: Path, splits: list[str]) -> Table:
    if importlib.util.find_spec("datasets") is None:
        raise DataError(f"{path}: this looks like a saved Hugging Face dataset, which needs datasets; {DATA_INSTALL_HINT}")
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises its own classes for a damaged folder; any of them is this one sentence
        raise DataError(f"{path}: cannot load this saved dataset ({one_line(str(exc))})") from None
    if isinstance(loaded, datasets.DatasetDict):
        records: list[dict[str, Any]] = []
        columns: list[str] = []
        for split in splits or list(loaded):
            part = loaded[split]
            columns.extend(c for c in part.column_names if c not in columns)
            # several splits in one input: each record says which it came from
            records.extend({**r, "hf_split": split} for r in part.to_list())
        return Table([*columns, "hf_split"], records, "hf_dataset")
    return Table(list(loaded.column_names), loaded.to_list(), "hf_dataset")


def _pyarrow(path: Path, what: str) -> Any:
    if importlib.util.find_spec("pyarrow") is None:
        raise DataError(f"{path}: {what}, which needs pyarrow; {DATA_INSTALL_HINT}")
    import pyarrow

    return pyarrow


def _read_parquet(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path)


def _read_arrow(path: Path) -> Any:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()  # datasets' save_to_disk writes the stream format

