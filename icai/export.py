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
from collections.abc import Sequence
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
from icai.prompts import _BLOCK_TAG, FRAME, JUDGE_SCHEMA, MAX_RESPONSE_CHARS, judge_request
from icai.store import RunStore, read_run_csv  # noqa: F401 (read_run_csv: re-exported, its home is the store)
from icai.turns import render_turns
from icai.types import Comparison, Constitution, DataError, Pick, Principle, Side, Vote, write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ExportFormat = Literal[
    "annotated-pairs",
    "prompt",
    "promptfoo",
    "inspect",
    "pairwise-prompt",
    "pairwise-inspect",
    "pairwise-promptfoo",
    "reward-weights",
]
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
        lines.append(f"{prefix}  {rank}. origin {_one_line(p.origin)}" + (f", hint {_one_line(p.hint)}" if p.hint else ""))
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
        lines.append(f"  - {_one_line(str(row['text']))} ({detail})")
    return lines


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
    test_votes.csv from the same directory; "reward-weights" reads the same files.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = constitution_file(constitution_path)
    constitution = Constitution.load(path)
    if fmt == "annotated-pairs":
        run = _run_beside(path, fmt)
        comparisons = run.read_csv("comparisons.csv", COMPARISON_COLUMNS)
        votes = run.read_csv("votes.csv", VOTE_COLUMNS)
        if run.has("test_votes.csv"):
            import pandas as pd

            # held-out votes (on the test split) let Feedback Forensics show both splits
            test_votes = run.read_csv("test_votes.csv", VOTE_COLUMNS)
            votes = pd.concat([votes, test_votes], ignore_index=True)
        name = str(constitution.metadata.get("dataset_name") or f"icai run {path.parent.name}")
        data = to_annotated_pairs(constitution, comparisons, votes, dataset_name=name, also=user_principles_of(constitution))
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "prompt":
        text = to_judge_prompt(constitution)
    elif fmt == "promptfoo":
        text = to_promptfoo_yaml(constitution)
    elif fmt == "inspect":
        text = to_inspect_scorer(constitution)
    else:
        text = _export_pairwise_or_reward(constitution, fmt, path)
    if out_path is not None:
        target = export_target(out_path, fmt)
        write_text_atomic(target, text)
        log.info("wrote %s export to %s", fmt, target)
    return text


DEFAULT_FILE_NAMES: dict[str, str] = {
    "annotated-pairs": "constitution.annotated_pairs.json",
    "prompt": "constitution.prompt.txt",
    "promptfoo": "constitution.promptfoo.yaml",
    "inspect": "constitution_scorer.py",
    "pairwise-prompt": "pairwise_judge.json",
    "pairwise-inspect": "pairwise_judge.py",
    "pairwise-promptfoo": "pairwise.yaml",
    "reward-weights": "reward.json",
}
"""The file an export gets when --out names an existing directory."""


def export_target(out_path: str | Path, fmt: str) -> Path:
    """Where an export to `out_path` goes: the path itself, or `DEFAULT_FILE_NAMES[fmt]` inside it when it is a folder
    (an existing one, or a new one named with a trailing slash: ``--out exports/``)."""
    out = Path(out_path)
    is_folder = out.is_dir() or str(out_path).endswith(("/", os.sep))
    return out / DEFAULT_FILE_NAMES[fmt] if is_folder else out


def constitution_file(path: str | Path) -> Path:
    """The constitution.json of `path`: the file itself, or the one inside a run directory."""
    path = Path(path)
    if path.is_dir():
        inside = path / "constitution.json"
        if not inside.is_file():
            raise DataError(f"{path} is a directory without a constitution.json; give a constitution file or a run directory")
        return inside
    return path


RUN_TABLES = ("comparisons.csv", "votes.csv")
"""The run files the annotated-pairs and reward-weights exports read beside constitution.json."""


def _run_beside(path: Path, fmt: str) -> RunStore:
    """The run directory holding `path`, refused in one sentence when the tables an export needs are not there."""
    run = RunStore.existing(path.parent)
    missing = [name for name in RUN_TABLES if not run.has(name)]
    if missing:
        raise DataError(
            f"the {fmt} export reads the run's votes and pairs, but {run.path} has no {' or '.join(missing)} beside "
            f"{path.name}: export from the run directory, or copy {', '.join(RUN_TABLES)} (and test_votes.csv, "
            "if any) next to the constitution"
        )
    return run


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
        "principles": [{"rank": i, "id": p.id, "text": p.text} for i, p in enumerate(constitution.principles, start=1)],
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
    )
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


