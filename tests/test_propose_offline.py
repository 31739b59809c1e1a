"""The small-model proposal style: hints, cleaning, sampling and the labelled fallback. Never asserts a model's wording."""

import pytest

from icai.llm import LLM, Capabilities, Request, capabilities_for
from icai.llm.fake import FakeProvider
from icai.parse import clean_principle, copies_text, is_generic, principle_content
from icai.prompts import PROPOSE_SMALL_EXAMPLE
from icai.propose import (
    FALLBACK_ORIGIN,
    Hints,
    contrastive_hints,
    preference_log_odds,
    propose,
    resolve_propose_style,
    small_rejection,
)
from icai.types import Comparison, Constitution, Principle

LEMON = Comparison(
    "i1",
    "Pick the raspberry ice cream, its flavor is sweet and fruity.",
    "Pick the lemon ice cream, a tangy citrus treat for hot days.",
    "b",
    prompt="Which ice cream flavor should I pick?",
)
SHIRT = Comparison(
    "t1",
    "Take the blue shirt: blue is calm and goes with everything.",
    "Take the green shirt: green feels fresh.",
    "a",
    prompt="Blue or green shirt?",
)


def test_hints_are_the_words_only_one_side_uses():
    h = contrastive_hints(LEMON)
    assert set(h.preferred) <= {"lemon", "tangy", "citrus", "treat", "hot", "days"}
    assert "lemon" in h.preferred and "raspberry" in h.rejected
    assert not set(h.preferred) & {"pick", "ice", "cream"}  # both sides say these
    assert not set(h.preferred) & set(h.rejected)
    assert "lemon" in h.preferred_excerpt.lower()


def test_dataset_log_odds_order_the_hints():
    pairs = [LEMON, Comparison("i2", "Lemon sorbet, tangy.", "Raspberry, sweet.", "a"), Comparison("i3", "Raspberry is fine.", "A lemon scoop.", "b")]
    weights = preference_log_odds(pairs)
    assert weights["lemon"] > 0 > weights["raspberry"]
    h = contrastive_hints(LEMON, weights=weights, k=2)
    assert h.preferred[0] == "lemon" and h.rejected[0] == "raspberry" and len(h.preferred) == 2


def test_generic_and_copied_principles_are_detected():
    assert is_generic("Select the response that is more helpful and detailed.")
    assert is_generic("Select the response that provides a better answer.")
    assert not is_generic("Select the response that recommends a citrus flavour.")
    response = "You should pick a blue t-shirt because blue is a versatile and calming color."
    assert copies_text("Select the response that says blue is a versatile and calming color.", [response])
    assert not copies_text("Select the response that recommends a blue t-shirt.", [response])
    assert principle_content("Select the response that names a cat.") == "names a cat"
    assert clean_principle("Select the response that recommends lemon.") is None  # six words: too short by default
    assert clean_principle("Select the response that recommends lemon.", min_words=6) is not None


def test_small_rejection_reasons():
    h = contrastive_hints(SHIRT)
    assert small_rejection("Select the response that is more helpful.", SHIRT, h) == "generic"
    assert small_rejection("Select the response that says blue is calm and goes with everything.", SHIRT, h) == "copy"
    assert small_rejection(PROPOSE_SMALL_EXAMPLE[1], SHIRT, h) == "example"
    assert small_rejection("Select the response that feels fresh and green.", SHIRT, h) == "wrong-side"
    assert small_rejection("Select the response that recommends the blue shirt.", SHIRT, h) is None
    listed = "Select the response that has " + " ".join(h.preferred[:4]) + "."
    assert small_rejection(listed, SHIRT, h) == "copy"  # the hint list pasted back


def _by_seed(answers):
    def respond(request: Request) -> str:
        return answers[request.seed or 0]

    return respond


def test_small_style_samples_and_keeps_only_usable_rules():
    answers = {
        0: "Select the response that is more helpful and detailed.",  # generic
        1: "Select the response that says blue is calm and goes with everything.",  # copy
        2: "Select the response that recommends the blue shirt.\nSelect the response that rambles on.",
    }
    provider = FakeProvider(_by_seed(answers))
    principles = propose([SHIRT], LLM(provider, progress=False), style="small", samples=3, seed=0)
    assert [p.text for p in principles] == ["Select the response that recommends the blue shirt."]
    assert principles[0].origin == "llm" and principles[0].source_ids == ("t1",)
    assert len(provider.requests) == 3
    assert [r.temperature > 0 for r in provider.requests] == [False, True, True]
    prompt = provider.requests[0].messages[-1].content
    assert "blue" in prompt and "green feels fresh" not in prompt  # hints, not the whole rejected response


def test_fallback_is_labelled_and_optional():
    provider = FakeProvider(lambda request: "I like both answers.")
    llm = LLM(provider, progress=False)
    assert propose([LEMON, SHIRT], llm, style="small", samples=2) == []
    written = propose([LEMON, SHIRT], llm, style="small", samples=2, fallback=True)
    assert {p.origin for p in written} == {FALLBACK_ORIGIN}
    by_source = {p.source_ids: p.text for p in written}
    assert "'" + contrastive_hints(LEMON).preferred[0] + "'" in by_source[("i1",)]
    assert "'" + contrastive_hints(SHIRT).preferred[0] + "'" in by_source[("t1",)]


def test_standard_style_is_unchanged_for_api_models():
    answer = '{"principles": ["Select the response that features a cat as the pet."]}'
    provider = FakeProvider([("[PREFERRED]", answer)])
    principles = propose([LEMON, SHIRT], LLM(provider, progress=False))
    assert len(provider.requests) == 2 and "[PREFERRED]" in provider.requests[0].prompt_text
    assert principles[0].origin == "llm"


def test_style_is_chosen_by_the_providers_capabilities():
    small, api = capabilities_for("local/smollm2"), capabilities_for("openai/gpt-4o-mini")
    assert resolve_propose_style("auto", small) == "small"
    assert resolve_propose_style("auto", api) == "standard"
    assert resolve_propose_style("standard", small) == "standard"
    assert resolve_propose_style("auto", Capabilities(small_model=True)) == "small"  # any provider that declares it
    with pytest.raises(ValueError):
        resolve_propose_style("tiny", small)


def test_origin_survives_the_constitution_file(tmp_path):
    p = Principle.from_text("Select the response that mentions 'lemon'.", source_ids=["i1"], origin=FALLBACK_ORIGIN)
    saved = Constitution((p,)).save(tmp_path / "c.json")
    assert Constitution.load(saved).principles[0].origin == FALLBACK_ORIGIN


def test_empty_hints_give_no_fallback():
    same = Comparison("s", "Same words here.", "Same words here.", "a")
    h = contrastive_hints(same)
    assert h == Hints((), (), h.preferred_excerpt, h.rejected_excerpt)
    provider = FakeProvider(lambda request: "nothing")
    assert propose([same], LLM(provider, progress=False), style="small", samples=1, fallback=True) == []
