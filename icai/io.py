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

Ties and missing preferences are dropped and counted in a `LoadReport`; anything else that is
wrong raises `DataError` with a one-line message naming the file, and the row and column where
they apply.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from icai.types import Comparison, DataError, Side, write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

FormatName = Literal["auto", "icai_csv", "hh_jsonl", "alpaca_eval", "annotated_pairs", "dataframe"]
"""What `load_comparisons` accepts as ``format``; ``auto`` detects the others."""

FORMATS: tuple[str, ...] = tuple(f for f in get_args(FormatName) if f != "auto")
"""The concrete formats, in the order they are documented."""

Source: TypeAlias = "str | os.PathLike[str] | pd.DataFrame"
"""A file path, or a pandas DataFrame."""

_Label = Side | Literal["tie"] | None
"""A parsed preference: a side, a tie, or None when it is missing."""

_PREFERRED_WORDS: dict[str, _Label] = {"text_a": "a", "a": "a", "text_b": "b", "b": "b", "tie": "tie"}
_INSTRUCTION_RE = re.compile(r"Instruction:[ \t]*(.*?)\n\s*\nOutput:[ \t]*\n?", re.DOTALL)
_ASSISTANT = "\n\nAssistant:"
_ALPACA_KEYS = ("instruction", "output_1", "output_2", "preference")


@dataclass(frozen=True)
class LoadReport:
    """What a load read and what it dropped."""

    source: str
    format: str
    n_rows: int
    n_loaded: int
    n_dropped_ties: int
    n_dropped_missing: int
    unlabelled_ids: tuple[str, ...] = ()
    """With ``allow_unlabelled=True``: ids of the pairs kept without a label (no or an empty label, or a tie);
    their ``preferred`` is a placeholder "a" that means nothing. Their count is also in the two counts above."""


def load_comparisons(source: Source, *, format: FormatName = "auto") -> list[Comparison]:
    """Load comparisons from a file or DataFrame, logging how many rows were dropped.

    Args:
        source: a path to a CSV, JSONL or JSON file, or a pandas DataFrame.
        format: one of `FORMATS`, or ``"auto"`` to detect it from the extension and content.
    """
    comparisons, report = load_comparisons_with_report(source, format=format)
    if report.n_dropped_ties or report.n_dropped_missing:
        logger.warning(
            "%s: loaded %d of %d comparisons; dropped %d ties and %d with a missing preference",
            report.source,
            report.n_loaded,
            report.n_rows,
            report.n_dropped_ties,
            report.n_dropped_missing,
        )
    return comparisons


def load_comparisons_with_report(
    source: Source, *, format: FormatName = "auto", allow_unlabelled: bool = False
) -> tuple[list[Comparison], LoadReport]:
    """Load comparisons like `load_comparisons`, and also return what was read and dropped.

    Args:
        allow_unlabelled: keep pairs without a label (a missing or empty label column, a tie) instead of dropping
            them, for predicting preferences (`icai annotate`); `LoadReport.unlabelled_ids` lists them.
    """
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), format, allow_unlabelled=allow_unlabelled)
    import pandas as pd

    if not isinstance(source, pd.DataFrame):
        raise DataError(
            f"cannot load comparisons from type {type(source).__name__}; pass a file path or a pandas DataFrame"
        )
    label = "<DataFrame>"
    if format not in ("auto", "dataframe"):
        raise _error(label, f"a DataFrame needs format 'dataframe' or 'auto', not {format!r}")
    collector = _Collector(label, "dataframe", allow_unlabelled=allow_unlabelled)
    _collect_frame(source, collector)
    return collector.finish()


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


