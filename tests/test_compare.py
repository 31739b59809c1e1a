"""icai compare: a rule that holds in one dataset only is found; a dataset against a resample of itself shows nothing."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from icai.cli import main
from icai.compare import Match, Side, compare_sides, match_principles, plan_cross_votes
from icai.embed import HashingEmbedder
from icai.types import Comparison, Principle, Vote

FAKE = ["--model", "fake/keyword", "--embedder", "hash", "--bootstrap", "0"]


def write_pairs(path: Path, *, n: int, cat: float, seed: int, topic: str = "pets", resample_of: Path | None = None) -> Path:
    """'blue' over 'green' in every pair; 'cat' over 'dog' with probability `cat` (else the reverse).

    topic "fruit": lemon over raspberry instead of the pets rule. resample_of: a bootstrap resample of that file.
    """
    rng = random.Random(seed)
    if resample_of is not None:
        with resample_of.open(newline="") as fh:
            source = list(csv.DictReader(fh))
        rows = [{**rng.choice(source), "id": f"r{i}"} for i in range(len(source))]
    else:
        rows = []
        for i in range(n):
            fav, dis = ["the blue shirt is nice"], ["the green shirt is fine"]
            if topic == "fruit":
                fav.append("lemon ice cream")
                dis.append("raspberry ice cream")
            elif rng.random() < cat:
                fav.append("my cat sleeps")
                dis.append("my dog barks")
            else:
                fav.append("my dog barks")
                dis.append("my cat sleeps")
            good, bad = " and ".join(fav), " and ".join(dis)
            swap = rng.random() < 0.5
            rows.append(
                {
                    "id": f"p{i}",
                    "prompt": "Tell me about your day",
                    "text_a": bad if swap else good,
                    "text_b": good if swap else bad,
                    "preferred_text": "text_b" if swap else "text_a",
                }
            )
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _rows(out: Path) -> dict[str, dict]:
    data = json.loads((out / "compare.json").read_text())
    assert data["schema"] == "icai.compare/1"
    return {r["text"]: r for r in data["rows"]}


def test_a_rule_of_one_dataset_only_is_found_and_significant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = write_pairs(tmp_path / "one.csv", n=60, cat=1.0, seed=1)
    two = write_pairs(tmp_path / "two.csv", n=60, cat=0.5, seed=2)
    out = tmp_path / "cmp"
    assert main(["compare", str(one), str(two), "--out", str(out), *FAKE, "--yes"]) == 0
    printed = capsys.readouterr().out
    assert "one (60 pairs) vs two (60 pairs)" in printed
    rows = _rows(out)
    cat = next(r for t, r in rows.items() if "'cat'" in t)
    blue = next(r for t, r in rows.items() if "'blue'" in t)
    assert cat["significant"] and cat["q_value"] < 0.01 and cat["difference"] > 0.5
    assert cat["difference_ci"][0] > 0
    assert cat["a"]["strength"] == 1.0 and cat["b"]["strength"] < 0.5
    assert not blue["significant"]
    html = (out / "compare.html").read_text()
    assert 'id="compare-table"' in html and "<svg" in html and "mentions" in html


def test_a_dataset_against_a_resample_of_itself_shows_no_difference(tmp_path: Path) -> None:
    one = write_pairs(tmp_path / "one.csv", n=60, cat=0.8, seed=3)
    again = write_pairs(tmp_path / "again.csv", n=60, cat=0.8, seed=4, resample_of=one)
    runs = []
    for data in (one, again):
        runs.append(tmp_path / data.stem)
        assert main(["run", str(data), "--out", str(runs[-1]), *FAKE]) == 0
    out = tmp_path / "cmp"
    assert main(["compare", str(runs[0]), str(runs[1]), "--out", str(out), "--embedder", "hash", "--yes"]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["rows"] and not any(r["significant"] for r in data["rows"])
    assert any(r["found_in"] == "both" for r in data["rows"])
    assert "No principle's strength differs significantly" in " ".join(data["summary"])


def test_new_calls_are_counted_and_never_made_without_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pets = write_pairs(tmp_path / "pets.csv", n=30, cat=1.0, seed=5)
    fruit = write_pairs(tmp_path / "fruit.csv", n=30, cat=1.0, seed=6, topic="fruit")
    runs = []
    for data in (pets, fruit):
        runs.append(tmp_path / data.stem)
        assert main(["run", str(data), "--out", str(runs[-1]), *FAKE]) == 0
    out = tmp_path / "cmp"
    capsys.readouterr()
    base = ["compare", str(runs[0]), str(runs[1]), "--out", str(out), "--embedder", "hash"]
    assert main([*base, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "Dry run: no model calls were made." in printed
    needed = int(printed.split("Cross test: ")[1].split(" new")[0])
    assert needed > 0 and "at most" in printed
    assert main([*base, "--dry-run", "--json"]) == 0
    planned = capsys.readouterr()
    plan = json.loads(planned.out)
    assert plan["dry_run"] is True and plan["new_votes"] == needed and plan["max_calls"] > 0
    assert "Cross test:" in planned.err  # the sentence on stderr, the JSON alone on stdout
    assert not (out / "cross_a.csv").exists() and not (out / "compare.json").exists()
    assert main(base) == 2  # not a terminal and no --yes: refused before any call
    assert "pass --yes" in capsys.readouterr().err
    assert not (out / "compare.json").exists()
    assert main([*base, "--yes"]) == 0
    rows = _rows(out)
    cat = next(r for t, r in rows.items() if "'cat'" in t)
    assert cat["found_in"] == "pets" and cat["other_side"] == "not supported"
    assert cat["b"]["n_votes"] == 30 and cat["b"]["n_for"] == cat["b"]["n_against"] == 0  # no cat on fruit pairs
    capsys.readouterr()
    assert main(base) == 0  # everything is reused now: no --yes needed
    assert "Cross test: 0 new" in capsys.readouterr().out


def test_similar_words_with_opposite_votes_are_not_a_match() -> None:
    cat = Principle.from_text("Select the response that mentions 'cat' in its text.")
    dog = Principle.from_text("Select the response that mentions 'dog' in its text.")
    cat2 = Principle.from_text("Select the response that mentions 'cat' in the text.")
    comps = [Comparison(f"c{i}", "x", "y", "a") for i in range(20)]
    votes = [Vote(c.id, p.id, v) for c in comps for p, v in ((cat, "for"), (dog, "against"), (cat2, "for"))]
    embedder = HashingEmbedder()
    assert match_principles([cat], [dog], embedder, min_similarity=0.5)  # by their words alone they would match
    assert not match_principles([cat], [dog], embedder, voted=[(comps, votes)], min_similarity=0.5)
    (m,) = match_principles([cat], [cat2, dog], embedder, voted=[(comps, votes)], min_similarity=0.5)
    assert m.b_id == cat2.id and m.vote_agreement == 1.0
    (same,) = match_principles([cat], [cat], embedder)
    assert same.similarity == 1.0


def test_compare_sides_keeps_pair_ids_of_the_two_sides_apart() -> None:
    """Both datasets number their pairs c0.. : A's votes must not be read as B's."""
    p = Principle.from_text("Select the response that mentions 'cat' in its text.")
    a_comps = [Comparison(f"c{i}", "x", "y", "a") for i in range(30)]
    b_comps = [Comparison(f"c{i}", "x", "y", "a") for i in range(30)]
    a = Side("A", tuple(a_comps), (p,), tuple(Vote(c.id, p.id, "for") for c in a_comps))
    b = Side("B", tuple(b_comps), (), ())
    plan = plan_cross_votes(a, b)
    assert plan.n_needed == 30 and len(plan.a_on_b[1]) == 30
    cross_b = [Vote(c.id, p.id, "against") for c in b_comps]
    result = compare_sides(a, b, [], cross_b=cross_b)
    (row,) = result.rows
    assert row.a.strength == 1.0 and row.b.strength == -1.0 and row.significant
    assert row.other_side == "contradicted"


def test_a_principle_decisive_on_one_side_only_is_reported_as_such() -> None:
    """10 decisive votes on A's pairs, 0 on B's: "only in A" with A's interval and binomial test, not "not tested"."""
    p = Principle.from_text("Select the response that mentions 'cat' in its text.")
    a_comps = [Comparison(f"a{i}", "x", "y", "a") for i in range(10)]
    b_comps = [Comparison(f"b{i}", "x", "y", "a") for i in range(30)]
    a = Side("A", tuple(a_comps), (p,), tuple(Vote(c.id, p.id, "for") for c in a_comps))
    b = Side("B", tuple(b_comps), (), ())
    result = compare_sides(a, b, [], cross_b=[Vote(c.id, p.id, "abstain") for c in b_comps])
    (row,) = result.rows
    assert row.tested and row.only_in == "A" and row.difference is None
    assert row.p_value is not None and row.p_value < 0.01 and row.significant
    assert any("decisive only in A" in line and "0 decisive in B" in line for line in result.summary())
    table = result.table(width=80)
    assert "only in A" in table and "not tested" not in table
    assert max(len(line) for line in table.splitlines()) <= 80
    assert result.to_dict()["rows"][0]["only_in"] == "A"


