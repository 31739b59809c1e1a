"""The direction-checked recovery scorer of bench/recovery.py (bench/rules.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from rules import ALIGNED, ORTHOGONAL, RULES, check_oracle, text_direction, vote_direction  # noqa: E402

from icai import datasets  # noqa: E402
from icai.types import Comparison, Vote  # noqa: E402

ALL = [(rules, r, text, sign) for rules in (ORTHOGONAL, ALIGNED) for r in rules for sign, texts in ((1, r.right), (-1, r.wrong)) for text in texts]


@pytest.mark.parametrize(("rules", "rule", "text", "sign"), ALL, ids=[t for _, _, t, _ in ALL])
def test_every_paraphrase_is_judged_in_its_direction(rules, rule, text, sign) -> None:
    j = text_direction(text, rules)
    assert (j.rule, j.direction) == (rule.name, sign)


@pytest.mark.parametrize(
    ("text", "rule", "sign"),
    [
        ("Select the response that mentions 'whiskers' in its text.", "cat>dog", 1),
        ("Select the response that mentions 'dog' in its text.", "cat>dog", -1),
        ("Select the response that is about a dog, not a cat.", "cat>dog", -1),
        ("Select the response that recommends the green t-shirt over the blue one.", "blue>green", -1),
        ("Select the response that does not mention raspberry and recommends lemon.", "lemon>raspberry", 1),
        ("Select the response that doesn't mention the green shirt.", "blue>green", 1),
        ("Select the response that mentions blue and green.", "blue>green", 0),
        ("Select the response that uses exclamation marks.", None, 0),
    ],
)
def test_negation_and_comparison_cues(text, rule, sign) -> None:
    j = text_direction(text, ORTHOGONAL)
    assert (j.rule, j.direction) == (rule, sign)


@pytest.mark.parametrize("name", ["orthogonal_adcbg", "aligned_vqvtb"])
def test_oracle_sides_match_the_labels_on_every_pair(name) -> None:
    from icai.io import load_comparisons

    path = datasets.path("synthetic-orthogonal" if "orthogonal" in name else "synthetic-aligned")
    rules = RULES["synthetic_orthogonal" if "orthogonal" in name else "synthetic_aligned"]
    assert check_oracle(load_comparisons(path), rules) == {"pairs": 30, "oracle_matches_label": 30}


def _pair(i: int, cat_side: str, topic: str = "a human and their pet") -> Comparison:
    cat, dog = "Output: My cat Whiskers sat down.", "Output: My dog Rex sat down."
    a, b = (cat, dog) if cat_side == "a" else (dog, cat)
    return Comparison(f"p{i}", a, b, "a", prompt=f"Write a story about {topic}.")  # label irrelevant to the oracle


def test_vote_direction_reads_the_oracle_side_not_the_label() -> None:
    pairs = [_pair(i, "ab"[i % 2]) for i in range(6)]
    # votes "for" the label (always a): picks the cat on even pairs, the dog on odd ones
    votes = [Vote(c.id, "p", "for", ("a", "a")) for c in pairs]
    j = vote_direction(votes, pairs, ORTHOGONAL)
    assert (j.rule, j.n_decisive, j.n_agree) == ("cat>dog", 6, 3)
    dog_votes = [Vote(c.id, "p", "for" if c.text_a.endswith("Rex sat down.") else "against", ()) for c in pairs]
    j = vote_direction(dog_votes, pairs, ORTHOGONAL)
    assert (j.rule, j.direction, j.agreement) == ("cat>dog", -1, 0.0)


def test_votes_spread_over_topics_match_no_rule() -> None:
    shirt = Comparison("s", "Output: the blue one.", "Output: the green one.", "a", prompt="Which t-shirt?")
    cream = Comparison("i", "Output: lemon.", "Output: raspberry.", "a", prompt="Which ice cream?")
    pets = [_pair(i, "a") for i in range(3)]
    votes = [Vote(c.id, "p", "for", ()) for c in [*pets, shirt, cream]]
    assert vote_direction(votes, [*pets, shirt, cream], ORTHOGONAL).rule == "cat>dog"  # 3 of 5 decisive votes on pets: 60%
    more = [*votes, Vote("s2", "p", "for", ())]
    shirt2 = Comparison("s2", "Output: blue.", "Output: green.", "a", prompt="Which t-shirt?")
    assert vote_direction(more, [*pets, shirt, cream, shirt2], ORTHOGONAL).rule is None  # 3 of 6: 50%
