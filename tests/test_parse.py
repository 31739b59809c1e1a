from icai.parse import clean_principle, parse_pick, parse_principles, parse_verdict, parse_votes
from icai.prompts import EXAMPLE_PRINCIPLES


def test_principles_from_plain_json_object():
    text = '{"principles": ["Select the response that names a specific animal.", "Select the response that uses humour in the story."]}'
    assert parse_principles(text) == [
        "Select the response that names a specific animal.",
        "Select the response that uses humour in the story.",
    ]


def test_principles_from_fenced_list_with_prose_around():
    text = 'Sure! Here they are:\n```json\n["select the response that mentions a cat as the pet"]\n```\nHope it helps.'
    assert parse_principles(text) == ["Select the response that mentions a cat as the pet."]


def test_principles_from_truncated_json():
    text = '{"principles": ["Select the response that is written in a formal tone", "Select the response that gi'
    assert parse_principles(text) == ["Select the response that is written in a formal tone."]


def test_principles_from_numbered_lines():
    text = "1. Select the response that gives a concrete number.\n2) Select the response that cites a source for claims."
    assert parse_principles(text) == [
        "Select the response that gives a concrete number.",
        "Select the response that cites a source for claims.",
    ]


def test_template_echoes_and_fragments_are_rejected():
    assert clean_principle("Select the response that <YOUR PRINCIPLE TEXT>") is None
    assert clean_principle("Select the response that ...") is None
    assert clean_principle("Select the response that is good.") is None  # fragment: too short to mean anything
    assert clean_principle("The response is better.") is None  # no frame
    for example in EXAMPLE_PRINCIPLES:
        assert clean_principle(example) is None
    assert parse_principles("I cannot answer that.") == []


def test_duplicates_are_removed_keeping_order():
    text = '["Select the response that mentions a cat by name.", "select the response that mentions a cat by name."]'
    assert parse_principles(text) == ["Select the response that mentions a cat by name."]


def test_picks_are_case_insensitive():
    assert parse_pick("a") == "a"
    assert parse_pick("Response B") == "b"
    assert parse_pick("NEITHER") == "neither"
    assert parse_pick(None) == "neither"
    assert parse_pick("maybe") == "invalid"


def test_votes_from_lowercase_and_fenced_json():
    assert parse_votes('```json\n{"1": "a", "2": "Neither", "3": "B"}\n```', 3) == ["a", "neither", "b"]


def test_votes_missing_keys_are_invalid_not_an_error():
    assert parse_votes('{"1": "A"}', 3) == ["a", "invalid", "invalid"]
    assert parse_votes("no idea", 2) == ["invalid", "invalid"]
    assert parse_votes('{"1": "A", "2": "banana"}', 2) == ["a", "invalid"]


def test_votes_from_list_and_lines():
    assert parse_votes('["A", "B"]', 2) == ["a", "b"]
    assert parse_votes("1: A\n2: neither", 2) == ["a", "neither"]


def test_verdict():
    assert parse_verdict('{"preferred": "b"}') == "b"
    assert parse_verdict("A") == "a"
    assert parse_verdict("I like both") == "invalid"
