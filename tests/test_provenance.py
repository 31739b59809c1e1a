"""Provenance made visible (Principle.origin / .hint in the CLI, principles.csv, the report and exports),
form hints in the small proposal style, and the surface baseline in a whole run's outputs."""

import json
import re

import pandas as pd

from icai.cli import _print_constitution, build_parser, main
from icai.config import RunConfig
from icai.export import to_inspect_scorer, to_judge_prompt, to_promptfoo_yaml
from icai.llm import LLM, Request
from icai.llm.fake import FakeProvider
from icai.propose import FALLBACK_ORIGIN, HINT_KINDS, KEYWORD_HINT, propose
from icai.report import render_report
from icai.store import RunStore
from icai.types import Comparison, Constitution, Principle, PrincipleStats

FORM_PROMPT = "Compared with the other answer, the preferred answer"

MODEL_RULE = Principle.from_text("Select the response that is concise.", source_ids=["c1"], hint="form:words:less")
CODE_RULE = Principle.from_text(
    "Select the response that mentions 'lemon'.", source_ids=["c2"], origin=FALLBACK_ORIGIN, hint=KEYWORD_HINT
)


def _constitution() -> Constitution:
    stats = (PrincipleStats(MODEL_RULE.id, 3, 1, 0, 0, 0.75, 1.0, agreement_ci=(0.3, 0.95)),)
    return Constitution((MODEL_RULE, CODE_RULE), stats)


def test_printed_constitution_shows_origin_and_hint(capsys) -> None:
    _print_constitution(_constitution())
    lines = capsys.readouterr().out.splitlines()
    assert "origin llm, hint form:words:less" in lines[1]
    assert "origin hint-fallback, hint keywords" in lines[2]


