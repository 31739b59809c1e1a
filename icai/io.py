"""Load preference comparisons from every supported format, and save them as ICAI CSV.

Supported formats:

- ``icai_csv``: columns ``text_a, text_b, preferred_text`` (``"text_a"``/``"text_b"``/``"a"``/``"b"``),
  optional ``prompt`` and ``id``; any other column goes to ``Comparison.metadata``.
- ``hh_jsonl``: Anthropic hh-rlhf style lines ``{"chosen": ..., "rejected": ...}``, or lines with
  explicit ``prompt``, ``chosen`` and ``rejected`` strings.
- ``alpaca_eval``: a JSON list of ``{instruction, output_1, output_2, preference}`` annotations.
- ``annotated_pairs``: AnnotatedPairs v2.0 JSON (and 1.0 records with plain ``text_a``/``text_b``),
  labelled by ``metadata.default_annotator`` (``pref`` ``"a"``/``"b"``, or the reference's aliases
  ``"text_a"``/``"text_b"``); a response's ``model`` goes to metadata ``model_a``/``model_b``.
  `icai.annotated_pairs` reads the principle annotators too.
- ``dataframe``: a pandas DataFrame with ``text_a, text_b`` and ``preferred_text`` or ``preferred``.
- ``dpo``: ``prompt, chosen, rejected`` records in CSV, TSV, parquet or a saved dataset (JSONL ones are
  ``hh_jsonl``); which side is A follows a SHA-256 hash of the id, as for hh-rlhf.
- ``arena``: Chatbot Arena ``prompt, response_a, response_b, winner`` (``model_a``/``model_b``/``tie``/
  ``tie (bothbad)``), or ``conversation_a``/``conversation_b`` message lists, or the one-hot
  ``winner_model_a``/``winner_model_b``/``winner_tie`` columns; ties are dropped and counted like every tie.
- ``columns``: any records, with the fields named by ``columns={"prompt": ..., "a": ..., "b": ..., "label": ...}``
  (or ``"chosen"``/``"rejected"``), labels read through ``label_map`` (``{"model_a": "a", "model_b": "b"}``).

Every shape is read from CSV, TSV, JSON, JSONL, parquet, Arrow, a folder of parquet shards or a
``datasets`` ``save_to_disk`` folder (`icai.formats`; parquet and datasets need ``icai[data]``);
the Arena and mapped shapes live in `icai.shapes`.
Every column that is not a text, prompt, id or label goes to ``Comparison.metadata``. Conversations
(lists of ``{role, content}`` messages) keep their turns (`icai.turns`).

Ties and missing preferences are dropped and counted in a `LoadReport`; anything else that is
wrong raises `DataError` with a one-line message naming the file, and the row and column where
they apply.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from icai import formats, shapes
from icai.errors import DataError
from icai.files import write_text_atomic
from icai.shapes import Collector, Label, LoadReport, RowError, data_error, show_value
from icai.textfmt import is_missing, one_line
from icai.turns import encode_turns, split_conversations
from icai.types import Comparison

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

FormatName = Literal["auto", "icai_csv", "hh_jsonl", "alpaca_eval", "annotated_pairs", "dataframe", "dpo", "arena"]
"""What `load_comparisons` accepts as ``format``; ``auto`` detects the others."""

FORMATS: tuple[str, ...] = tuple(f for f in get_args(FormatName) if f != "auto")
"""The concrete formats, in the order they are documented."""

Source: TypeAlias = "str | os.PathLike[str] | pd.DataFrame"
"""A file path, or a pandas DataFrame."""

_PREFERRED_WORDS: dict[str, Label] = {"text_a": "a", "a": "a", "text_b": "b", "b": "b", "tie": "tie"}
_INSTRUCTION_RE = re.compile(r"Instruction:[ \t]*(.*?)\n\s*\nOutput:[ \t]*\n?", re.DOTALL)
_ASSISTANT = "\n\nAssistant:"
_ALPACA_KEYS = ("instruction", "output_1", "output_2", "preference")
_BINARY_KINDS = (
    (b"PK\x03\x04", "a zip archive or an Excel workbook: save the sheet as CSV (or parquet), or unzip it"),
    (b"\x1f\x8b", "a gzip file: decompress it first (gunzip)"),
    (b"SQLite format 3", "an SQLite database: export the table as CSV"),
)
"""Binary files people pass by mistake, by their first bytes (parquet and Arrow are read, `icai.formats`)."""


def load_comparisons(
    source: Source,
    *,
    format: FormatName = "auto",
    columns: Mapping[str, str] | None = None,
    label_map: Mapping[str, str] | None = None,
) -> list[Comparison]:
    """Load comparisons from a file, folder or DataFrame, logging how many rows were dropped.

    Args:
        source: a path to a CSV, TSV, JSONL, JSON, parquet or Arrow file, a saved dataset or parquet folder,
            or a pandas DataFrame.
        format: one of `FORMATS`, or ``"auto"`` to detect it from the extension, content and columns.
        columns: which column holds each field (`icai.shapes.COLUMN_ROLES`), for shapes that are not detected.
        label_map: label values to ``"a"``, ``"b"``, ``"tie"`` or ``"none"`` (dropped as missing).
    """
    comparisons, report = load_comparisons_with_report(source, format=format, columns=columns, label_map=label_map)
    if report.n_dropped_ties or report.n_dropped_missing:
        logger.warning(
            "%s: loaded %d of %d comparisons; dropped %d ties and %d with a missing preference",
            report.source,
            report.n_loaded,
            report.n_rows,
            report.n_dropped_ties,
            report.n_dropped_missing,
        )
    for note in report.notes:
        logger.info("%s: %s", report.source, note)
    return comparisons


def load_comparisons_with_report(
    source: Source,
    *,
    format: FormatName = "auto",
    columns: Mapping[str, str] | None = None,
    label_map: Mapping[str, str] | None = None,
    allow_unlabelled: bool = False,
) -> tuple[list[Comparison], LoadReport]:
    """Load comparisons like `load_comparisons`, and also return what was read and dropped.

    Args:
        allow_unlabelled: keep pairs without a label (a missing or empty label column, a tie) instead of dropping
            them, for predicting preferences (`icai annotate`); `LoadReport.unlabelled_ids` lists them.
    """
    collector = _load(source, format, columns, label_map, lenient=False, allow_unlabelled=allow_unlabelled)
    return collector.finish()


def scan_comparisons(
    source: Source,
    *,
    format: FormatName = "auto",
    columns: Mapping[str, str] | None = None,
    label_map: Mapping[str, str] | None = None,
) -> tuple[list[Comparison], LoadReport, list[RowError]]:
    """Load like `load_comparisons_with_report`, but skip each bad row and return its problem instead of stopping.

    Problems with the file as a whole (not found, not CSV, columns missing) still raise `DataError`.
    """
    collector = _load(source, format, columns, label_map, lenient=True)
    comparisons, report = collector.finish()
    return comparisons, report, list(collector.problems or [])


def _load(
    source: Source,
    format: str,
    columns: Mapping[str, str] | None,
    label_map: Mapping[str, str] | None,
    *,
    lenient: bool,
    allow_unlabelled: bool = False,
) -> Collector:
    if isinstance(source, (str, os.PathLike)):
        label = str(source)
        collector = Collector(label, format, problems=[] if lenient else None, allow_unlabelled=allow_unlabelled)
        collector.label_map = shapes.check_label_map(label, label_map)
        _load_path(Path(source), format, shapes.check_columns(label, columns), collector)
        return collector
    import pandas as pd

    if not isinstance(source, pd.DataFrame):
        raise DataError(
            f"cannot load comparisons from type {type(source).__name__}; pass a file path or a pandas DataFrame"
        )
    label = "<DataFrame>"
    mapping = shapes.check_columns(label, columns)
    if format not in ("auto", "dataframe") and not (format in ("dpo", "arena") or mapping):
        raise data_error(label, f"a DataFrame needs format 'dataframe' or 'auto', not {format!r}")
    collector = Collector(
        label, "dataframe", problems=[] if lenient else None, container="dataframe", allow_unlabelled=allow_unlabelled
    )
    collector.label_map = shapes.check_label_map(label, label_map)
    frame_columns = [str(c) for c in source.columns]
    shape = _shape(frame_columns, "icai_csv" if format == "dataframe" else format, mapping)
    if shape == "icai_csv":
        _collect_frame(source, collector)
    else:
        records = source.astype(object).where(source.notna(), None).to_dict("records")
        _collect_shape(shape, frame_columns, ((f"row {i}", r) for i, r in enumerate(records, start=1)), mapping, collector)
    return collector


def save_comparisons_csv(comparisons: Iterable[Comparison], path: str | os.PathLike[str]) -> Path:
    """Write comparisons as ICAI CSV (``id, prompt, text_a, text_b, preferred_text`` + metadata), atomically.

    Metadata values that are not strings are written as JSON, so they load back as strings.
    """
    core = ["id", "prompt", "text_a", "text_b", "preferred_text"]
    rows = list(comparisons)
    extra: list[str] = []
    for c in rows:
        extra.extend(k for k in c.metadata if k not in core and k not in extra)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(core + extra)
    for c in rows:
        values = [c.metadata.get(k) for k in extra]
        writer.writerow(
            [c.id, c.prompt, c.text_a, c.text_b, f"text_{c.preferred}"]
            + ["" if v is None else v if isinstance(v, str) else json.dumps(v, default=str) for v in values]
        )
    return write_text_atomic(Path(path), buf.getvalue())


def _load_path(path: Path, format: str, mapping: dict[str, str], collector: Collector) -> None:
    label = str(path)
    if format not in FORMATS and format != "auto":
        raise data_error(
            label, f"unknown format {format!r}; supported formats are 'auto', " + ", ".join(map(repr, FORMATS))
        )
    if format == "dataframe":
        raise data_error(label, "format 'dataframe' needs a pandas DataFrame, not a file path")
    if path.is_dir():
        _collect_table(formats.read_folder(path), format, mapping, collector)
        return
    data = _read_bytes(path)
    binary = formats.sniff_binary(path, data[:8])
    if binary is not None:
        _collect_table(formats.read_binary(path, binary), format, mapping, collector)
        return
    text = _decode(path, data)
    container = _container(path, text)
    collector.container = container
    if container in ("csv", "tsv"):
        # CSV is parsed from the bytes (checked as UTF-8 above): a large file is never held as text beside its
        # frame, nor copied into a StringIO (four bytes per character)
        del text
        frame = _read_csv(data, collector, sep="\t" if container == "tsv" else ",")
        del data
        columns = [str(c) for c in frame.columns]
        shape = _shape(columns, format, mapping)
        if shape == "icai_csv":
            collector.format = "icai_csv"
            _collect_frame(frame, collector)
            return
        rows = ((f"row {i}", r) for i, (_, r) in enumerate(_frame_rows(frame), start=1))
        _collect_shape(shape, columns, rows, mapping, collector)
        return
    del data  # JSON is parsed from the text: a large file is held once as text, not also as bytes
    fmt = format if format != "auto" else "columns" if mapping else _detect(path, text)
    if fmt == "annotated_pairs":
        collector.format = fmt
        _collect_annotated_pairs(_parse_json(text, collector), collector)
        return
    records_iter = _json_records(text, collector)
    first = next(records_iter, None)
    keys = list(first[1]) if first is not None and isinstance(first[1], dict) else []
    if format == "auto" and not mapping:
        shape = _shape(keys, "auto", mapping, default=fmt)
    else:
        shape = _shape(keys, format, mapping)
    if shape == "dpo" and "prompt" not in keys:
        shape = "hh_jsonl"  # chosen/rejected transcripts without a prompt field: hh-rlhf (the same loader as DPO)
    rest = [] if first is None else [first]
    records = itertools.chain(rest, records_iter)
    if shape == "icai_csv":
        collector.format = "icai_csv"
        import pandas as pd

        _collect_frame(pd.DataFrame([r for _, r in records]), collector)
        return
    _collect_shape(shape, keys, records, mapping, collector)


def _collect_table(table: formats.Table, format: str, mapping: dict[str, str], collector: Collector) -> None:
    collector.container = table.container
    shape = _shape(table.columns, format, mapping)
    if shape == "icai_csv":
        import pandas as pd

        collector.format = "icai_csv"
        _collect_frame(pd.DataFrame(table.records, columns=table.columns), collector)
        return
    records = ((f"row {i}", r) for i, r in enumerate(table.records, start=1))
    _collect_shape(shape, table.columns, records, mapping, collector)


def _shape(columns: Sequence[str], format: str, mapping: Mapping[str, str], *, default: str = "icai_csv") -> str:
    """Which shape records with these columns have: the `format` asked for, else detected from the column names."""
    if mapping:
        return "columns"
    if format not in ("auto", "dataframe"):
        return format
    names = set(columns)
    if names & {"text_a", "text_b", "preferred_text", "preferred"}:
        return "icai_csv"
    if {"chosen", "rejected"} <= names:
        return "dpo"
    if {"response_a", "response_b"} <= names or {"conversation_a", "conversation_b"} <= names:
        return "arena"
    if {"output_1", "output_2"} <= names:
        return "alpaca_eval"
    return default


def _collect_shape(
    shape: str,
    columns: Sequence[str],
    records: Iterable[tuple[str, Any]],
    mapping: dict[str, str],
    collector: Collector,
) -> None:
    collector.format = shape
    if shape in ("hh_jsonl", "dpo"):
        _collect_hh(records, collector)
    elif shape == "arena":
        shapes.collect_arena(columns, records, collector)
    elif shape == "alpaca_eval":
        _collect_alpaca(records, collector)
    elif shape == "columns" and "chosen" in mapping:
        prompt_key, id_key = shapes.mapped_keys(columns, mapping, collector)
        _collect_hh(records, collector, keys=(mapping["chosen"], mapping["rejected"], prompt_key, id_key))
    elif shape == "columns":
        shapes.collect_mapped(columns, records, mapping, collector, words=_PREFERRED_WORDS)
    elif shape == "icai_csv":
        import pandas as pd

        _collect_frame(pd.DataFrame([r for _, r in records]), collector)
    else:
        raise collector.error(f"format {shape!r} cannot be read from a {collector.container or 'table'} file")


def _read_bytes(path: Path) -> bytes:
    label = str(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise data_error(label, "file not found") from None
    except IsADirectoryError:
        raise data_error(label, "is a directory, not a file") from None
    except OSError as exc:
        raise data_error(label, f"cannot be read ({exc.strerror})") from None


def _decode(path: Path, data: bytes) -> str:
    label = str(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        for magic, what in _BINARY_KINDS:
            if data.startswith(magic):
                raise data_error(label, f"this looks like {what}") from None
        raise data_error(label, f"file is not valid UTF-8 (bad byte at offset {exc.start})") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise data_error(label, "file is empty")
    return text


def _read_text(path: Path) -> str:
    return _decode(path, _read_bytes(path))


def _container(path: Path, text: str) -> str:
    """csv, tsv, json or jsonl, from the suffix, else from the content."""
    suffix = path.suffix.lower()
    end = text.find("\n")
    header = text if end < 0 else text[:end]  # not text.split("\n", 1): that would copy the whole rest
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "tsv" if "\t" in header and "," not in header else "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json" or text.lstrip()[:1] in ("{", "["):
        return "json" if text.lstrip()[:1] == "[" or suffix == ".json" else "jsonl"
    if "\t" in header and "," not in header:
        return "tsv"
    if "," in header:
        return "csv"
    raise data_error(
        str(path),
        "cannot detect the format (not JSON, and the first line is not a CSV or TSV header); "
        "pass format= one of " + ", ".join(map(repr, FORMATS)),
    )


def _detect(path: Path, text: str) -> str:
    """The shape of a JSON or JSON Lines text (the records' columns may still refine it, see `_shape`)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "hh_jsonl"
    head = text.lstrip()[:1]
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        if head == "{" and suffix != ".json":
            return "hh_jsonl"  # several JSON objects, one a line
        data = _parse_json(text, Collector(str(path), "auto"))  # raises the positioned error
    if isinstance(data, dict) and "comparisons" in data:
        return "annotated_pairs"
    if isinstance(data, dict) and head == "{" and suffix != ".json":
        return "hh_jsonl"  # one JSON object: JSON Lines with a single line
    if isinstance(data, list) and data and isinstance(data[0], dict):
        shape = _shape(list(data[0]), "auto", {}, default="")
        if shape:
            return "hh_jsonl" if shape == "dpo" else shape
    raise data_error(
        str(path),
        "cannot detect the format of this JSON (expected an AnnotatedPairs object, a list of alpaca_eval annotations, "
        "chosen/rejected or Arena records); name the fields with --columns prompt=...,a=...,b=...,label=...",
    )


HEADER_BYTES = 1 << 20
"""How much of a CSV file its header is looked for in (a header longer than this is read as cut there)."""


def _read_csv(data: bytes, collector: Collector, *, sep: str = ",") -> pd.DataFrame:
    """A CSV or TSV file's bytes (UTF-8, checked by the caller; a byte-order mark is skipped) as a frame of strings."""
    import pandas as pd

    kind = "TSV" if sep == "\t" else "CSV"
    start = data[:HEADER_BYTES].decode("utf-8", errors="ignore").removeprefix("\ufeff")
    try:
        header = next(csv.reader(io.StringIO(start), delimiter=sep), [])
    except csv.Error as exc:
        raise collector.error(f"file is not valid {kind} ({one_line(str(exc))})") from None
    dupes = sorted({name for name in header if name and header.count(name) > 1})
    if dupes:
        raise collector.error(f"duplicate column {show_value(dupes[0])} in the header")
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, sep=sep, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise collector.error(f"file is not valid {kind} ({one_line(str(exc))})") from None


def _collect_frame(frame: pd.DataFrame, collector: Collector) -> None:
    columns = [str(c) for c in frame.columns]
    if columns and re.fullmatch(r"Unnamed: 0(_level_0)?", columns[0]):
        frame, columns = frame.iloc[:, 1:], columns[1:]  # a saved pandas index, not data
    pref_col = next((c for c in ("preferred_text", "preferred") if c in columns), None)
    unlabelled = pref_col is None and collector.allow_unlabelled
    missing = [c for c in ("text_a", "text_b") if c not in columns] + ([] if pref_col or unlabelled else ["preferred_text"])
    if missing:
        found = ", ".join(map(repr, columns)) or "none"
        raise collector.error(
            f"missing required column(s) {', '.join(map(repr, missing))} (found: {found}); for other column names "
            "say which holds what with --columns prompt=COLUMN,a=COLUMN,b=COLUMN,label=COLUMN"
        )
    has_prompt, has_id = "prompt" in columns, "id" in columns
    extra = [c for c in columns if c not in ("text_a", "text_b", pref_col or "preferred_text", "prompt", "id")]
    frame = frame.set_axis(columns, axis=1)
    for pos, (index, row) in enumerate(_frame_rows(frame), start=1):
        where = f"row {pos}"
        with collector.row(where):
            if has_id:
                if is_missing(row["id"]) or not str(row["id"]).strip():
                    raise collector.error("id is empty", where=where, column="id", kind="empty id")
                cid = str(row["id"])
            else:
                cid = str(index)
            text_a, text_b, prompt = row["text_a"], row["text_b"], row["prompt"] if has_prompt else ""
            if not has_prompt:
                text_a, text_b, prompt = _split_instruction(text_a, text_b)
            collector.add(
                where,
                id=cid,
                label=None if pref_col is None else _parse_preferred(row[pref_col], collector, where, pref_col),
                texts=(("text_a", shapes.conversation_text(text_a)), ("text_b", shapes.conversation_text(text_b))),
                prompt=shapes.conversation_text(prompt),
                metadata={c: row[c] for c in extra},
            )


FRAME_CHUNK_ROWS = 20_000
"""Rows of a frame turned into Python records at a time: a million-row file's records never exist at once."""


def _frame_rows(frame: pd.DataFrame) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(index, record) per row, missing values as None, converted `FRAME_CHUNK_ROWS` rows at a time."""
    for start in range(0, len(frame), FRAME_CHUNK_ROWS):
        part = frame.iloc[start : start + FRAME_CHUNK_ROWS].astype(object)
        part = part.where(part.notna(), None)
        yield from zip(part.index, part.to_dict("records"), strict=True)


def _parse_preferred(value: Any, collector: Collector, where: str, column: str) -> Label:
    if is_missing(value):
        return None
    mapped = collector.mapped_label(value)
    if mapped != "unmapped":
        return mapped
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in _PREFERRED_WORDS:
            return _PREFERRED_WORDS[word]
    error = collector.error(
        f"preferred value {show_value(value)} is not one of 'text_a', 'text_b', 'a', 'b' (or empty/'tie' to drop the row; "
        "--label-map maps other values)",
        where=where,
        column=column,
        kind="bad label",
    )
    if isinstance(error, RowError):
        error.value, error.known = value, ("text_a", "text_b", "a", "b", "tie")
    raise error


def _split_instruction(text_a: Any, text_b: Any) -> tuple[Any, Any, str]:
    """Move a shared ``Instruction: X\\n\\nOutput:`` header into the prompt."""
    if not (isinstance(text_a, str) and isinstance(text_b, str)):
        return text_a, text_b, ""
    match_a, match_b = _INSTRUCTION_RE.match(text_a.lstrip()), _INSTRUCTION_RE.match(text_b.lstrip())
    if match_a is None or match_b is None or match_a.group(1) != match_b.group(1):
        return text_a, text_b, ""
    return text_a.lstrip()[match_a.end() :], text_b.lstrip()[match_b.end() :], match_a.group(1).strip()


def _parse_json(text: str, collector: Collector) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise collector.error(f"malformed JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None


def _json_records(text: str, collector: Collector) -> Iterator[tuple[str, Any]]:
    """Yield (location, record) from a JSON list, or from JSON Lines."""
    if text.lstrip().startswith("["):
        data = _parse_json(text, collector)
        if not isinstance(data, list):
            raise collector.error("expected a JSON list of records")
        yield from ((f"row {i}", record) for i, record in enumerate(data, start=1))
        return
    # split on "\n" only: str.splitlines would also split on U+2028, which JSON strings may hold
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise collector.error(f"malformed JSON at column {exc.colno} ({exc.msg})", where=f"line {lineno}") from None
        yield f"line {lineno}", record


def _collect_hh(
    records: Iterable[tuple[str, Any]],
    collector: Collector,
    *,
    keys: tuple[str, str, str, str] = ("chosen", "rejected", "prompt", "id"),
) -> None:
    """chosen/rejected records (hh-rlhf transcripts, DPO triples, message lists); `keys` names their fields."""
    chosen_key, rejected_key, prompt_key, id_key = keys
    collector.notes.append("which response is A follows a SHA-256 hash of each pair's id (the chosen one is A for about half)")
    for index, (where, raw) in enumerate(records):
        with collector.row(where):
            record = shapes.require_keys(raw, (chosen_key, rejected_key), collector, where, expected="a JSON object")
            cid = str(record[id_key]) if not is_missing(record.get(id_key)) else str(index)
            prompt, chosen_text, rejected_text = _dpo_texts(
                record.get(prompt_key), record[chosen_key], record[rejected_key], collector, where, (chosen_key, rejected_key)
            )
            pair = ((chosen_key, chosen_text), (rejected_key, rejected_text))
            chosen_first = chosen_is_a(cid)
            collector.add(
                where,
                id=cid,
                label="tie" if chosen_text.strip() == rejected_text.strip() else ("a" if chosen_first else "b"),
                texts=pair if chosen_first else (pair[1], pair[0]),
                prompt=prompt,
                metadata={k: v for k, v in record.items() if k not in keys},
            )


def chosen_is_a(comparison_id: str) -> bool:
    """Whether the chosen response of a chosen/rejected pair is shown as A: a SHA-256 hash of the id, so about half are, the same in every run."""
    return int(hashlib.sha256(comparison_id.encode("utf-8")).hexdigest(), 16) % 2 == 0


def _dpo_texts(
    prompt: Any, chosen: Any, rejected: Any, collector: Collector, where: str, columns: tuple[str, str]
) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) as strings: transcripts split at their last shared turn, message lists kept as turns."""
    chosen_turns, rejected_turns = shapes.messages(chosen), shapes.messages(rejected)
    if chosen_turns is not None and rejected_turns is not None:
        opening = shapes.messages(prompt)
        if opening is None:
            opening = [] if is_missing(prompt) or not str(prompt).strip() else [("user", str(prompt))]
        shared, rest_a, rest_b = split_conversations(opening + chosen_turns, opening + rejected_turns)
        return encode_turns(shared) if shared else "", encode_turns(rest_a), encode_turns(rest_b)
    for column, value in zip(columns, (chosen, rejected), strict=True):
        collector.text(where, column, value)
    if isinstance(prompt, str):
        return prompt, chosen, rejected
    return _split_transcripts(chosen, rejected)


def _split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two hh-rlhf transcripts at the last ``\\n\\nAssistant:`` they share.

    Transcripts without a shared assistant turn are kept whole, with an empty prompt.
    """
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(_ASSISTANT, 0, shared)
    if cut < 0:
        return "", chosen, rejected
    end = cut + len(_ASSISTANT)
    return chosen[:end].strip(), chosen[end:].strip(), rejected[end:].strip()


def _collect_alpaca(records: Iterable[tuple[str, Any]], collector: Collector) -> None:
    for index, (where, raw) in enumerate(records):
        with collector.row(where):
            keys = _ALPACA_KEYS[:3] if collector.allow_unlabelled else _ALPACA_KEYS
            record = shapes.require_keys(raw, keys, collector, where, expected="a JSON object")
            cid = str(record["id"]) if not is_missing(record.get("id")) else str(index)
            collector.add(
                where,
                id=cid,
                label=_alpaca_label(record.get("preference"), collector, where),
                texts=(("output_1", record["output_1"]), ("output_2", record["output_2"])),
                prompt=record["instruction"],
                metadata={k: v for k, v in record.items() if k not in (*_ALPACA_KEYS, "id")},
            )


def _alpaca_label(value: Any, collector: Collector, where: str) -> Label:
    if is_missing(value):
        return None
    mapped = collector.mapped_label(value)
    if mapped != "unmapped":
        return mapped
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 1:
            return "a"
        if value == 2:
            return "b"
        if value in (0, 1.5):
            return "tie"
    raise collector.error(
        f"preference {show_value(value)} is not 1 or 2 (1.5, 0 or null drop the row)",
        where=where,
        column="preference",
        kind="bad label",
    )


def _collect_annotated_pairs(data: Any, collector: Collector) -> None:
    if not isinstance(data, dict):
        raise collector.error("expected an AnnotatedPairs JSON object with 'metadata' and 'comparisons'")
    missing = [k for k in ("metadata", "comparisons") if k not in data]
    if missing:
        raise collector.error(f"AnnotatedPairs JSON is missing key(s) {', '.join(map(repr, missing))}")
    meta, comparisons = data["metadata"], data["comparisons"]
    if not isinstance(meta, dict) or not meta.get("default_annotator"):
        raise collector.error("AnnotatedPairs JSON is missing key 'metadata.default_annotator'")
    if not isinstance(comparisons, list):
        raise collector.error("AnnotatedPairs key 'comparisons' is not a list")
    annotator = str(meta["default_annotator"])
    for pos, raw in enumerate(comparisons, start=1):
        where = f"row {pos}"
        with collector.row(where):
            # version 1.0 records hold plain text_a/text_b strings instead of response objects
            v1 = isinstance(raw, dict) and "response_a" not in raw and "text_a" in raw
            keys = ("id", "text_a", "text_b") if v1 else ("id", "response_a", "response_b")
            record = shapes.require_keys(raw, keys, collector, where, expected="a JSON object")
            texts = []
            metadata = dict(record["metadata"]) if isinstance(record.get("metadata"), dict) else {}
            for side, key in (("a", "response_a"), ("b", "response_b")):
                if v1:
                    texts.append((f"text_{side}", record[f"text_{side}"]))
                    continue
                response = record[key]
                if not isinstance(response, dict) or "text" not in response:
                    raise collector.error("missing key 'text'", where=where, column=key)
                texts.append((f"{key}.text", response["text"]))
                if response.get("model") is not None:  # the reference writes model_a/model_b columns here
                    metadata.setdefault(f"model_{side}", response["model"])
            annotations = record.get("annotations")
            annotation = annotations.get(annotator) if isinstance(annotations, dict) else None
            pref = annotation.get("pref") if isinstance(annotation, dict) else None
            if pref is not None and (not isinstance(pref, str) or pref not in _PREFERRED_WORDS):
                raise collector.error(
                    f"preference {show_value(pref)} is not 'a' or 'b'", where=where, column=f"annotations.{annotator}.pref"
                )
            collector.add(
                where,
                id=str(record["id"]),
                label=None if pref is None else _PREFERRED_WORDS[pref],
                texts=(texts[0], texts[1]),
                prompt=record.get("prompt"),
                metadata=metadata or None,
            )