def test_a_matched_row_shows_both_texts_and_fits_the_terminal() -> None:
    cat = Principle.from_text("Select the response that mentions 'cat' in its text.")
    kitty = Principle.from_text("Select the response that talks about a cat, " + "in every way possible " * 8)
    comps = [Comparison(f"c{i}", "x", "y", "a") for i in range(30)]
    a = Side("A", tuple(comps), (cat,), tuple(Vote(c.id, cat.id, "for") for c in comps))
    b = Side("B", tuple(comps), (kitty,), tuple(Vote(c.id, kitty.id, "for") for c in comps))
    match = Match(cat.id, kitty.id, 0.91)
    result = compare_sides(a, b, [match], cross_a=[Vote(c.id, kitty.id, "for") for c in comps],
                           cross_b=[Vote(c.id, cat.id, "for") for c in comps])
    for width in (70, 120):
        table = result.table(width=width)
        assert max(len(line) for line in table.splitlines()) <= width
        words = table.split()
        assert "A:" in words and "B:" in words and "'cat'" in words  # both texts, each named by its side
        assert words.count("possible") == 8  # the long text wrapped in its cell, not cut
    wide = result.table(width=400)
    assert "A: Select the response that mentions 'cat' in its text." in wide
    assert f"B: {kitty.text} (similarity 0.91)" in wide