def test_principles_csv_report_and_exports_carry_provenance(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    constitution = _constitution()
    other = Principle.from_text("Select the response that names a city.", source_ids=["c3"], hint=KEYWORD_HINT)
    store.save_constitution(constitution)
    store.save_principle_table([MODEL_RULE, CODE_RULE, other], list(constitution.stats), constitution)
    table = pd.read_csv(store.path / "principles.csv", dtype=str, keep_default_na=False)
    assert table[["origin", "hint"]].values.tolist() == [
        ["llm", "form:words:less"],
        [FALLBACK_ORIGIN, KEYWORD_HINT],
        ["llm", KEYWORD_HINT],
    ]
    assert Constitution.load(store.path / "constitution.json").principles[0].hint == "form:words:less"

    html = render_report(store.path)
    constitution_table = html.split('id="constitution"')[1].split("</table>")[0]
    assert "<th>origin</th>" in constitution_table
    assert "form:words:less" in constitution_table and '<span class="flag">hint-fallback</span>' in constitution_table
    candidates = html.split('id="candidate-list"')[1].split("</table>")[0]
    assert candidates.count("<tr>") == 4  # header + 3 candidates
    assert "names a city" in candidates and "hint-fallback" in candidates
    assert "all 3 candidates (llm: 2, hint-fallback: 1)" in html

    promptfoo = to_promptfoo_yaml(constitution)
    assert "#   1. origin llm, hint form:words:less" in promptfoo and "#   2. origin hint-fallback" in promptfoo
    inspect = to_inspect_scorer(constitution)
    namespace: dict[str, object] = {}
    exec(inspect.split("@scorer")[0].replace("from inspect_ai.scorer import", "# "), namespace)  # noqa: S102
    assert namespace["PRINCIPLE_ORIGINS"] == [
        {"origin": "llm", "hint": "form:words:less"},
        {"origin": FALLBACK_ORIGIN, "hint": KEYWORD_HINT},
    ]
    assert "origin" not in to_judge_prompt(constitution)  # the judge reads only the principles


# --- form hints in the small proposal style ---------------------------------------------------


def _concise_pairs(n: int) -> list[Comparison]:
    """The preferred response is always the shorter one; topics vary, on either side."""
    topics = ["tea", "bread", "rivers", "chess", "violins", "glaciers"]
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        short = f"Try {topic} number {i}."
        long = f"Well, there is a lot to say about {topic}: history, practice, many details, and more besides, take {i}."
        out.append(
            Comparison(f"c{i}", short, long, "a", prompt=f"Tell me about {topic}.")
            if i % 2
            else Comparison(f"c{i}", long, short, "b", prompt=f"Tell me about {topic}.")
        )
    return out


def _mixed_pairs(n: int) -> list[Comparison]:
    """The same responses, the preferred side alternating between the shorter and the longer one."""
    return [c if i % 2 else c.with_preferred(c.rejected) for i, c in enumerate(_concise_pairs(n))]


def _respond(request: Request) -> str:
    text = request.messages[-1].content
    if FORM_PROMPT in text:
        return "Select the response that keeps its answer brief."
    word = re.search(r"Key words of the preferred answer: (\w+)", text)
    return f"Select the response that talks about {word.group(1) if word else 'something'} plainly."


def test_form_hint_reaches_the_prompt_when_length_separates_the_pairs() -> None:
    pairs = _concise_pairs(8)
    provider = FakeProvider(_respond)
    principles = propose(pairs, LLM(provider, progress=False), style="small", samples=3)
    prompts = [r.messages[-1].content for r in provider.requests]
    assert len(prompts) == 3 * len(pairs)  # the form prompt replaces a sample; it adds no call
    form_prompts = [p for p in prompts if FORM_PROMPT in p]
    assert len(form_prompts) == len(pairs) and all("shorter" in p for p in form_prompts)
    assert all(FORM_PROMPT in p for p in prompts[2::3])  # each pair's last sample, asked greedily
    assert all(r.temperature == 0.0 for r in provider.requests[2::3])
    form_rules = [p for p in principles if p.hint.startswith("form:")]
    assert [p.hint for p in form_rules] == ["form:words:less"] and form_rules[0].origin == "llm"
    assert len(form_rules[0].source_ids) == len(pairs)
    assert {p.hint for p in principles} == {"form:words:less", KEYWORD_HINT}
    assert all(HINT_KINDS.match(p.hint) and p.origin in ("llm", FALLBACK_ORIGIN) for p in principles)


def test_no_form_hint_when_no_feature_separates() -> None:
    provider = FakeProvider(_respond)
    principles = propose(_mixed_pairs(8), LLM(provider, progress=False), style="small", samples=3)
    assert not any(FORM_PROMPT in r.messages[-1].content for r in provider.requests)
    assert principles and {p.hint for p in principles} == {KEYWORD_HINT}
    # one sample per pair has no room for a form prompt
    one = FakeProvider(_respond)
    propose(_concise_pairs(8), LLM(one, progress=False), style="small", samples=1)
    assert not any(FORM_PROMPT in r.messages[-1].content for r in one.requests)


def test_hint_kinds_are_well_formed() -> None:
    for good in ("", "keywords", "form:words:less", "form:list_items:more"):
        assert HINT_KINDS.match(good)
    for bad in ("form", "form:words", "form:words:bigger", "Keywords", "form:Words:less"):
        assert not HINT_KINDS.match(bad)
    standard = FakeProvider(lambda r: '{"principles": ["Select the response that recommends green tea with honey."]}')
    assert {p.hint for p in propose(_concise_pairs(4), LLM(standard, progress=False))} == {""}


# --- fallback off by default; the whole run's outputs --------------------------------------


def test_fallback_is_off_by_default_and_on_with_the_flag() -> None:
    assert RunConfig().propose_fallback is False
    parser = build_parser()
    assert parser.parse_args(["run", "d.csv", "--out", "o"]).propose_fallback is False
    assert parser.parse_args(["run", "d.csv", "--out", "o", "--propose-fallback"]).propose_fallback is True


def test_run_outputs_show_surface_baseline_and_provenance(orthogonal_csv, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash"]
    assert main([*argv, "--test-size", "0.3", "--propose-fallback"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^surface +\d\.\d{3} +\d\.\d{3}-\d\.\d{3} +wilson +9$", printed, re.MULTILINE)
    assert "constitution - surface:" in printed and "points" in printed and "than surface features" in printed
    assert "cross-validated training accuracy" in printed
    assert "(origin llm)" in printed.split("Held-out")[0]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert "surface" in [s["name"] for s in evaluation["scores"]]
    assert evaluation["surface"]["fit"] == "train" and evaluation["surface"]["n_train"] == 21
    meta = json.loads((out / "constitution.json").read_text())
    assert meta["config"]["propose_fallback"] is True
    # fake/keyword: the standard style (no hint); the style principles carry their feature and direction
    n_style = meta["candidate_origins"]["surface"]
    assert meta["candidate_hints"]["none"] == meta["n_candidates"] - n_style == meta["candidate_origins"]["llm"]
    assert sum(n for hint, n in meta["candidate_hints"].items() if hint.startswith("form:")) == n_style == 22
    html = (out / "report.html").read_text()
    assert 'id="surface-note"' in html and "constitution \u2212 surface" in html
    assert "<td>surface</td>" in html  # a row of the scores table
    assert "origin" in pd.read_csv(out / "principles.csv").columns


def test_dry_run_estimate_counts_the_form_prompts_propose_sends() -> None:
    from icai.cost import estimate_run

    pairs = _concise_pairs(8)
    config = RunConfig(model="fake/keyword", propose_style="small", propose_sample=3)
    stage = next(s for s in estimate_run(pairs, config).stages if s.stage == "propose")
    provider = FakeProvider(_respond)
    llm = LLM(provider, progress=False)
    from icai.split import propose_pool

    propose(propose_pool(pairs, config), llm, style="small", samples=config.proposal_samples, form_from=pairs)
    sent = {r.cache_key(config.model) for r in provider.requests}
    assert stage.calls == len(sent) == 3 * 3
    assert sum(FORM_PROMPT in r.messages[-1].content for r in provider.requests) == 3  # separated on all 8 pairs, not on the 3 sampled alone


def test_copies_of_the_form_examples_are_rejected() -> None:
    from icai.prompts import PROPOSE_SMALL_FORM_EXAMPLES
    from icai.propose import contrastive_hints, small_rejection

    pair = _concise_pairs(1)[0]
    for _, rule in PROPOSE_SMALL_FORM_EXAMPLES:
        assert small_rejection(rule, pair, contrastive_hints(pair)) == "example"
    assert small_rejection("Select the response that gives its main advice first.", pair, contrastive_hints(pair)) == "example"
    assert small_rejection("Select the response that is short and concise.", pair, contrastive_hints(pair)) is None
    assert small_rejection("Select the response that asks the user a question.", pair, contrastive_hints(pair)) is None
