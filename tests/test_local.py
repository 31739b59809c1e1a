"""LocalProvider's prefix reuse and converted-weights cache, and the log-prob debiasing math."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from testdata import missing

from icai.io import load_comparisons
from icai.llm.base import ConfigError, Request
from icai.llm.converted import default_cache_dir
from icai.llm.local import LocalProvider, gguf_path
from icai.prompts import VoteLayout, vote_branches_request, vote_one_request
from icai.vote import LOGPROB_MARGIN, debiased_margin, margin_pick, order_margin

PRINCIPLES = (
    "Select the response that is about a cat rather than a dog.",
    "Select the response that is shorter.",
    "Select the response that uses more formal language.",
)


def test_constant_slot_a_bias_cancels() -> None:
    # True preference for side a: +0.4 nats; the model adds +1.5 to whichever response sits in slot A.
    bias, truth = 1.5, 0.4
    as_shown = {"A": -1.0 + bias + truth / 2, "B": -1.0 - truth / 2}
    swapped = {"A": -1.0 + bias - truth / 2, "B": -1.0 + truth / 2}
    assert order_margin(as_shown) == pytest.approx(bias + truth)
    assert order_margin(swapped) == pytest.approx(bias - truth)
    assert debiased_margin(as_shown, swapped) == pytest.approx(truth)
    assert margin_pick(debiased_margin(as_shown, swapped)) == "a"
    # The same bias over a preference for b, and over no preference at all.
    assert margin_pick(debiased_margin(swapped, as_shown)) == "b"
    flat = {"A": -1.0 + bias, "B": -1.0}
    assert debiased_margin(flat, flat) == pytest.approx(0.0)
    assert margin_pick(debiased_margin(flat, flat)) == "neither"


def test_margin_pick_threshold_and_unreadable() -> None:
    assert margin_pick(LOGPROB_MARGIN / 2) == "neither"
    assert margin_pick(-2 * LOGPROB_MARGIN) == "b"
    assert margin_pick(0.3, threshold=0.5) == "neither"
    assert margin_pick(None) == "invalid"
    assert debiased_margin({"A": -1.0}, {"A": -1.0, "B": -2.0}) is None
    assert debiased_margin({"A": float("-inf"), "B": -1.0}, {"A": -1.0, "B": -2.0}) is None


def test_default_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ICAI_CACHE_DIR", str(tmp_path / "icai"))
    assert default_cache_dir() == tmp_path / "icai"
    monkeypatch.delenv("ICAI_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "icai"


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("icai-cache")


@pytest.fixture(scope="module")
def provider(weights_dir: Path) -> LocalProvider:
    """SmolLM2 loaded once for the module, from the GGUF; it writes the converted copy."""
    p = LocalProvider("smollm2", device="cpu", cache_dir=weights_dir)
    p.complete(Request.chat("Hi", max_tokens=1))
    return p


@pytest.fixture(scope="module")
def requests() -> list[Request]:
    from testdata import data_file

    pair = load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))[0]
    as_shown = [vote_one_request(pair.prompt, pair.text_a, pair.text_b, p) for p in PRINCIPLES]
    swapped = [vote_one_request(pair.prompt, pair.text_b, pair.text_a, p) for p in PRINCIPLES]
    return as_shown + swapped


def _scores(provider: LocalProvider, requests: list[Request]) -> list[float]:
    out = []
    for r in requests:
        lp = provider.complete(r).choice_logprobs
        assert lp is not None
        out += [lp["A"], lp["B"]]
    return out


@pytest.mark.slow
def test_prefix_reuse_gives_the_same_logprobs(provider: LocalProvider, requests: list[Request]) -> None:
    provider.prefix_cache = True
    reused = [provider.complete(r) for r in requests]
    # Each later rule in one order reuses the pair; the first of each order cannot.
    assert [c.cached_input_tokens > 300 for c in reused] == [False, True, True, False, True, True]
    provider.prefix_cache = False
    try:
        fresh = [provider.complete(r) for r in requests]
    finally:
        provider.prefix_cache = True
    assert all(c.cached_input_tokens == 0 for c in fresh)
    diffs = [
        abs(a.choice_logprobs[k] - b.choice_logprobs[k])  # type: ignore[index]
        for a, b in zip(reused, fresh, strict=True)
        for k in ("A", "B")
    ]
    assert max(diffs) < 1e-3


@pytest.mark.slow
def test_converted_weights_round_trip(provider: LocalProvider, weights_dir: Path, requests: list[Request]) -> None:
    assert provider.loaded_from is not None and provider.loaded_from.suffix == ".gguf"
    folders = list((weights_dir / "models").iterdir())
    assert len(folders) == 1 and (folders[0] / "model.safetensors").is_file()  # no temp folder left behind

    again = LocalProvider("smollm2", device="cpu", cache_dir=weights_dir, prefix_cache=False)
    provider.prefix_cache = False
    try:
        expected = _scores(provider, requests[:2])
    finally:
        provider.prefix_cache = True
    assert _scores(again, requests[:2]) == pytest.approx(expected, abs=1e-5)
    assert again.loaded_from == folders[0]


def test_only_gguf_models_get_converted_weights(tmp_path: Path) -> None:
    model_dir = tmp_path / "hf-model"
    model_dir.mkdir()
    assert LocalProvider(str(model_dir), cache_dir=tmp_path)._converted_folder("float32") is None
    try:
        gguf_path("smollm2")
    except ConfigError as exc:
        missing(str(exc))
    assert LocalProvider("smollm2", weights_cache=False)._converted_folder("float32") is None
    folder = LocalProvider("smollm2", cache_dir=tmp_path)._converted_folder("float32")
    assert folder is not None and folder.parent == tmp_path / "models" and folder.name.endswith("-float32")


@pytest.mark.slow
def test_batched_scoring_gives_the_same_logprobs(provider: LocalProvider) -> None:
    from testdata import data_file

    pair = load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))[0]
    rules = (*PRINCIPLES, "Select the response that recommends lemon ice cream.")
    # As icai.vote sends them: every rule in one order, then every rule in the other.
    reqs = [vote_one_request(pair.prompt, pair.text_a, pair.text_b, p) for p in rules]
    reqs += [vote_one_request(pair.prompt, pair.text_b, pair.text_a, p) for p in rules]
    provider.prefix_cache = False
    try:
        single = [provider.complete(r) for r in reqs]
    finally:
        provider.prefix_cache = True
    batched = provider.complete_many(reqs)
    assert len(batched) == len(reqs)
    # One full encoding per order; the other three rules reuse its prefix.
    assert [c.cached_input_tokens > 300 for c in batched] == [False, True, True, True] * 2
    assert [c.input_tokens for c in batched] == [c.input_tokens for c in single]
    assert [c.text for c in batched] == [c.text for c in single]
    diffs = [
        abs(a.choice_logprobs[k] - b.choice_logprobs[k])  # type: ignore[index]
        for a, b in zip(batched, single, strict=True)
        for k in ("A", "B")
    ]
    assert max(diffs) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["rule-first", "rule-last"])
def test_branched_request_scores_every_rule_in_one_call(provider: LocalProvider, layout: VoteLayout) -> None:
    from testdata import data_file

    pair = load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))[1]
    rules = (*PRINCIPLES, "Select the response that recommends lemon ice cream.")
    provider.prefix_cache = False
    try:
        single = [provider.complete(vote_one_request(pair.prompt, pair.text_a, pair.text_b, p, layout=layout)) for p in rules]
    finally:
        provider.prefix_cache = True
    provider.forget_prefix()
    branched = provider.complete(vote_branches_request(pair.prompt, pair.text_a, pair.text_b, rules, layout=layout))
    assert branched.branch_logprobs is not None and len(branched.branch_logprobs) == len(rules)
    assert branched.input_tokens == sum(c.input_tokens for c in single)
    # the pair is encoded once: after the first prompt, each rule computes only its own tokens
    computed = branched.input_tokens - branched.cached_input_tokens
    own = max(c.input_tokens for c in single) - min(c.input_tokens for c in single) + 60
    assert single[0].input_tokens > 300 and computed < single[0].input_tokens + (len(rules) - 1) * own
    diffs = [
        abs(lp[k] - c.choice_logprobs[k])  # type: ignore[index]
        for lp, c in zip(branched.branch_logprobs, single, strict=True)
        for k in ("A", "B")
        if lp is not None
    ]
    assert len(diffs) == 2 * len(rules) and max(diffs) < 1e-3


@pytest.mark.slow
def test_rule_last_layout_computes_only_each_rule(provider: LocalProvider) -> None:
    from testdata import data_file

    pair = load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))[1]
    rules = (*PRINCIPLES, "Select the response that recommends lemon ice cream.")
    computed = {}
    for layout in ("rule-first", "rule-last"):
        provider.forget_prefix()
        branched = provider.complete(vote_branches_request(pair.prompt, pair.text_a, pair.text_b, rules, layout=layout))
        computed[layout] = branched.input_tokens - branched.cached_input_tokens
    # the question (about 17 tokens) moved into the prefix: each rule after the first computes that much less
    assert computed["rule-last"] <= computed["rule-first"] - 10 * (len(rules) - 1)


@pytest.mark.slow
def test_generation_reuses_the_prompt_prefix_and_leaves_it_intact(provider: LocalProvider, requests: list[Request]) -> None:
    prompt = dataclasses.replace(requests[0], choices=(), max_tokens=8)  # a vote prompt, generated instead of scored
    provider.forget_prefix()
    first = provider.complete(prompt)
    sampled = dataclasses.replace(prompt, temperature=0.7, seed=3)
    again = provider.complete(sampled)  # the same prompt: everything but its last token is reused
    assert first.cached_input_tokens == 0 and again.cached_input_tokens == again.input_tokens - 1
    after = provider.complete(requests[1])  # a scored prompt sharing the pair, after decoding grew the cache
    assert after.cached_input_tokens > 300
    provider.prefix_cache = False
    try:
        assert provider.complete(prompt).text == first.text
        assert provider.complete(sampled).text == again.text
        fresh = provider.complete(requests[1])
    finally:
        provider.prefix_cache = True
    assert after.choice_logprobs == pytest.approx(fresh.choice_logprobs, abs=1e-3)


def test_only_stale_copies_of_the_same_model_and_dtype_are_pruned(tmp_path: Path) -> None:
    from icai.llm.local import prune_stale_copies

    stem = "SmolLM2-135M-Instruct.Q4_1"

    def copy(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
        return folder

    current = copy(f"{stem}-100-2000-transformers5.24.0-float32")
    old_mtime = copy(f"{stem}-100-1000-transformers5.24.0-float32")
    old_transformers = copy(f"{stem}-100-2000-transformers4.57.1-float32")
    other_dtype = copy(f"{stem}-100-2000-transformers5.24.0-bfloat16")
    other_model = copy("SmolLM2-360M-Instruct.Q4_1-100-2000-transformers5.24.0-float32")
    in_progress = tmp_path / f".{stem}-100-2000-transformers5.24.0-float32.abc"
    in_progress.mkdir()

    removed = prune_stale_copies(current, stem=stem, dtype="float32")
    assert sorted(removed) == sorted([old_mtime, old_transformers])
    assert sorted(p for p in tmp_path.iterdir()) == sorted([current, other_dtype, other_model, in_progress])