_PAIRWISE_INSPECT_BODY = '''
_SWAP = {"A": "B", "B": "A"}


def sanitize(text: str) -> str:
    """As icai does: neutralise block tags inside a text and cut a long one to its head and tail."""
    text = BLOCK_TAG.sub(lambda m: f"({m.group(1)}{m.group(2)})", text)
    if len(text) > MAX_CHARS:
        half = MAX_CHARS // 2
        text = text[:half] + "\\n[... cut ...]\\n" + text[-half:]
    return text


def render(prompt: str, first: str, second: str) -> str:
    """The judge's user message with `first` in slot A and `second` in slot B."""
    return TEMPLATE.format(prompt=sanitize(prompt) or "(none)", response_a=sanitize(first), response_b=sanitize(second))


def parse_verdict(text: str) -> str | None:
    """"A" or "B" from {"preferred": "A"} or a bare letter; None when unreadable."""
    found = re.search(r'"preferred"\\s*:\\s*"\\s*(?:response\\s+)?([AB])\\b', text, re.IGNORECASE)
    found = found or re.fullmatch(r"\\s*(?:response\\s+)?([AB])\\s*\\.?\\s*", text, re.IGNORECASE)
    return found.group(1).upper() if found else None


def combine(as_shown: str | None, swapped: str | None) -> str:
    """The verdict over both orders: "A", "B", "tie" when they split, "invalid" when neither is readable.

    `swapped` is the verdict on (response_b, response_a), in that order's own letters.
    """
    picks = [p for p in (as_shown, _SWAP[swapped] if swapped else None) if p]
    if not picks:
        return "invalid"
    return picks[0] if len(set(picks)) == 1 else "tie"


@metric
def tie_rate() -> Metric:
    """Share of pairs whose two orders gave opposite verdicts."""

    def compute(scores: list[SampleScore]) -> float:
        return sum(s.score.answer == "tie" for s in scores) / len(scores) if scores else 0.0

    return compute


@scorer(metrics=[accuracy(), stderr(), tie_rate()])
def pairwise_constitution(model: str | Model | None = None, max_tokens: int = 16) -> Scorer:
    """Judge the sample's two responses with the constitution, in both orders.

    The sample's metadata holds "response_a" and "response_b" (and "prompt"; else the
    sample input is the prompt); its target is the preferred one, "A" or "B".
    Score value: C when the verdict is the target, I when it is the other response,
    P (0.5) for a tie or no readable verdict, N when the sample has no target.
    Score answer: "A", "B", "tie" or "invalid".
    """

    async def score(state: TaskState, target: Target) -> Score:
        judge = get_model(model)
        meta = state.metadata
        prompt = str(meta.get("prompt", state.input_text))
        a, b = str(meta["response_a"]), str(meta["response_b"])
        config = GenerateConfig(temperature=0.0, max_tokens=max_tokens)
        outputs = []
        for first, second in ((a, b), (b, a)):
            messages = [ChatMessageSystem(content=SYSTEM), ChatMessageUser(content=render(prompt, first, second))]
            outputs.append((await judge.generate(messages, config=config)).completion)
        as_shown, swapped = parse_verdict(outputs[0]), parse_verdict(outputs[1])
        verdict = combine(as_shown, swapped)
        expected = target.text.strip().upper()
        if expected not in ("A", "B"):
            value = NOANSWER
        elif verdict == expected:
            value = CORRECT
        elif verdict == _SWAP[expected]:
            value = INCORRECT
        else:
            value = PARTIAL
        return Score(
            value=value,
            answer=verdict,
            explanation=f"order (A, B): {outputs[0]!r}; order (B, A): {outputs[1]!r}",
            metadata={"as_shown": as_shown, "swapped": swapped},
        )

    return score


@solver
def keep_pair() -> Solver:
    """No generation: the scorer asks the judge."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        return state

    return solve


def record_to_sample(record: dict[str, Any], split: str | None = None) -> list[Sample]:
    """A pair record: prompt, response_a (or text_a), response_b (or text_b), preferred (A/B, or preferred_text)."""
    if split is not None and str(record.get("split", "")) != split:
        return []
    a = str(record.get("response_a", record.get("text_a", "")))
    b = str(record.get("response_b", record.get("text_b", "")))
    prompt = str(record.get("prompt") or "")
    preferred = str(record.get("preferred", record.get("target", "")) or "").strip().upper()
    if not preferred and record.get("preferred_text") is not None:
        chosen = str(record["preferred_text"])
        preferred = "A" if chosen == a else "B" if chosen == b else ""
    sample_id = record.get("id")
    return [
        Sample(
            input=prompt or "(none)",
            target=preferred if preferred in ("A", "B") else "",
            id=str(sample_id) if sample_id not in (None, "") else None,
            metadata={"prompt": prompt, "response_a": a, "response_b": b},
        )
    ]


@task
def pairwise_constitution_task(
    pairs: str, split: str | None = None, judge: str | None = None, max_tokens: int = 16
) -> Task:
    """Judge labelled pairs from a CSV or JSONL file (an icai run's comparisons.csv works, e.g. with split=test)."""
    load = csv_dataset if pairs.lower().endswith(".csv") else json_dataset
    dataset = load(pairs, lambda record: record_to_sample(record, split))
    return Task(dataset=dataset, solver=keep_pair(), scorer=pairwise_constitution(model=judge, max_tokens=max_tokens))
'''


