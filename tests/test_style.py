"""Style principles (icai.style): exact votes on hand-built pairs, no model call, and origin "surface" everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from icai.cli import main
from icai.config import RunConfig
from icai.embed import HashingEmbedder
from icai.embed_vote import vote_by_embedding
from icai.export import EXPORT_FORMATS, export
from icai.llm import LLM
from icai.llm.fake import fake_provider
from icai.pipeline import run
from icai.stats import principle_stats
from icai.style import STYLE_FEATURES, STYLE_ORIGIN, style_principles, style_rule, vote_by_style
from icai.surface import FEATURES
from icai.types import Comparison, Principle
from icai.vote import vote

# (more, less): the first text has strictly more of the feature than the second
MORE_LESS = {
    "words": ("one two three four five", "one two"),
    "sentences": ("It rains. It pours. It stops.", "It rains."),
    "headers": ("# Title\n\n## Part\n\ntext", "Title\n\ntext"),
    "list_items": ("Steps:\n- boil water\n- add tea\n- wait", "Boil water, add tea, wait."),
    "bold": ("This is **very** and **truly** so.", "This is very and truly so."),
    "code_blocks": ("Run:\n```\nls -l\n```", "Run ls -l."),
    "links": ("See https://example.org and [docs](https://example.org/docs).", "See the website."),
    "questions": ("Why? How? When?", "Because."),
    "refusals": ("I can't help with that, and as an AI I won't.", "Here is the answer."),
    "hedges": ("It might work, perhaps, probably.", "It works."),
    "politeness": ("Please note this, thank you, sorry.", "Note this."),
}


def by_feature() -> dict[tuple[str, str], Principle]:
    out = {}
    for p in style_principles():
        rule = style_rule(p)
        assert rule is not None
        out[(rule.feature, rule.direction)] = p
    return out


def test_every_baseline_feature_but_chars_is_a_principle_in_both_directions() -> None:
    principles = style_principles()
    assert {f.name for f in STYLE_FEATURES} == set(FEATURES) - {"chars"}
    assert len(principles) == 2 * len(STYLE_FEATURES) == len({p.id for p in principles})
    assert all(p.origin == STYLE_ORIGIN == "surface" and p.text.startswith("Select the response that ") for p in principles)
    assert by_feature()[("list_items", "more")].text == "Select the response that uses more list items."
    # a user's principle with the same words is not a style principle: it is voted like any other
    assert style_rule(Principle.from_text("Select the response that uses more list items.", origin="user")) is None


@pytest.mark.parametrize("feature", sorted(MORE_LESS))
def test_exact_votes_in_both_orders_and_abstain_on_ties(feature: str) -> None:
    more_text, less_text = MORE_LESS[feature]
    more, less = by_feature()[(feature, "more")], by_feature()[(feature, "less")]
    pairs = [
        Comparison("more-first", more_text, less_text, "a"),
        Comparison("more-second", less_text, more_text, "a"),
        Comparison("tie", more_text, more_text + " ", "b"),  # equal counts of the feature
    ]
    votes = {(v.comparison_id, v.principle_id): v for v in vote_by_style(pairs, [more, less])}
    assert votes[("more-first", more.id)].picks == ("a",) and votes[("more-first", more.id)].value == "for"
    assert votes[("more-first", less.id)].picks == ("b",) and votes[("more-first", less.id)].value == "against"
    # the same responses the other way round: the pick follows the response, not the slot
    assert votes[("more-second", more.id)].picks == ("b",) and votes[("more-second", more.id)].value == "against"
    assert votes[("more-second", less.id)].picks == ("a",) and votes[("more-second", less.id)].value == "for"
    for p in (more, less):
        assert votes[("tie", p.id)].picks == ("neither",) and votes[("tie", p.id)].value == "abstain"
    assert f"style {feature}:" in votes[("more-first", more.id)].raw


def test_vote_by_style_refuses_other_principles() -> None:
    with pytest.raises(ValueError, match="not a style principle"):
        vote_by_style([Comparison("x", "a", "b", "a")], [Principle.from_text("Select the response that rhymes.")])


def _mixed_pairs() -> list[Comparison]:
    return [
        Comparison("p1", "- cats\n- dogs", "cats and dogs", "a", prompt="pets?"),
        Comparison("p2", "plain answer about cats", "- answer\n- list", "a", prompt="pets?"),
    ]


def test_llm_and_embedding_voters_leave_style_principles_exact_and_ask_no_model_about_them() -> None:
    pairs = _mixed_pairs()
    listy = by_feature()[("list_items", "more")]
    topical = Principle.from_text("Select the response that mentions cats.")
    provider = fake_provider("keyword")
    votes = vote(pairs, [listy, topical], LLM(provider, progress=False))
    assert [(v.comparison_id, v.principle_id) for v in votes] == [(c.id, p.id) for c in pairs for p in (listy, topical)]
    style_votes = {v.comparison_id: v for v in votes if v.principle_id == listy.id}
    assert style_votes["p1"].value == "for" and style_votes["p2"].value == "against"
    assert provider.requests and not any("list items" in r.prompt_text for r in provider.requests)
    provider = fake_provider("keyword")
    def cast(votes):
        return [(v.comparison_id, v.principle_id, v.value, v.picks) for v in votes]

    assert cast(vote(pairs, [listy], LLM(provider, progress=False))) == cast(vote_by_style(pairs, [listy]))
    assert provider.requests == []  # style principles alone: no call at all
    by_embedding = vote_by_embedding(pairs, [topical, listy], HashingEmbedder())
    assert [v for v in by_embedding if v.principle_id == listy.id] == vote_by_style(pairs, [listy])


def test_every_style_principle_votes_each_pair_by_its_feature_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vote table's style columns (each response counted once for every rule, a chunk of pairs at a time) against
    each rule's feature counted on the two responses of each pair, here."""
    import importlib

    from icai.surface import response_features

    vote_module = importlib.import_module("icai.vote")  # the package's name `icai.vote` is the function

    monkeypatch.setattr(vote_module, "STYLE_CHUNK", 4)  # several chunks and a short last one
    texts = [t for pair in MORE_LESS.values() for t in pair] + ["", "Plain words here."]
    pairs = [
        Comparison(f"c{i}", texts[i % len(texts)], texts[(3 * i + 1) % len(texts)], "a" if i % 3 else "b")
        for i in range(30)
    ]
    principles = style_principles()
    votes = {(v.comparison_id, v.principle_id): v for v in vote(pairs, principles, LLM(fake_provider("keyword"), progress=False))}
    assert len(votes) == len(pairs) * len(principles)
    for p in principles:
        rule = style_rule(p)
        assert rule is not None
        j = FEATURES.index(rule.feature)
        for c in pairs:
            a, b = response_features(c.text_a)[j], response_features(c.text_b)[j]
            more = "neither" if a == b else ("a" if a > b else "b")
            pick = more if rule.direction == "more" or more == "neither" else {"a": "b", "b": "a"}[more]
            value = "abstain" if pick == "neither" else ("for" if pick == c.preferred else "against")
            assert (votes[(c.id, p.id)].picks, votes[(c.id, p.id)].value) == ((pick,), value), (c.id, p.text)


