"""Record shapes besides the ICAI CSV and hh-rlhf: Chatbot Arena and caller-mapped columns (``--columns``,
``--label-map``), and the helpers that read their labels and conversations. `icai.io` dispatches here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from icai.errors import DataError
from icai.textfmt import is_missing, one_line
from icai.turns import Turn, as_messages, encode_turns, split_conversations
from icai.types import Comparison, Side

Label = Side | Literal["tie"] | None
"""A parsed preference: a side, a tie, or None when it is missing."""


@dataclass(frozen=True)
class LoadReport:
    """What a load read and what it dropped."""

    source: str
    format: str
    n_rows: int
    n_loaded: int
    n_dropped_ties: int
    n_dropped_missing: int
    container: str = ""
    """How the records were stored: csv, tsv, json, jsonl, parquet, arrow, hf_dataset, parquet_shards, dataframe."""
    n_invalid: int = 0
    """Rows skipped for a problem (only `scan_comparisons` skips rows; a load stops at the first)."""
    notes: tuple[str, ...] = ()
    """How the shape was read, where it matters (ties, which side is A)."""
    unlabelled_ids: tuple[str, ...] = ()
    """With ``allow_unlabelled=True``: ids of the pairs kept without a label (no or an empty label, or a tie);
    their ``preferred`` is a placeholder "a" that means nothing. Their count is also in the two counts above."""


class RowError(DataError):
    """A problem in one row; `scan_comparisons` collects these instead of stopping."""

    def __init__(self, message: str, *, kind: str, where: str, column: str | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.where = where
        self.column = column
        self.value: Any = None
        """The cell's value, for a "bad label" (a load names every unknown label value at once)."""
        self.known: tuple[str, ...] = ()
        """The label values the format knows, for a "bad label"."""


