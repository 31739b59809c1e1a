"""Turn a constitution into files other tools read: AnnotatedPairs, judge prompts, promptfoo, Inspect.

Every exporter is a pure function from records (and, for AnnotatedPairs, the
run's comparison and vote tables) to text or a dict; `export` is the only one
that touches the disk.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from icai.annotated_pairs import (
    DEFAULT_ANNOTATOR_DESCRIPTION,
    DEFAULT_ANNOTATOR_ID,
    DEFAULT_ANNOTATOR_NAME,
    DEFAULT_ANNOTATOR_TYPE,
    FORMAT_VERSION,
    PRINCIPLE_ANNOTATOR_TYPE,
    annotator_id,
)
from icai.errors import DataError
from icai.files import write_text_atomic
from icai.prompts import BLOCK_TAG, FRAME, JUDGE_SCHEMA, MAX_RESPONSE_CHARS, judge_request
from icai.store import COMPARISON_COLUMNS, VOTE_COLUMNS, VOTE_PICK_COLUMNS, RunStore
from icai.textfmt import is_missing, one_line
from icai.turns import render_turns
from icai.types import Comparison, Constitution, Pick, Principle, Side, Vote

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MODEL_COLUMNS = ("model_a", "model_b")
"""Input metadata columns that name each response's model: the annotated-pairs export puts them on the responses."""

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
    also: Sequence[Principle] = (),
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
        also: principles outside the constitution to export as annotators too (the user's own principles
            that were not selected: every output shows them).
    """
    _require_columns(comparisons_frame, COMPARISON_COLUMNS, "comparisons table")
    _require_columns(votes_frame, VOTE_COLUMNS, "votes table")
    in_constitution = {p.id for p in constitution.principles}
    principles = [*constitution.principles, *(p for p in also if p.id not in in_constitution)]
    annotator_of = _principle_annotator_ids(principles)
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
        # multi-turn texts (`icai.turns`) go out turn by turn, as the models saw them
        responses = [{"text": render_turns(_text(row["text_a"]))}, {"text": render_turns(_text(row["text_b"]))}]
        for key in model_keys:
            if model := _text(row[key]):
                responses[key == "model_b"]["model"] = model
        comparisons.append(
            {
                "id": comparison_id,
                "prompt": render_turns(_text(row["prompt"])) or None,
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
    for principle in principles:
        # origin and hint are extra keys: Feedback Forensics' loader reads annotators with .get and ignores them
        annotators[annotator_of[principle.id]] = {
            "description": principle.text,
            "type": PRINCIPLE_ANNOTATOR_TYPE,
            "origin": principle.origin,
            **({"hint": principle.hint} if principle.hint else {}),
            **({} if principle.id in in_constitution else {"in_constitution": "no"}),
        }

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


def _principle_annotator_ids(principles: Sequence[Principle]) -> dict[str, str]:
    """principle id -> annotator id (MD5 of the text), refusing two principles with one id."""
    out: dict[str, str] = {}
    taken = {DEFAULT_ANNOTATOR_ID: "the default annotator"}
    for principle in principles:
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
    return "" if is_missing(value) else str(value)




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
        f"{provenance_comments(constitution, prefix='# ')}"
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
    origins = "".join(f"    {{'origin': {p.origin!r}, 'hint': {p.hint!r}}},\n" for p in constitution.principles)
    return (
        f'"""Inspect scorer generated by icai from a {len(constitution)}-principle constitution."""\n'
        "\n"
        "from inspect_ai.scorer import Scorer, accuracy, model_graded_qa, scorer, stderr\n"
        "\n"
        f"PRINCIPLES = [\n{principles}]\n"
        "\n"
        "# Provenance of each principle (not shown to the grader): origin = who wrote it, hint = what it saw.\n"
        f"PRINCIPLE_ORIGINS = [\n{origins}]\n"
        + "".join(f"# {line}\n" for line in unselected_user_lines(constitution))
        + "\n"
        f"INSTRUCTIONS = {instructions!r}\n"
        "\n"
        "\n"
        "@scorer(metrics=[accuracy(), stderr()])\n"
        "def constitution_scorer(model: str | None = None) -> Scorer:\n"
        '    """Grade each output against the constitution with a model."""\n'
        "    return model_graded_qa(instructions=INSTRUCTIONS, model=model)\n"
    )


def provenance_comments(constitution: Constitution, *, prefix: str = "# ") -> str:
    """One comment line per principle: rank, origin and hint (`icai.types.Principle`); a header line first."""
    lines = [f"{prefix}Provenance (origin = who wrote the principle, hint = what the writer was shown):"]
    for rank, p in enumerate(constitution.principles, start=1):
        lines.append(f"{prefix}  {rank}. origin {one_line(p.origin, printable=True)}" + (f", hint {one_line(p.hint, printable=True)}" if p.hint else ""))
    lines.extend(f"{prefix}{line}" for line in unselected_user_lines(constitution))
    return "\n".join(lines) + "\n"


def unselected_user_lines(constitution: Constitution) -> list[str]:
    """Comment lines naming the user's principles that were tested but not selected (none: no lines)."""
    rows = [r for r in constitution.metadata.get("user_principles") or [] if not r.get("in_constitution")]
    if not rows:
        return []
    lines = ["Your principles tested but not selected (not given to the grader):"]
    for row in rows:
        stats = row.get("stats") or {}
        agreement = stats.get("agreement")
        detail = "no decisive votes" if agreement is None else f"agreement {agreement:.2f}, {stats.get('verdict') or 'unrated'}"
        lines.append(f"  - {one_line(str(row['text']), printable=True)} ({detail})")
    return lines