def listy_pairs(n: int = 24) -> list[Comparison]:
    """The preferred response is the one with a list; topics vary, the list is on either side."""
    topics = ["tea", "bread", "rivers", "chess", "violins", "glaciers", "maps", "owls"]
    out = []
    for i in range(n):
        t = topics[i % len(topics)]
        listy = f"About {t}:\n- where {t} come from\n- how {t} work\n- why {t} matter ({i})"
        plain = f"About {t}: they come from somewhere, they work somehow, and they matter to people ({i})."
        out.append(
            Comparison(f"c{i}", listy, plain, "a", prompt=f"Tell me about {t}.")
            if i % 2
            else Comparison(f"c{i}", plain, listy, "b", prompt=f"Tell me about {t}.")
        )
    return out


def test_style_principles_are_off_with_the_option() -> None:
    pairs = listy_pairs()
    on = run(pairs, llm=LLM(fake_provider("keyword"), progress=False), embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword"))
    off = run(
        pairs, llm=LLM(fake_provider("keyword"), progress=False), embedder=HashingEmbedder(),
        config=RunConfig(model="fake/keyword", style_principles=False),
    )  # fmt: skip
    assert sum(p.origin == STYLE_ORIGIN for p in on.tested) == len(style_principles())
    assert not any(p.origin == STYLE_ORIGIN for p in [*off.tested, *off.candidates])
    stats = {s.principle_id: s for s in principle_stats(list(on.tested), list(on.train), list(on.votes))}
    listy = by_feature()[("list_items", "more")]
    assert (stats[listy.id].n_for, stats[listy.id].n_against) == (len(on.train), 0)
    assert listy.id in [p.id for p in on.constitution.principles]


def test_a_selected_style_principle_shows_its_origin_in_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "listy.csv"
    pd.DataFrame(
        [{"id": c.id, "prompt": c.prompt, "text_a": c.text_a, "text_b": c.text_b, "preferred": c.preferred} for c in listy_pairs()]
    ).to_csv(data, index=False)
    out = tmp_path / "run"
    assert main(["run", str(data), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash", "--test-size", "0.3"]) == 0
    printed = capsys.readouterr().out
    text = "Select the response that uses more list items."
    assert re.search(re.escape(text) + r".*\(origin surface, hint form:list_items:more\)", printed)
    # the held-out "constitution" line is the judge that follows the votes, and it says so; the LLM judge is beside it
    assert "constitution_llm" in printed and "own votes on the held-out pairs" in printed
    evaluation = json.loads((out / "evaluation.json").read_text())
    scores = {s["name"]: s for s in evaluation["scores"]}
    assert scores["constitution"]["agreement"] == 1.0  # exact list votes on pairs where the list always wins
    assert "exact feature counts" in evaluation["explanations"]["constitution"]

    table = pd.read_csv(out / "principles.csv", dtype=str, keep_default_na=False)
    style_rows = table[table["origin"] == "surface"]
    assert len(style_rows) == len(style_principles())
    assert style_rows[style_rows["text"] == text]["in_constitution"].tolist() == ["True"]

    html = (out / "report.html").read_text()
    constitution_table = html.split('id="constitution"')[1].split("</table>")[0]
    assert "uses more list items" in constitution_table and "surface" in constitution_table

    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from icai.app import Workbench
    from icai.app.server import create_app

    wb = Workbench(out, llm=LLM(fake_provider("keyword"), progress=False), author="tester")
    try:
        page = TestClient(create_app(wb, token="t"), base_url="http://127.0.0.1:8765").get("/").text
    finally:
        wb.close()
    row = next(line for line in page.split("<tr") if "uses more list items" in line)
    assert 'data-origin="surface"' in row

    for fmt in EXPORT_FORMATS:
        exported = export(out / "constitution.json", fmt)
        if fmt == "prompt":  # the judge prompt holds the principles only, by design
            assert text in exported and "origin" not in exported
            continue
        assert "surface" in exported, fmt