def to_pairwise_inspect_task(constitution: Constitution) -> str:
    """Python source of an Inspect task and scorer that judge two responses per sample with the constitution.

    Standalone (it needs inspect_ai, not icai). The scorer asks the model in both
    orders and returns A, B or tie, as `icai.evaluate.judge` does.
    """
    system, user = pairwise_judge_messages(constitution)
    principles = "".join(f"    {text!r},\n" for text in _principle_lines(constitution))
    n = len(constitution)
    return (
        f'"""Pairwise Inspect judge generated by icai from a {n}-principle constitution.\n'
        "\n"
        "Each sample carries two responses in its metadata (response_a, response_b, prompt)\n"
        'and the preferred one as target, "A" or "B". The scorer asks the judge model in both\n'
        "orders (the prompt icai evaluates a constitution with), translates the swapped verdict\n"
        'back and answers "A" or "B" when the orders agree and "tie" when they split.\n'
        "\n"
        "    inspect eval this_file.py --model openai/gpt-4o-mini -T pairs=pairs.jsonl\n"
        "    inspect eval this_file.py --model openai/gpt-4o-mini -T pairs=runs/mine/comparisons.csv -T split=test\n"
        "\n"
        "pairs: CSV or JSONL with prompt, response_a, response_b, preferred (A or B); icai's column\n"
        "names (text_a, text_b, preferred a/b or preferred_text) work too. -T judge=MODEL sets a\n"
        "judge other than the evaluated model; -T max_tokens=N gives it room to think (default 16).\n"
        '"""\n'
        "\n"
        "from __future__ import annotations\n"
        "\n"
        "import re\n"
        "from typing import Any\n"
        "\n"
        "from inspect_ai import Task, task\n"
        "from inspect_ai.dataset import Sample, csv_dataset, json_dataset\n"
        "from inspect_ai.model import ChatMessageSystem, ChatMessageUser, GenerateConfig, Model, get_model\n"
        "from inspect_ai.scorer import (\n"
        "    CORRECT,\n"
        "    INCORRECT,\n"
        "    NOANSWER,\n"
        "    PARTIAL,\n"
        "    Metric,\n"
        "    SampleScore,\n"
        "    Score,\n"
        "    Scorer,\n"
        "    Target,\n"
        "    accuracy,\n"
        "    metric,\n"
        "    scorer,\n"
        "    stderr,\n"
        ")\n"
        "from inspect_ai.solver import Generate, Solver, TaskState, solver\n"
        "\n"
        f"PRINCIPLES = [\n{principles}]\n"
        "\n"
        f"SYSTEM = {system!r}\n"
        "\n"
        f"TEMPLATE = {_fill_slots(user, _FORMAT_NAMES, style='format')!r}\n"
        '"""The judge\'s user message; str.format fields: prompt, response_a, response_b."""\n'
        "\n"
        f"MAX_CHARS = {MAX_RESPONSE_CHARS}\n"
        f"BLOCK_TAG = re.compile({_BLOCK_TAG.pattern!r}, re.IGNORECASE)\n"
        "\n"
        f"{_PAIRWISE_INSPECT_BODY}"
    )


REWARD_VOTE_COLUMNS = ("comparison_id", "principle_id", "picks")
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
    _require_columns(votes_frame, REWARD_VOTE_COLUMNS, "votes table")
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
        _require_columns(test_votes_frame, REWARD_VOTE_COLUMNS, "test votes table")
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


def _export_pairwise_or_reward(constitution: Constitution, fmt: str, path: Path) -> str:
    """The text of a pairwise-judge or reward-weights export of the constitution at `path`."""
    if fmt == "pairwise-prompt":
        return json.dumps(to_pairwise_judge(constitution), indent=2, ensure_ascii=False) + "\n"
    if fmt == "pairwise-inspect":
        return to_pairwise_inspect_task(constitution)
    if fmt == "pairwise-promptfoo":
        return to_pairwise_promptfoo_yaml(constitution)
    if fmt == "reward-weights":
        run = _run_beside(path, fmt)
        comparisons = run.read_csv("comparisons.csv", COMPARISON_COLUMNS)
        votes = run.read_csv("votes.csv", REWARD_VOTE_COLUMNS)
        test_votes = run.read_csv("test_votes.csv", REWARD_VOTE_COLUMNS) if run.has("test_votes.csv") else None
        data = to_reward_weights(constitution, comparisons, votes, test_votes)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    raise DataError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