def _principle_lines(constitution: Constitution) -> list[str]:
    if not constitution.principles:
        raise DataError("the constitution has no principles; there is nothing to export")
    # one printable line each: the texts go into YAML block scalars and numbered lists
    return [one_line(p.text, printable=True) for p in constitution.principles]




def _numbered(lines: list[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))


def _as_statement(text: str) -> str:
    """'Select the response that is concise.' -> 'The response is concise.' (others unchanged)."""
    rest = _FRAME_PREFIX.sub("", text, count=1)
    return text if rest == text else f"The response {rest}"


# --- the table of formats, and files --------------------------------------------------------
#
# Adding a format: write its render function (constitution and run tables in, text out) and add one
# `ExportFormat` to `EXPORT_FORMATS` (or call `register_format`); the CLI's --format choices and help,
# the workbench's export links and downloads, and the README's list all read this table.


class RunTables:
    """The run tables an export reads beside a constitution (comparisons.csv, votes.csv, test_votes.csv).

    Read when a render asks; `extra_votes` (the workbench's own votes) join votes.csv.
    """

    def __init__(self, run_dir: Path, *, extra_votes: pd.DataFrame | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.extra_votes = extra_votes

    @functools.cached_property
    def store(self) -> RunStore:
        return RunStore.existing(self.run_dir)

    @property
    def run_name(self) -> str:
        return self.run_dir.name

    def has(self, name: str) -> bool:
        return self.store.has(name)

    def read(self, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
        return self.store.read_csv(name, columns)

    def votes(self, columns: tuple[str, ...]) -> pd.DataFrame:
        """votes.csv, with `extra_votes` after it."""
        votes = self.read("votes.csv", columns)
        if self.extra_votes is None:
            return votes
        import pandas as pd

        return pd.concat([votes, self.extra_votes], ignore_index=True)

    def test_votes(self, columns: tuple[str, ...]) -> pd.DataFrame | None:
        """test_votes.csv, or None when the run has no held-out votes."""
        return self.read("test_votes.csv", columns) if self.has("test_votes.csv") else None


@dataclass(frozen=True)
class ExportFormat:
    """One export format: its name, how it renders, the file it gets in a folder, the run tables it reads, its help."""

    name: str
    render: Callable[[Constitution, RunTables], str]
    file_name: str
    """The file an export gets when --out names a folder; its suffix names the workbench's downloads too."""
    help: str
    """One line for `icai export --help`."""
    tables: tuple[str, ...] = ()
    """Run tables it needs beside constitution.json (test_votes.csv is read too when present)."""


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _render_annotated_pairs(constitution: Constitution, tables: RunTables) -> str:
    comparisons = tables.read("comparisons.csv", COMPARISON_COLUMNS)
    votes = tables.votes(VOTE_COLUMNS)
    test_votes = tables.test_votes(VOTE_COLUMNS)
    if test_votes is not None:
        import pandas as pd

        # held-out votes (on the test split) let Feedback Forensics show both splits
        votes = pd.concat([votes, test_votes], ignore_index=True)
    name = str(constitution.metadata.get("dataset_name") or f"icai run {tables.run_name}")
    data = to_annotated_pairs(constitution, comparisons, votes, dataset_name=name, also=user_principles_of(constitution))
    return _json_text(data)


def _render_reward_weights(constitution: Constitution, tables: RunTables) -> str:
    comparisons = tables.read("comparisons.csv", COMPARISON_COLUMNS)
    votes = tables.votes(VOTE_PICK_COLUMNS)
    test_votes = tables.test_votes(VOTE_PICK_COLUMNS)
    return _json_text(to_reward_weights(constitution, comparisons, votes, test_votes))


RUN_TABLES = ("comparisons.csv", "votes.csv")
"""The run files the annotated-pairs and reward-weights exports read beside constitution.json."""

EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "annotated-pairs",
            _render_annotated_pairs,
            "constitution.annotated_pairs.json",
            "AnnotatedPairs v2.0 JSON for Feedback Forensics: the human label and one annotator per principle",
            RUN_TABLES,
        ),
        ExportFormat(
            "prompt", lambda c, _: to_judge_prompt(c), "constitution.prompt.txt", "a pairwise judge prompt (text)"
        ),
        ExportFormat(
            "promptfoo",
            lambda c, _: to_promptfoo_yaml(c),
            "constitution.promptfoo.yaml",
            "a promptfoo defaultTest with an llm-rubric assertion (YAML)",
        ),
        ExportFormat(
            "inspect",
            lambda c, _: to_inspect_scorer(c),
            "constitution_scorer.py",
            "an Inspect scorer: model_graded_qa with the constitution (Python)",
        ),
        ExportFormat(
            "pairwise-prompt",
            lambda c, _: _json_text(to_pairwise_judge(c)),
            "pairwise_judge.json",
            "icai's pairwise judge: system and user templates, answer format, position-swap rule (JSON)",
        ),
        ExportFormat(
            "pairwise-inspect",
            lambda c, _: to_pairwise_inspect_task(c),
            "pairwise_judge.py",
            "a standalone Inspect task that judges pairs in both orders (Python)",
        ),
        ExportFormat(
            "pairwise-promptfoo",
            lambda c, _: to_pairwise_promptfoo_yaml(c),
            "pairwise.yaml",
            "a promptfoo config that judges each pair in both orders (YAML)",
        ),
        ExportFormat(
            "reward-weights",
            _render_reward_weights,
            "reward.json",
            "per-principle reward weights fitted on the run's votes, with held-out accuracy (JSON)",
            RUN_TABLES,
        ),
    )
}
"""Every export format by name, in the order the CLI and the workbench list them."""


def register_format(fmt: ExportFormat) -> None:
    """Add (or replace) a format in `EXPORT_FORMATS`: the CLI, the workbench and `export` offer it from then on."""
    EXPORT_FORMATS[fmt.name] = fmt


def export_format(name: str) -> ExportFormat:
    """The format called `name`; DataError naming the known ones otherwise."""
    if name not in EXPORT_FORMATS:
        raise DataError(f"unknown export format {name!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[name]


def render_export(constitution: Constitution, fmt: ExportFormat, tables: RunTables, *, beside: str) -> str:
    """The text of `constitution` in `fmt`; refused in one sentence when a run table it needs is not in the run.

    beside: the constitution's file name, named in the refusal.
    """
    if fmt.tables:
        missing = [name for name in fmt.tables if not tables.has(name)]
        if missing:
            raise DataError(
                f"the {fmt.name} export reads the run's votes and pairs, but {tables.store.path} has no "
                f"{' or '.join(missing)} beside {beside}: export from the run directory, or copy "
                f"{', '.join(fmt.tables)} (and test_votes.csv, if any) next to the constitution"
            )
    return fmt.render(constitution, tables)


def export(constitution_path: str | Path, fmt: str, out_path: str | Path | None = None) -> str:
    """Export the constitution at `constitution_path` as `fmt`; also write it to `out_path` if given.

    A format with run tables (annotated-pairs, reward-weights) reads them from the constitution's directory.
    """
    spec = export_format(fmt)
    path = constitution_file(constitution_path)
    constitution = Constitution.load(path)
    text = render_export(constitution, spec, RunTables(path.parent), beside=path.name)
    if out_path is not None:
        target = export_target(out_path, fmt)
        write_text_atomic(target, text)
        log.info("wrote %s export to %s", fmt, target)
    return text


def export_target(out_path: str | Path, fmt: str) -> Path:
    """Where an export to `out_path` goes: the path itself, or the format's `file_name` inside it when it is a folder
    (an existing one, or a new one named with a trailing slash: ``--out exports/``)."""
    out = Path(out_path)
    is_folder = out.is_dir() or str(out_path).endswith(("/", os.sep))
    return out / export_format(fmt).file_name if is_folder else out


def constitution_file(path: str | Path) -> Path:
    """The constitution.json of `path`: the file itself, or the one inside a run directory."""
    path = Path(path)
    if path.is_dir():
        inside = path / "constitution.json"
        if not inside.is_file():
            raise DataError(f"{path} is a directory without a constitution.json; give a constitution file or a run directory")
        return inside
    return path


def user_principles_of(constitution: Constitution) -> list[Principle]:
    """The user's principles recorded with a constitution (constitution.json `user_principles`), selected or not."""
    rows = constitution.metadata.get("user_principles") or []
    return [Principle(id=str(r["id"]), text=str(r["text"]), origin=str(r.get("origin", "user"))) for r in rows]


# --- pairwise judge and reward weights ------------------------------------------------------
#
# The pairwise exports carry icai's own judge (`icai.prompts.judge_request`, the prompt the
# constitution is evaluated with) and its position-swap rule (`icai.evaluate.judge`): ask each
# pair in both orders, translate the swapped verdict back, and count a split verdict as a tie.

PAIRWISE_JUDGE_SCHEMA = "icai.pairwise_judge/1"

POSITION_SWAP_ADVICE = (
    "Ask the judge twice per pair: once with the responses as given (A = response_a, B = response_b) "
    "and once swapped (A = response_b, B = response_a); translate the swapped verdict back (its A is response_b). "
    "Both orders agree: that response is preferred. They split: a tie (score it 0.5 against a label). "
    "One answer unreadable: the other decides. Judges favour a slot; asking once lets that bias decide."
)

_SLOTS = {"prompt": "\x00icai:prompt\x00", "response_a": "\x00icai:response_a\x00", "response_b": "\x00icai:response_b\x00"}
"""Markers rendered through `judge_request` in place of the texts, then replaced by each tool's placeholder syntax."""

_JINJA_OPENERS = re.compile(r"\{([{%#])")


def pairwise_judge_messages(constitution: Constitution, *, logprob: bool = False) -> tuple[str, str]:
    """(system, user) of icai's judge for this constitution, with marked slots for the prompt and both responses."""
    request = judge_request(
        _SLOTS["prompt"], _SLOTS["response_a"], _SLOTS["response_b"], _principle_lines(constitution), logprob=logprob
    )
    system = next((m.content for m in request.messages if m.role == "system"), "")
    return system, request.messages[-1].content


_JINJA_NAMES = {"prompt": "{{ prompt }}", "response_a": "{{ response_a }}", "response_b": "{{ response_b }}"}
_FORMAT_NAMES = {"prompt": "{prompt}", "response_a": "{response_a}", "response_b": "{response_b}"}
_PROMPTFOO_NAMES = {
    "prompt": '{{ prompt or "(none)" }}',
    "response_a": '{{ response_b if order == "BA" else response_a }}',
    "response_b": '{{ response_a if order == "BA" else response_b }}',
}
"""nunjucks: slot A shows response_b and slot B response_a when the test's `order` var is "BA"."""


def _fill_slots(template: str, names: dict[str, str], *, style: Literal["jinja", "format"]) -> str:
    """Replace the slot markers with placeholders, after escaping the literal text for the placeholder syntax.

    The escaping keeps principle texts from opening a Jinja/nunjucks tag or a str.format field.
    """
    text = template.replace("{", "{{").replace("}", "}}") if style == "format" else _JINJA_OPENERS.sub(r"{ \1", template)
    for key, marker in _SLOTS.items():
        text = text.replace(marker, names[key])
    return text


def to_pairwise_judge(constitution: Constitution) -> dict[str, Any]:
    """icai's pairwise judge as a JSON-ready spec: system and user templates, answer format, position-swap rule."""
    system, user = pairwise_judge_messages(constitution)
    letter_system, letter_user = pairwise_judge_messages(constitution, logprob=True)
    return {
        "schema": PAIRWISE_JUDGE_SCHEMA,
        "description": (
            f"Pairwise judge generated by icai from a {len(constitution)}-principle constitution: "
            "the prompt icai evaluates a constitution with. Two responses in, A or B out."
        ),
        "principles": [
            {"rank": i, "id": p.id, "text": p.text, "origin": p.origin, "hint": p.hint}
            for i, p in enumerate(constitution.principles, start=1)
        ],
        "template_syntax": "{{ name }} placeholders (Jinja2, nunjucks, mustache); fill them with the raw texts",
        "placeholders": {
            "prompt": 'the prompt both responses answer; "(none)" when there is none',
            "response_a": "the response shown first, in slot A",
            "response_b": "the response shown second, in slot B",
        },
        "sanitize": (
            f"icai replaces block tags such as [/RESPONSE A] inside the texts with (/RESPONSE A) and cuts a text over "
            f"{MAX_RESPONSE_CHARS} characters to its first and last {MAX_RESPONSE_CHARS // 2}, so a response cannot "
            "close its own block"
        ),
        "system": system,
        "user": _fill_slots(user, _JINJA_NAMES, style="jinja"),
        "answer": {"json_schema": JUDGE_SCHEMA, "read": 'the value of "preferred": "A" (slot A) or "B" (slot B)'},
        "letter_variant": {
            "system": letter_system,
            "user": _fill_slots(letter_user, _JINJA_NAMES, style="jinja"),
            "answer": 'the next token, "A" or "B"; icai compares their log-probabilities (max_tokens 1)',
        },
        "position_swap": POSITION_SWAP_ADVICE,
    }


PAIRWISE_PROMPTFOO_ASSERT = """\
const text = typeof output === "string" ? output : JSON.stringify(output);
const found = text.match(/"preferred"\\s*:\\s*"\\s*(?:response\\s+)?([AB])\\b/i)
  || text.match(/^\\s*(?:response\\s+)?([AB])\\s*\\.?\\s*$/i);
const said = found ? found[1].toUpperCase() : null;
const preferred = String(context.vars.preferred ?? "").trim().toUpperCase();
if (preferred !== "A" && preferred !== "B") {
  throw new Error(`vars.preferred must be "A" or "B", got ${JSON.stringify(context.vars.preferred)}`);
}
const expected = context.vars.order === "BA" ? (preferred === "A" ? "B" : "A") : preferred;
const pass = said === expected;
return {
  pass,
  score: pass ? 1 : 0,
  reason: `order ${context.vars.order}: the judge picked ${said ?? "nothing readable"}, the preferred response is in slot ${expected}`,
};"""


def to_pairwise_promptfoo_yaml(constitution: Constitution, *, tests: str = "file://pairs.csv", provider: str = "openai:gpt-4o-mini") -> str:
    """A promptfoo config that runs icai's pairwise judge on labelled pairs, in both orders.

    Each test's vars are prompt, response_a, response_b and preferred ("A" or "B").
    `defaultTest.vars.order: [AB, BA]` expands every test into both presentation
    orders; the assertion translates the BA verdict back. A consistent, right judge
    passes both rows of a pair; a split verdict passes one of them (a tie scores 0.5).
    """
    system, user = pairwise_judge_messages(constitution)
    prompt = f"{system}\n\n{_fill_slots(user, _PROMPTFOO_NAMES, style='jinja')}"
    import yaml

    config = {
        "description": f"icai pairwise judge ({len(constitution)}-principle constitution)",
        "prompts": [{"label": "icai-pairwise-judge", "raw": prompt}],
        "providers": [provider],
        "defaultTest": {
            "vars": {"order": ["AB", "BA"]},
            "assert": [{"type": "javascript", "value": PAIRWISE_PROMPTFOO_ASSERT}],
        },
        "tests": tests,
    }
    header = (
        f"# Generated by icai from a {len(constitution)}-principle constitution: a pairwise judge.\n"
        "# tests: a CSV (or YAML/JSON) of pairs with the vars prompt, response_a, response_b, preferred (A or B).\n"
        "# providers: the judge model. defaultTest.vars.order expands each pair into both orders (AB, BA),\n"
        "# as icai asks them; the assertion translates the BA verdict back, so a split verdict passes one\n"
        "# of its two rows: the pass rate counts a tie as 0.5. (promptfoo's select-best ranks the outputs\n"
        "# of several prompts or providers; it does not judge two given responses, hence this config.)\n"
        "# Unlike icai, the prompt does not neutralise block tags such as [/RESPONSE A] inside the texts.\n"
        "# Run: promptfoo eval -c this_file.yaml\n"
    ) + provenance_comments(constitution, prefix="# ")
    return header + yaml.dump(config, Dumper=_block_dumper(), sort_keys=False, allow_unicode=True, width=10_000)


@functools.cache
def _block_dumper() -> type:
    import yaml

    class BlockDumper(yaml.SafeDumper):
        """Multi-line strings as `|` block scalars, so the prompt and the assertion stay readable."""

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value and all(line == line.rstrip() for line in value.splitlines()) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, represent_str)
    return BlockDumper