@dataclass
class _Collector:
    """Turns parsed rows into comparisons, counting drops and catching duplicate ids."""

    source: str
    format: str
    comparisons: list[Comparison] = field(default_factory=list)
    n_rows: int = 0
    n_ties: int = 0
    n_missing: int = 0
    seen: dict[str, str] = field(default_factory=dict)
    allow_unlabelled: bool = False
    unlabelled: list[str] = field(default_factory=list)

    def add(
        self,
        where: str,
        *,
        id: str,
        label: _Label,
        texts: tuple[tuple[str, Any], tuple[str, Any]],
        prompt: Any = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one row; `texts` holds (column name, value) for sides a and b."""
        self.n_rows += 1
        if id in self.seen:
            raise _error(self.source, f"duplicate id {_show(id)} in {self.seen[id]} and {where}")
        self.seen[id] = where
        if label is None:
            self.n_missing += 1
        if label == "tie":
            self.n_ties += 1
        if label is None or label == "tie":
            if not self.allow_unlabelled:
                return
            self.unlabelled.append(id)
            label = "a"  # a placeholder: LoadReport.unlabelled_ids says which pairs have no label
        text_a = self.text(where, *texts[0])
        text_b = self.text(where, *texts[1])
        prompt_text = "" if _is_missing(prompt) else str(prompt)
        self.comparisons.append(Comparison(id, text_a, text_b, label, prompt_text, dict(metadata or {})))

    def text(self, where: str, column: str, value: Any) -> str:
        if _is_missing(value):
            raise _error(self.source, "text is missing", where=where, column=column)
        if not isinstance(value, str):
            raise _error(
                self.source, f"expected text, got {type(value).__name__} {_show(value)}", where=where, column=column
            )
        if not value.strip():
            raise _error(self.source, "text is empty", where=where, column=column)
        return value

    def error(self, problem: str, *, where: str | None = None, column: str | None = None) -> DataError:
        return _error(self.source, problem, where=where, column=column)

    def finish(self) -> tuple[list[Comparison], LoadReport]:
        if self.n_rows == 0:
            raise _error(self.source, "file has no data rows")
        if not self.comparisons:
            raise _error(
                self.source,
                f"no usable comparisons in {self.n_rows} rows ({self.n_ties} ties, {self.n_missing} missing preferences)",
            )
        report = LoadReport(
            source=self.source,
            format=self.format,
            n_rows=self.n_rows,
            n_loaded=len(self.comparisons),
            n_dropped_ties=self.n_ties,
            n_dropped_missing=self.n_missing,
            unlabelled_ids=tuple(self.unlabelled),
        )
        return self.comparisons, report


def _load_path(path: Path, format: str, *, allow_unlabelled: bool = False) -> tuple[list[Comparison], LoadReport]:
    label = str(path)
    if format not in FORMATS and format != "auto":
        raise _error(
            label, f"unknown format {format!r}; supported formats are 'auto', " + ", ".join(map(repr, FORMATS))
        )
    if format == "dataframe":
        raise _error(label, "format 'dataframe' needs a pandas DataFrame, not a file path")
    text = _read_text(path)
    fmt = _detect(path, text) if format == "auto" else format
    collector = _Collector(label, fmt, allow_unlabelled=allow_unlabelled)
    if fmt == "icai_csv":
        _collect_frame(_read_csv(text, collector), collector)
    elif fmt == "hh_jsonl":
        _collect_hh(_json_records(text, collector), collector)
    elif fmt == "alpaca_eval":
        _collect_alpaca(_json_records(text, collector), collector)
    else:
        _collect_annotated_pairs(_parse_json(text, collector), collector)
    return collector.finish()


def _read_text(path: Path) -> str:
    label = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _error(label, "file not found") from None
    except IsADirectoryError:
        raise _error(label, "is a directory, not a file") from None
    except OSError as exc:
        raise _error(label, f"cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(label, f"file is not valid UTF-8 (bad byte at offset {exc.start})") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise _error(label, "file is empty")
    return text


def _detect(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "icai_csv"
    if suffix in (".jsonl", ".ndjson"):
        return "hh_jsonl"
    head = text.lstrip()[:1]
    if head not in ("{", "[") and suffix != ".json":
        if "text_a" in text.split("\n", 1)[0]:
            return "icai_csv"
        raise _error(str(path), "cannot detect the format; pass format= one of " + ", ".join(map(repr, FORMATS)))
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        if head == "{" and suffix != ".json":
            return "hh_jsonl"  # several JSON objects, one a line
        data = _parse_json(text, _Collector(str(path), "auto"))  # raises the positioned error
    if isinstance(data, dict) and "comparisons" in data:
        return "annotated_pairs"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "output_1" in data[0]:
            return "alpaca_eval"
        if "chosen" in data[0]:
            return "hh_jsonl"
    raise _error(
        str(path),
        "cannot detect the format of this JSON (expected an AnnotatedPairs object, "
        "a list of alpaca_eval annotations or chosen/rejected records)",
    )


def _read_csv(text: str, collector: _Collector) -> pd.DataFrame:
    import pandas as pd

    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as exc:
        raise collector.error(f"file is not valid CSV ({_one_line(str(exc))})") from None
    dupes = sorted({name for name in header if name and header.count(name) > 1})
    if dupes:
        raise collector.error(f"duplicate column {_show(dupes[0])} in the header")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise collector.error(f"file is not valid CSV ({_one_line(str(exc))})") from None


def _collect_frame(frame: pd.DataFrame, collector: _Collector) -> None:
    columns = [str(c) for c in frame.columns]
    if columns and re.fullmatch(r"Unnamed: 0(_level_0)?", columns[0]):
        frame, columns = frame.iloc[:, 1:], columns[1:]  # a saved pandas index, not data
    pref_col = next((c for c in ("preferred_text", "preferred") if c in columns), None)
    unlabelled = pref_col is None and collector.allow_unlabelled
    missing = [c for c in ("text_a", "text_b") if c not in columns] + ([] if pref_col or unlabelled else ["preferred_text"])
    if missing:
        found = ", ".join(map(repr, columns)) or "none"
        raise collector.error(f"missing required column(s) {', '.join(map(repr, missing))} (found: {found})")
    has_prompt, has_id = "prompt" in columns, "id" in columns
    extra = [c for c in columns if c not in ("text_a", "text_b", pref_col or "preferred_text", "prompt", "id")]
    frame = frame.set_axis(columns, axis=1).astype(object)
    frame = frame.where(frame.notna(), None)
    for pos, (index, row) in enumerate(zip(frame.index, frame.to_dict("records"), strict=True), start=1):
        where = f"row {pos}"
        if has_id:
            if _is_missing(row["id"]) or not str(row["id"]).strip():
                raise collector.error("id is empty", where=where, column="id")
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
            texts=(("text_a", text_a), ("text_b", text_b)),
            prompt=prompt,
            metadata={c: row[c] for c in extra},
        )


def _parse_preferred(value: Any, collector: _Collector, where: str, column: str) -> _Label:
    if _is_missing(value):
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in _PREFERRED_WORDS:
            return _PREFERRED_WORDS[word]
    raise collector.error(
        f"preferred value {_show(value)} is not one of 'text_a', 'text_b', 'a', 'b' (or empty/'tie' to drop the row)",
        where=where,
        column=column,
    )


def _split_instruction(text_a: Any, text_b: Any) -> tuple[Any, Any, str]:
    """Move a shared ``Instruction: X\\n\\nOutput:`` header into the prompt."""
    if not (isinstance(text_a, str) and isinstance(text_b, str)):
        return text_a, text_b, ""
    match_a, match_b = _INSTRUCTION_RE.match(text_a.lstrip()), _INSTRUCTION_RE.match(text_b.lstrip())
    if match_a is None or match_b is None or match_a.group(1) != match_b.group(1):
        return text_a, text_b, ""
    return text_a.lstrip()[match_a.end() :], text_b.lstrip()[match_b.end() :], match_a.group(1).strip()


def _parse_json(text: str, collector: _Collector) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise collector.error(f"malformed JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None


def _json_records(text: str, collector: _Collector) -> Iterator[tuple[str, Any]]:
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


def _require(record: Any, keys: Sequence[str], collector: _Collector, where: str) -> Mapping[str, Any]:
    if not isinstance(record, dict):
        raise collector.error(f"expected a JSON object, got {type(record).__name__}", where=where)
    missing = [k for k in keys if k not in record]
    if missing:
        raise collector.error(f"missing key(s) {', '.join(map(repr, missing))}", where=where)
    return record


def _collect_hh(records: Iterable[tuple[str, Any]], collector: _Collector) -> None:
    for index, (where, raw) in enumerate(records):
        record = _require(raw, ("chosen", "rejected"), collector, where)
        chosen, rejected = record["chosen"], record["rejected"]
        cid = str(record["id"]) if not _is_missing(record.get("id")) else str(index)
        for column, value in (("chosen", chosen), ("rejected", rejected)):
            collector.text(where, column, value)
        prompt = record.get("prompt")
        if isinstance(prompt, str):
            chosen_text, rejected_text = chosen, rejected
        else:
            prompt, chosen_text, rejected_text = _split_transcripts(chosen, rejected)
        chosen_first = int(hashlib.sha256(cid.encode("utf-8")).hexdigest(), 16) % 2 == 0
        pair = (("chosen", chosen_text), ("rejected", rejected_text))
        collector.add(
            where,
            id=cid,
            label="tie" if chosen_text.strip() == rejected_text.strip() else ("a" if chosen_first else "b"),
            texts=pair if chosen_first else (pair[1], pair[0]),
            prompt=prompt,
            metadata={k: v for k, v in record.items() if k not in ("chosen", "rejected", "prompt", "id")},
        )


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


def _collect_alpaca(records: Iterable[tuple[str, Any]], collector: _Collector) -> None:
    for index, (where, raw) in enumerate(records):
        record = _require(raw, _ALPACA_KEYS[:3] if collector.allow_unlabelled else _ALPACA_KEYS, collector, where)
        cid = str(record["id"]) if not _is_missing(record.get("id")) else str(index)
        collector.add(
            where,
            id=cid,
            label=_alpaca_label(record.get("preference"), collector, where),
            texts=(("output_1", record["output_1"]), ("output_2", record["output_2"])),
            prompt=record["instruction"],
            metadata={k: v for k, v in record.items() if k not in (*_ALPACA_KEYS, "id")},
        )


def _alpaca_label(value: Any, collector: _Collector, where: str) -> _Label:
    if _is_missing(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 1:
            return "a"
        if value == 2:
            return "b"
        if value in (0, 1.5):
            return "tie"
    raise collector.error(
        f"preference {_show(value)} is not 1 or 2 (1.5, 0 or null drop the row)", where=where, column="preference"
    )


def _collect_annotated_pairs(data: Any, collector: _Collector) -> None:
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
        # version 1.0 records hold plain text_a/text_b strings instead of response objects
        v1 = isinstance(raw, dict) and "response_a" not in raw and "text_a" in raw
        record = _require(raw, ("id", "text_a", "text_b") if v1 else ("id", "response_a", "response_b"), collector, where)
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
                f"preference {_show(pref)} is not 'a' or 'b'", where=where, column=f"annotations.{annotator}.pref"
            )
        collector.add(
            where,
            id=str(record["id"]),
            label=None if pref is None else _PREFERRED_WORDS[pref],
            texts=(texts[0], texts[1]),
            prompt=record.get("prompt"),
            metadata=metadata or None,
        )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(source: str, problem: str, *, where: str | None = None, column: str | None = None) -> DataError:
    location = source + (f", {where}" if where else "") + (f", column {column!r}" if column else "")
    return DataError(_one_line(f"{location}: {problem}"))