@dataclass
class Collector:
    """What every input shape fills (`icai.io`'s and the ones here): parsed rows in, comparisons and a
    `LoadReport` out, counting drops and catching duplicate ids."""

    source: str
    format: str
    comparisons: list[Comparison] = field(default_factory=list)
    n_rows: int = 0
    n_ties: int = 0
    n_missing: int = 0
    seen: dict[str, str] = field(default_factory=dict)
    problems: list[RowError] | None = None
    """Set (to a list) for a scan: row problems are collected there and the row skipped."""
    container: str = ""
    label_map: dict[str, Label] = field(default_factory=dict)
    """The caller's label words (``--label-map``), lower-cased, tried before a format's own."""
    notes: list[str] = field(default_factory=list)
    n_invalid: int = 0
    allow_unlabelled: bool = False
    unlabelled: list[str] = field(default_factory=list)
    bad_labels: dict[str, RowError] = field(default_factory=dict)
    """Unknown label value -> its first row's error: a load reads on and names them all at once (`finish`)."""

    @contextlib.contextmanager
    def row(self, where: str) -> Iterator[None]:
        """One input row: counted, and under a scan its problem is recorded instead of raised."""
        self.n_rows += 1
        try:
            yield
        except RowError as exc:
            if self.problems is None:
                if exc.kind == "bad label" and exc.value is not None:
                    self.bad_labels.setdefault(str(exc.value), exc)
                    return
                raise
            self.problems.append(exc)
            self.n_invalid += 1

    def add(
        self,
        where: str,
        *,
        id: str,
        label: Label,
        texts: tuple[tuple[str, Any], tuple[str, Any]],
        prompt: Any = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one row (inside `row`); `texts` holds (column name, value) for sides a and b."""
        if id in self.seen:
            raise data_error(
                self.source, f"duplicate id {show_value(id)} in {self.seen[id]} and {where}", kind="duplicate id", row=where
            )
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
        prompt_text = "" if is_missing(prompt) else str(prompt)
        self.comparisons.append(Comparison(id, text_a, text_b, label, prompt_text, dict(metadata or {})))

    def mapped_label(self, value: Any) -> Label | Literal["unmapped"]:
        """The caller's `label_map` reading of a label value, or "unmapped" when it does not name the value."""
        if not self.label_map or is_missing(value):
            return "unmapped"
        return self.label_map.get(label_key(value), "unmapped")

    def text(self, where: str, column: str, value: Any) -> str:
        if is_missing(value):
            raise data_error(self.source, "text is missing", where=where, column=column, kind="missing text")
        if not isinstance(value, str):
            raise data_error(
                self.source,
                f"expected text, got {type(value).__name__} {show_value(value)}",
                where=where,
                column=column,
                kind="not text",
            )
        if not value.strip():
            raise data_error(self.source, "text is empty", where=where, column=column, kind="empty text")
        return value

    def unknown_labels(self) -> DataError:
        """Every unknown label value of the file in one sentence, with the --label-map that would read them."""
        errors = list(self.bad_labels.values())
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        values = ", ".join(f"{show_value(e.value)} ({e.where})" for e in errors)
        sides = ("a", "b", "tie", "none")
        example = ",".join(f"{str(e.value).strip()}={sides[i % 4]}" for i, e in enumerate(errors[:4]))
        return DataError(" ".join((
            f"{self.source}, column {first.column!r}: {len(errors)} label values are not one of "
            + ", ".join(map(repr, first.known)) + f": {values}; map each to a, b, tie or none with --label-map, "
            f"e.g. --label-map {example}"
        ).split()))

    def error(
        self, problem: str, *, where: str | None = None, column: str | None = None, kind: str = ""
    ) -> DataError:
        return data_error(self.source, problem, where=where, column=column, kind=kind)

    def finish(self) -> tuple[list[Comparison], LoadReport]:
        if self.n_rows == 0:
            raise data_error(self.source, "file has no data rows")
        if self.bad_labels:
            raise self.unknown_labels()
        if not self.comparisons and self.problems is None:
            raise data_error(
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
            container=self.container,
            n_invalid=self.n_invalid,
            notes=tuple(dict.fromkeys(self.notes)),
            unlabelled_ids=tuple(self.unlabelled),
        )
        return self.comparisons, report


def show_value(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."




def data_error(
    source: str,
    problem: str,
    *,
    where: str | None = None,
    column: str | None = None,
    kind: str = "",
    row: str | None = None,
) -> DataError:
    """The one-line error; a `RowError` when it is about one row (`where`, or `row` when the text names rows itself)."""
    location = source + (f", {where}" if where else "") + (f", column {column!r}" if column else "")
    message = one_line(f"{location}: {problem}")
    if where is None and row is None:
        return DataError(message)
    return RowError(message, kind=kind or one_line(problem), where=where or row or "", column=column)


ARENA_WORDS: dict[str, Label] = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie"}
"""Chatbot Arena's ``winner`` values; both ties are dropped and counted, as every tie is."""
LABEL_TARGETS: dict[str, Label] = {"a": "a", "b": "b", "tie": "tie", "none": None, "": None}
"""What a ``--label-map`` value may be read as (none: no label, the row is dropped as missing)."""
COLUMN_ROLES = ("prompt", "a", "b", "label", "id", "chosen", "rejected")
"""What ``columns=`` (``--columns``) may name: the fields of a comparison, or DPO's chosen/rejected pair."""
ARENA_TIE_NOTE = "Arena ties ('tie', 'tie (bothbad)') are dropped and counted, as every tie is"


def check_columns(source: str, columns: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's field-to-column mapping, checked: known fields, and a complete pair-and-label or chosen/rejected set."""
    if not columns:
        return {}
    mapping = {str(k).strip(): str(v).strip() for k, v in columns.items()}
    unknown = [k for k in mapping if k not in COLUMN_ROLES]
    if unknown:
        raise _data_error(
            source, f"--columns names unknown field {unknown[0]!r}; the fields are " + ", ".join(map(repr, COLUMN_ROLES))
        )
    empty = [k for k, v in mapping.items() if not v]
    if empty:
        raise _data_error(source, f"--columns gives no column for field {empty[0]!r}")
    pair, dpo = {"a", "b", "label"} & set(mapping), {"chosen", "rejected"} & set(mapping)
    if pair and dpo:
        raise _data_error(source, "--columns names both a/b/label and chosen/rejected; use one pair of fields")
    needed = ("chosen", "rejected") if dpo else ("a", "b", "label")
    missing = [k for k in needed if k not in mapping]
    if missing:
        raise _data_error(source, "--columns needs field(s) " + ", ".join(map(repr, missing)) + " as well")
    return mapping


def check_label_map(source: str, label_map: Mapping[str, str] | None) -> dict[str, Label]:
    checked: dict[str, Label] = {}
    for value, target in (label_map or {}).items():
        word = str(target).strip().lower()
        if word not in LABEL_TARGETS:
            raise _data_error(
                source, f"--label-map maps {str(value)!r} to {str(target)!r}; map each value to a, b, tie or none"
            )
        checked[label_key(value)] = LABEL_TARGETS[word]
    return checked


def label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def messages(value: Any) -> list[Turn] | None:
    """The turns of a message list, or of a JSON string holding one (a CSV cell); None for plain text."""
    return as_messages(_json_cell(value, "[{"))


def _json_cell(value: Any, opening: str) -> Any:
    """A string cell that starts with `opening` parsed as JSON (None when it is not JSON); any other value as it is."""
    if isinstance(value, str) and value.lstrip().startswith(opening):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


def conversation_text(value: Any) -> Any:
    """A text field as stored: a message list as turns (`icai.turns`), anything else unchanged for the checks."""
    turns = messages(value)
    return value if turns is None else encode_turns(turns)


def _string_list(value: Any) -> list[str] | None:
    """A list of strings, or a JSON string holding one (the Arena Kaggle files hold each turn so)."""
    value = _json_cell(value, "[")
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _pair_texts(prompt: Any, text_a: Any, text_b: Any) -> tuple[Any, Any, Any]:
    """(prompt, a, b) with conversations kept as turns: message lists, or parallel lists of user and assistant turns."""
    turns_a, turns_b = messages(text_a), messages(text_b)
    if turns_a is not None and turns_b is not None:
        opening: list[Turn] = []
        if isinstance(prompt, str) and prompt.strip() and not (turns_a[0][1] == prompt and turns_a[0][0] != "assistant"):
            opening = [("user", prompt)]
        shared, rest_a, rest_b = split_conversations(opening + turns_a, opening + turns_b)
        return (encode_turns(shared) if shared else ""), encode_turns(rest_a), encode_turns(rest_b)
    asks, answers_a, answers_b = _string_list(prompt), _string_list(text_a), _string_list(text_b)
    if asks is not None and answers_a is not None and answers_b is not None and len(asks) == len(answers_a) == len(answers_b):
        if len(asks) == 1:
            return asks[0], answers_a[0], answers_b[0]
        first = [t for ask, answer in zip(asks, answers_a, strict=True) for t in (("user", ask), ("assistant", answer))]
        second = [t for ask, answer in zip(asks, answers_b, strict=True) for t in (("user", ask), ("assistant", answer))]
        shared, rest_a, rest_b = split_conversations(first, second)
        return encode_turns(shared), encode_turns(rest_a), encode_turns(rest_b)
    return prompt, conversation_text(text_a), conversation_text(text_b)


def collect_arena(columns: Sequence[str], records: Iterable[tuple[str, Any]], collector: Collector) -> None:
    """Chatbot Arena records: response_a/response_b (or conversation_a/conversation_b) and a winner."""
    names = set(columns)
    a_key, b_key = ("response_a", "response_b") if "response_a" in names else ("conversation_a", "conversation_b")
    one_hot = "winner" not in names and {"winner_model_a", "winner_model_b"} <= names
    if "winner" not in names and not one_hot:
        found = ", ".join(map(repr, columns)) or "none"
        raise collector.error(
            f"missing required column 'winner' (found: {found}); name the label column with --columns "
            f"a={a_key},b={b_key},label=COLUMN"
        )
    label_keys = ("winner_model_a", "winner_model_b", "winner_tie") if one_hot else ("winner",)
    core = {a_key, b_key, "prompt", "id", *label_keys}
    collector.notes.append(ARENA_TIE_NOTE)
    for index, (where, record) in enumerate(records):
        with collector.row(where):
            record = require_keys(record, (a_key, b_key), collector, where)
            cid = str(record["id"]) if not is_missing(record.get("id")) else str(index)
            if one_hot:
                label = _one_hot_label(record, collector, where)
            else:
                label = _word_label(record.get("winner"), ARENA_WORDS, collector, where, "winner")
            prompt, text_a, text_b = _pair_texts(record.get("prompt"), record[a_key], record[b_key])
            collector.add(
                where,
                id=cid,
                label=label,
                texts=((a_key, text_a), (b_key, text_b)),
                prompt=prompt,
                metadata={k: v for k, v in record.items() if k not in core},
            )


def _one_hot_label(record: Mapping[str, Any], collector: Collector, where: str) -> Label:
    flags = {}
    for key, label in (("winner_model_a", "a"), ("winner_model_b", "b"), ("winner_tie", "tie")):
        value = record.get(key)
        flags[label] = not is_missing(value) and label_key(value) in ("1", "true")
    chosen = [label for label, on in flags.items() if on]
    if len(chosen) > 1:
        raise collector.error(
            "more than one of winner_model_a, winner_model_b, winner_tie is set", where=where, kind="bad label"
        )
    return chosen[0] if chosen else None  # type: ignore[return-value]


def _word_label(value: Any, words: Mapping[str, Label], collector: Collector, where: str, column: str) -> Label:
    mapped = collector.mapped_label(value)
    if mapped != "unmapped":
        return mapped
    if is_missing(value) or not str(value).strip():
        return None
    key = label_key(value)
    if key in words:
        return words[key]
    error = collector.error(
        f"label {_show(value)} is not one of " + ", ".join(map(repr, words)) + " (--label-map maps other values)",
        where=where,
        column=column,
        kind="bad label",
    )
    if isinstance(error, RowError):
        error.value, error.known = value, tuple(words)
    raise error


def mapped_keys(columns: Sequence[str], mapping: Mapping[str, str], collector: Collector) -> tuple[str, str]:
    """The prompt and id columns of a mapped file (the named ones, else ``prompt``/``id`` where present, else "");
    a named column the file lacks is an error."""
    absent = [c for c in mapping.values() if c not in columns]
    if absent:
        found = ", ".join(map(repr, columns)) or "none"
        raise collector.error(f"column {absent[0]!r} named in --columns is not in the file (found: {found})")
    prompt_key = mapping.get("prompt", "prompt" if "prompt" in columns else "")
    id_key = mapping.get("id", "id" if "id" in columns else "")
    return prompt_key, id_key


def collect_mapped(
    columns: Sequence[str],
    records: Iterable[tuple[str, Any]],
    mapping: Mapping[str, str],
    collector: Collector,
    *,
    words: Mapping[str, Label],
) -> None:
    """Records whose a, b and label columns the caller named (``--columns``); `words` are the label values known
    without a ``--label-map``."""
    prompt_key, id_key = mapped_keys(columns, mapping, collector)
    a_key, b_key, label_col = mapping["a"], mapping["b"], mapping["label"]
    core = {a_key, b_key, label_col, prompt_key, id_key}
    words = {**words, **ARENA_WORDS}
    for index, (where, record) in enumerate(records):
        with collector.row(where):
            cid = str(record[id_key]) if id_key and not is_missing(record.get(id_key)) else str(index)
            label = _word_label(record.get(label_col), words, collector, where, label_col)
            prompt, text_a, text_b = _pair_texts(record.get(prompt_key) if prompt_key else "", record.get(a_key), record.get(b_key))
            collector.add(
                where,
                id=cid,
                label=label,
                texts=((a_key, text_a), (b_key, text_b)),
                prompt=prompt,
                metadata={k: v for k, v in record.items() if k not in core},
            )


def require_keys(
    record: Any, keys: Sequence[str], collector: Collector, where: str, *, expected: str = "a record"
) -> Mapping[str, Any]:
    """`record` as a mapping that has every one of `keys`; else the row's error (`expected`: what it should be)."""
    if not isinstance(record, dict):
        raise collector.error(f"expected {expected}, got {type(record).__name__}", where=where)
    missing = [k for k in keys if k not in record]
    if missing:
        raise collector.error(f"missing key(s) {', '.join(map(repr, missing))}", where=where)
    return record




def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _data_error(source: str, problem: str) -> DataError:
    return DataError(" ".join(f"{source}: {problem}".split()))