def to_pairwise_inspect_task(constitution: Constitution) -> str:
    """Python source of an Inspect task and scorer that judge two responses per sample with the constitution.

    Standalone (it needs inspect_ai, not icai). The scorer asks the model in both
    orders and returns A, B or tie, as `icai.evaluate.judge` does. The program is the package's
    template `icai/templates/pairwise_inspect.py.tmpl`, with the constitution's values in its @@SLOTS@@.
    """
    system, user = pairwise_judge_messages(constitution)
    values = {
        "N": str(len(constitution)),
        "PRINCIPLES": "".join(f"    {text!r},\n" for text in _principle_lines(constitution)),
        "SYSTEM": repr(system),
        "TEMPLATE": repr(_fill_slots(user, _FORMAT_NAMES, style="format")),
        "MAX_CHARS": str(MAX_RESPONSE_CHARS),
        "BLOCK_TAG": repr(BLOCK_TAG.pattern),
        "PROVENANCE": provenance_comments(constitution, prefix="# "),
    }
    return re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], _template("pairwise_inspect.py.tmpl"))


@functools.cache
def _template(name: str) -> str:
    """A program template shipped in the package (icai/templates/)."""
    return resources.files("icai").joinpath("templates", name).read_text(encoding="utf-8")


_PICKS: dict[str, Pick] = {"a": "a", "b": "b", "neither": "neither", "invalid": "invalid"}


def to_reward_weights(
    constitution: Constitution,
    comparisons_frame: pd.DataFrame,
    votes_frame: pd.DataFrame,
    test_votes_frame: pd.DataFrame | None = None,
    *,
    seed: int | None = None,
) -> dict[str, Any]:
    """Per-principle reward weights fitted on a run's training votes (`icai.reward.fit_reward_weights`), as JSON data.

    Pairs whose `split` is "test" are held out; held-out accuracy needs test votes
    of every constitution principle (a run's test_votes.csv covers the principle-count
    curve's principles). Without a `split` column every pair is a training pair.

    Args:
        seed: defaults to the run's seed (constitution metadata), else 0.
    """
    from icai.reward import fit_reward_weights

    _require_columns(comparisons_frame, COMPARISON_COLUMNS, "comparisons table")
    _require_columns(votes_frame, VOTE_PICK_COLUMNS, "votes table")
    config = constitution.metadata.get("config") or {}
    if seed is None:
        seed = int(config.get("seed", 0))
    train: list[Comparison] = []
    test: list[Comparison] = []
    for row_number, row in enumerate(comparisons_frame.to_dict("records"), start=1):
        label = str(row["preferred"]).strip().lower()
        if label not in ("a", "b"):
            raise DataError(
                f"comparisons table row {row_number} (id {row['id']!r}): column 'preferred' is "
                f"{row['preferred']!r}, expected 'a' or 'b'"
            )
        preferred: Side = "a" if label == "a" else "b"
        comparison = Comparison(str(row["id"]), _text(row["text_a"]), _text(row["text_b"]), preferred, _text(row["prompt"]))
        (test if str(row.get("split", "train")) == "test" else train).append(comparison)
    test_votes: list[Vote] = []
    if test_votes_frame is not None:
        _require_columns(test_votes_frame, VOTE_PICK_COLUMNS, "test votes table")
        test_votes = _vote_records(test_votes_frame)
    _principle_lines(constitution)  # an empty constitution fails as in the other exports
    weights = fit_reward_weights(
        constitution.principles,
        _vote_records(votes_frame),
        train,
        test_votes=test_votes,
        test=test,
        seed=seed,
        metadata={
            "annotator_model": constitution.metadata.get("model"),
            "vote_mode": config.get("vote_mode"),
            "dataset_hash": constitution.metadata.get("dataset_hash"),
            "icai_version": constitution.metadata.get("version"),
        },
    )
    return weights.to_dict()


def _vote_records(frame: pd.DataFrame) -> list[Vote]:
    """Votes with their picks (the reward's features); `value` is not used."""
    votes = []
    for row_number, row in enumerate(frame.to_dict("records"), start=1):
        picks: list[Pick] = []
        for raw in str(row["picks"]).split(","):
            pick = raw.strip().lower()
            if pick in _PICKS:
                picks.append(_PICKS[pick])
            elif pick:
                raise DataError(
                    f"votes table row {row_number}: column 'picks' has {raw.strip()!r}, expected a, b, neither or invalid"
                )
        votes.append(Vote(str(row["comparison_id"]), str(row["principle_id"]), "abstain", tuple(picks)))
    return votes
