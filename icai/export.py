"""Turn a constitution into files other tools read: AnnotatedPairs, judge prompts, promptfoo, Inspect.

Every exporter is a pure function from records (and, for AnnotatedPairs, the
run's comparison and vote tables) to text or a dict; `export` is the only one
that touches the disk.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from icai.annotated_pairs import (
    DEFAULT_ANNOTATOR_DESCRIPTION,
    DEFAULT_ANNOTATOR_ID,
    DEFAULT_ANNOTATOR_NAME,
    DEFAULT_ANNOTATOR_TYPE,
    FORMAT_VERSION,
    PRINCIPLE_ANNOTATOR_TYPE,
    annotator_id,
)
from icai.prompts import FRAME
from icai.types import Constitution, DataError, write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ExportFormat = Literal["annotated-pairs", "prompt", "promptfoo", "inspect"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)

COMPARISON_COLUMNS = ("id", "prompt", "text_a", "text_b", "preferred")
MODEL_COLUMNS = ("model_a", "model_b")
VOTE_COLUMNS = ("comparison_id", "principle_id", "value")

JUDGE_INTRO = (
    "You are judging which of two responses to the same prompt is better.\n"
    "Apply the following principles. They are listed from most to least important; "
    "when two principles disagree, follow the one that comes first."
)
JUDGE_OUTRO = (
    "If none of the principles tells the two responses apart, say so instead of guessing.\n"
    'Reply with "A" if the first response is better, "B" if the second is better, '
    'or "neither" if no principle applies.'
)
RUBRIC_INTRO = (
    "Grade the output against the following principles, listed from most to least important. "
    "They were learnt from human preferences; a good output follows them."
)
RUBRIC_OUTRO = "Pass the output if it follows the principles that apply to it, weighing earlier principles more."
INSPECT_GRADE_INSTRUCTIONS = (
    "After assessing the submission, reply with 'GRADE: $LETTER' (without quotes), where LETTER is "
    "C if the submission follows the principles that apply to it and I if it does not. "
    "First reason step by step, then end with the grade line."
)

_FRAME_PREFIX = re.compile(rf"^\s*{re.escape(FRAME)}\s+", re.IGNORECASE)


# --- AnnotatedPairs -------------------------------------------------------------------------


def to_annotated_pairs(
    constitution: Constitution,
    comparisons_frame: pd.DataFrame,
    votes_frame: pd.DataFrame,
    *,
    dataset_name: str,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """AnnotatedPairs v2.0 as Feedback Forensics reads it: the human label plus one annotator per principle.

    The human label is the format's default annotator (`DEFAULT_ANNOTATOR_ID`);
    each constitution principle is an annotator of type "principle" whose id
    is the MD5 of its text (`icai.annotated_pairs.annotator_id`). A vote is
    relative to the human label: "for" picks the preferred side, "against" the
    other one; "abstain" and "invalid" become `pref: null` with `no_pref_reason`
    "not_applicable" or "invalid". Comparisons a principle has no vote on carry
    no annotation from it. Every other column of the comparisons table (the
    train/test `split`, the input's metadata) becomes per-comparison metadata,
    as text; `model_a`/`model_b` become the responses' `model`.

    Args:
        created_at: timestamp to record; now (UTC) when omitted.
    """
    _require_columns(comparisons_frame, COMPARISON_COLUMNS, "comparisons table")
    _require_columns(votes_frame, VOTE_COLUMNS, "votes table")
    annotator_of = _principle_annotator_ids(constitution)
    votes = _votes_by_comparison(votes_frame, set(annotator_of))
    meta_keys = [c for c in comparisons_frame.columns if c not in COMPARISON_COLUMNS and c not in MODEL_COLUMNS]
    model_keys = [c for c in MODEL_COLUMNS if c in comparisons_frame.columns]

    comparisons = []
    for row_number, row in enumerate(comparisons_frame.to_dict("records"), start=1):
        comparison_id = str(row["id"])
        preferred = str(row["preferred"]).strip().lower()
        if preferred not in ("a", "b"):
            raise DataError(
                f"comparisons table row {row_number} (id {comparison_id!r}): column 'preferred' is "
                f"{row['preferred']!r}, expected 'a' or 'b'"
            )
        annotations: dict[str, dict[str, Any]] = {DEFAULT_ANNOTATOR_ID: {"pref": preferred}}
        for principle_id, aid in annotator_of.items():
            value = votes.get(comparison_id, {}).get(principle_id)
            if value is not None:
                annotations[aid] = _annotation(value, preferred)
        responses = [{"text": _text(row["text_a"])}, {"text": _text(row["text_b"])}]
        for key in model_keys:
            if model := _text(row[key]):
                responses[key == "model_b"]["model"] = model
        comparisons.append(
            {
                "id": comparison_id,
                "prompt": _text(row["prompt"]) or None,
                "response_a": responses[0],
                "response_b": responses[1],
                "annotations": annotations,
                "metadata": {key: text for key in meta_keys if (text := _text(row[key]))},
            }
        )

    annotators: dict[str, dict[str, str]] = {
        DEFAULT_ANNOTATOR_ID: {
            "name": DEFAULT_ANNOTATOR_NAME,
            "description": DEFAULT_ANNOTATOR_DESCRIPTION,
            "type": DEFAULT_ANNOTATOR_TYPE,
        }
    }
    for principle in constitution.principles:
        annotators[annotator_of[principle.id]] = {"description": principle.text, "type": PRINCIPLE_ANNOTATOR_TYPE}

    stamp = (created_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "metadata": {
            "version": FORMAT_VERSION,
            "description": (
                "Annotated pairs exported by icai: the human label and one annotator per "
                f"principle of a {len(constitution)}-principle constitution."
            ),
            "created_at": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dataset_name": dataset_name,
            "default_annotator": DEFAULT_ANNOTATOR_ID,
            "available_metadata_keys_per_comparison": meta_keys,
        },
        "annotators": annotators,
        "comparisons": comparisons,
    }


def _principle_annotator_ids(constitution: Constitution) -> dict[str, str]:
    """principle id -> annotator id (MD5 of the text), refusing two principles with one id."""
    out: dict[str, str] = {}
    taken = {DEFAULT_ANNOTATOR_ID: "the default annotator"}
    for principle in constitution.principles:
        aid = annotator_id(principle.text)
        if aid in taken:
            raise DataError(
                f"principle {principle.id!r} would get annotator id {aid!r}, already taken by {taken[aid]}; "
                "AnnotatedPairs needs distinct principle texts"
            )
        taken[aid] = f"principle {principle.id!r}"
        out[principle.id] = aid
    return out


def _votes_by_comparison(votes_frame: pd.DataFrame, principle_ids: set[str]) -> dict[str, dict[str, str]]:
    """comparison id -> principle id -> vote value, for constitution principles only."""
    out: dict[str, dict[str, str]] = {}
    for row_number, row in enumerate(votes_frame.to_dict("records"), start=1):
        principle_id = str(row["principle_id"])
        if principle_id not in principle_ids:
            continue
        comparison_id, value = str(row["comparison_id"]), str(row["value"]).strip().lower()
        if value not in ("for", "against", "abstain", "invalid"):
            raise DataError(
                f"votes table row {row_number}: column 'value' is {row['value']!r}, "
                "expected one of for, against, abstain, invalid"
            )
        per_comparison = out.setdefault(comparison_id, {})
        if principle_id in per_comparison:
            raise DataError(
                f"votes table row {row_number}: a second vote of principle {principle_id!r} "
                f"on comparison {comparison_id!r}"
            )
        per_comparison[principle_id] = value
    return out


def _annotation(value: str, preferred: str) -> dict[str, Any]:
    if value == "for":
        return {"pref": preferred}
    if value == "against":
        return {"pref": "b" if preferred == "a" else "a"}
    return {"pref": None, "no_pref_reason": "not_applicable" if value == "abstain" else "invalid"}


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}")


def _text(value: Any) -> str:
    return "" if _is_missing(value) else str(value)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


# --- prompts and rubrics --------------------------------------------------------------------


def to_judge_prompt(constitution: Constitution) -> str:
    """A pairwise judge prompt listing the principles in rank order."""
    return f"{JUDGE_INTRO}\n\n{_numbered(_principle_lines(constitution))}\n\n{JUDGE_OUTRO}\n"


def rubric(constitution: Constitution) -> str:
    """The principles as a rubric for grading a single output (used by promptfoo and Inspect)."""
    lines = [_as_statement(text) for text in _principle_lines(constitution)]
    return f"{RUBRIC_INTRO}\n\n{_numbered(lines)}\n\n{RUBRIC_OUTRO}"


def to_promptfoo_yaml(constitution: Constitution) -> str:
    """A promptfoo `defaultTest` with one `llm-rubric` assertion built from the principles."""
    body = "\n".join(f"        {line}" if line else "" for line in rubric(constitution).splitlines())
    return (
        f"# Generated by icai from a {len(constitution)}-principle constitution.\n"
        "defaultTest:\n"
        "  assert:\n"
        "    - type: llm-rubric\n"
        "      value: |-\n"
        f"{body}\n"
    )


def to_inspect_scorer(constitution: Constitution) -> str:
    """Python source for an Inspect scorer: `model_graded_qa` with the constitution as instructions."""
    instructions = f"{rubric(constitution)}\n\n{INSPECT_GRADE_INSTRUCTIONS}"
    principles = "".join(f"    {text!r},\n" for text in _principle_lines(constitution))
    return (
        f'"""Inspect scorer generated by icai from a {len(constitution)}-principle constitution."""\n'
        "\n"
        "from inspect_ai.scorer import Scorer, accuracy, model_graded_qa, scorer, stderr\n"
        "\n"
        f"PRINCIPLES = [\n{principles}]\n"
        "\n"
        f"INSTRUCTIONS = {instructions!r}\n"
        "\n"
        "\n"
        "@scorer(metrics=[accuracy(), stderr()])\n"
        "def constitution_scorer(model: str | None = None) -> Scorer:\n"
        '    """Grade each output against the constitution with a model."""\n'
        "    return model_graded_qa(instructions=INSTRUCTIONS, model=model)\n"
    )


def _principle_lines(constitution: Constitution) -> list[str]:
    if not constitution.principles:
        raise DataError("the constitution has no principles; there is nothing to export")
    # one printable line each: the texts go into YAML block scalars and numbered lists
    return [_one_line(p.text) for p in constitution.principles]


def _one_line(text: str) -> str:
    return " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())


def _numbered(lines: list[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))


def _as_statement(text: str) -> str:
    """'Select the response that is concise.' -> 'The response is concise.' (others unchanged)."""
    rest = _FRAME_PREFIX.sub("", text, count=1)
    return text if rest == text else f"The response {rest}"


# --- files ----------------------------------------------------------------------------------


def export(constitution_path: str | Path, fmt: str, out_path: str | Path | None = None) -> str:
    """Export the constitution at `constitution_path` as `fmt`; also write it to `out_path` if given.

    "annotated-pairs" reads comparisons.csv, votes.csv and (when present)
    test_votes.csv from the same directory.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(constitution_path)
    constitution = Constitution.load(path)
    if fmt == "annotated-pairs":
        comparisons = read_run_csv(path.parent / "comparisons.csv", COMPARISON_COLUMNS)
        votes = read_run_csv(path.parent / "votes.csv", VOTE_COLUMNS)
        if (path.parent / "test_votes.csv").exists():
            import pandas as pd

            # held-out votes (on the test split) let Feedback Forensics show both splits
            test_votes = read_run_csv(path.parent / "test_votes.csv", VOTE_COLUMNS)
            votes = pd.concat([votes, test_votes], ignore_index=True)
        name = str(constitution.metadata.get("dataset_name") or f"icai run {path.parent.name}")
        data = to_annotated_pairs(constitution, comparisons, votes, dataset_name=name)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "prompt":
        text = to_judge_prompt(constitution)
    elif fmt == "promptfoo":
        text = to_promptfoo_yaml(constitution)
    else:
        text = to_inspect_scorer(constitution)
    if out_path is not None:
        write_text_atomic(out_path, text)
        log.info("wrote %s export to %s", fmt, out_path)
    return text


def read_run_csv(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A run-directory CSV with every column read as text (ids like "007" stay intact)."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, UnicodeDecodeError) as exc:  # pandas parser errors are ValueErrors
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame
