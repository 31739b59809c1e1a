"""Several pairs per forward pass (branched requests packed by a token budget), and prompts decoded together.

Both paths run the same tiny random-weight model (tests/tiny_model.py): what is checked is that the
packed path computes what one request per pass computes, not what the model says.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from testdata import missing

pytest.importorskip("transformers")

from tiny_model import tiny_model_folder  # noqa: E402

import icai.llm.local as local  # noqa: E402
from icai.io import load_comparisons  # noqa: E402
from icai.llm import LLM, Request  # noqa: E402
from icai.llm.base import ConfigError  # noqa: E402
from icai.llm.local import LocalProvider  # noqa: E402
from icai.prompts import propose_small_request, vote_branches_request  # noqa: E402
from icai.types import Comparison, Principle  # noqa: E402
from icai.vote import vote  # noqa: E402

RULES = (
    "Select the response that is shorter.",
    "Select the response that mentions a cat.",
    "Select the response that recommends lemon ice cream to the user, with a reason.",
    "Select the response that is more formal.",
    "Select the response that uses an exclamation mark.",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def comparisons() -> list[Comparison]:
    from testdata import data_file

    pairs = load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))
    # pairs of different lengths, so prompts and suffixes are padded
    return sorted(pairs, key=lambda c: len(c.text_a) + len(c.text_b))[::5][:7]


def provider(folder: Path, **options: Any) -> LocalProvider:
    p = LocalProvider(str(folder), device="cpu", weights_cache=False, **options)
    p.load()
    return p


def test_packed_pairs_vote_as_one_pair_per_pass(folder: Path, comparisons: list[Comparison]) -> None:
    principles = [Principle.from_text(r) for r in RULES]
    one = provider(folder, token_budget=1)
    expected = vote(comparisons, principles, LLM(one, progress=False), mode="logprob")
    packed = provider(folder, token_budget=10**7)
    got = vote(comparisons, principles, LLM(packed, progress=False), mode="logprob")
    assert [(v.comparison_id, v.principle_id, v.value) for v in got] == [
        (v.comparison_id, v.principle_id, v.value) for v in expected
    ]
    assert len({v.value for v in got}) > 1  # the comparison is not between constant votes
    margins = [float(v.raw.removeprefix("margin=")) for v in got]
    assert margins == pytest.approx([float(v.raw.removeprefix("margin=")) for v in expected], abs=1e-3)
    requests = 2 * len(comparisons)  # one per pair and order, all rules as branches
    assert one.forward_passes == 2 * requests  # the shared prompt, then its branches
    assert packed.forward_passes == 2  # every pair's prompt in one pass, every branch in another


def test_packed_branches_give_the_logprobs_of_unbranched_calls(folder: Path, comparisons: list[Comparison]) -> None:
    requests = [vote_branches_request(c.prompt, c.text_a, c.text_b, RULES) for c in comparisons[:4]]
    single = provider(folder, prefix_cache=False)
    expected = [[single.complete(r.branch(i)) for i in range(len(RULES))] for r in requests]
    packed = provider(folder, token_budget=10**7).complete_many(requests)
    for completion, branches in zip(packed, expected, strict=True):
        assert completion.branch_logprobs is not None
        for got, want in zip(completion.branch_logprobs, branches, strict=True):
            assert got is not None and want.choice_logprobs is not None
            assert got == pytest.approx(want.choice_logprobs, abs=1e-4)
        assert completion.input_tokens == sum(b.input_tokens for b in branches)
        # the pair's prompt is computed once; every branch after the first reuses it
        assert 0 < completion.cached_input_tokens < completion.input_tokens


def test_one_pair_passes_in_length_order_keep_each_branch_its_own_logprobs(
    folder: Path, comparisons: list[Comparison], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 branches by at most 3 rows: two passes of 3 and 2, the branches sorted by length, so the
    # passes hold them out of request order; each must come back to its own rule.
    monkeypatch.setattr(local, "MAX_BATCH", 3)
    requests = [vote_branches_request(c.prompt, c.text_a, c.text_b, RULES) for c in comparisons[:3]]
    single = provider(folder, prefix_cache=False)
    one = provider(folder, token_budget=1)
    for request in requests:
        got = one.complete(request).branch_logprobs
        assert got is not None
        for i, scores in enumerate(got):
            want = single.complete(request.branch(i)).choice_logprobs
            assert want is not None and scores == pytest.approx(want, abs=1e-4)
    # the shared prompt, a pass of branches, the prompt's last token again (the rest of its KV
    # reused) and the second pass of branches
    assert one.forward_passes == 4 * len(requests)


def test_length_chunks_are_few_equal_and_sorted() -> None:
    lengths = [9, 3, 7, 1, 8, 2, 6]
    chunks = local._length_chunks(lengths, 3)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    assert [len(c) for c in chunks] == [3, 3, 1]
    flat = [lengths[i] for c in chunks for i in c]
    assert flat == sorted(lengths)
    assert [len(c) for c in local._length_chunks([5] * 40, 32)] == [20, 20]
    assert local._length_chunks([], 32) == []


def test_the_token_budget_sizes_each_pass(folder: Path, comparisons: list[Comparison]) -> None:
    requests = [vote_branches_request(c.prompt, c.text_a, c.text_b, RULES) for c in comparisons]
    probe = provider(folder)
    # rows x padded context of each request alone, as the packing counts it
    sizes = []
    for r in requests:
        item = probe._encode_branches(r)
        sizes.append(len(item.encoded) * max(int(e.shape[0]) for e in item.encoded))
    budget = 3 * max(sizes)
    packed = provider(folder, token_budget=budget)
    shapes: list[tuple[int, int]] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        shapes.append((int(kwargs["input_ids"].shape[0]), int(mask.shape[1]) if mask is not None else 0))

    handle = packed._model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        completions = packed.complete_many(requests)
    finally:
        handle.remove()
    assert len(completions) == len(requests)
    branch_passes = [rows * width for rows, width in shapes if rows > len(requests)]
    assert branch_passes and max(branch_passes) <= budget
    # packed, not one pair per pass: between 2 and 3 pairs in each branch pass
    assert len(requests) / 3 <= len(branch_passes) < len(requests)


def test_prompts_decoded_together_give_the_text_of_one_at_a_time(folder: Path, comparisons: list[Comparison]) -> None:
    requests = []
    for k, c in enumerate(comparisons[:5]):
        request = propose_small_request(
            c.prompt, ["cat"], preferred_excerpt=c.text_a[:80], temperature=0.0 if k % 2 else 0.8, seed=k, max_tokens=3 + 2 * k
        )
        requests.append(request)
    requests.append(dataclasses.replace(requests[0], max_tokens=1))
    # samples of one prompt, as proposals are asked: prefilled once
    requests += [dataclasses.replace(requests[1], temperature=0.8, seed=s) for s in (7, 8)]
    single = provider(folder, prefix_cache=False)
    expected = [single.complete(r) for r in requests]
    packed = provider(folder, token_budget=10**7)
    got = packed.complete_many(requests)
    assert [c.text for c in got] == [c.text for c in expected]
    assert [c.output_tokens for c in got] == [c.output_tokens for c in expected]
    assert len({c.text for c in got}) > 2
    # one prefill, then one pass per new token of the longest answer
    assert packed.forward_passes == max(c.output_tokens for c in got)
    assert [c.cached_input_tokens > 0 for c in got] == [False] * 5 + [True] * 3  # the last three repeat a prompt
    assert single.forward_passes == sum(max(c.output_tokens, 1) for c in expected)


def test_a_token_budget_below_one_is_refused(folder: Path) -> None:
    with pytest.raises(ConfigError, match="token_budget"):
        LocalProvider(str(folder), token_budget=0)


def test_generation_and_scoring_requests_keep_their_order(folder: Path, comparisons: list[Comparison]) -> None:
    c = comparisons[0]
    vote_request = vote_branches_request(c.prompt, c.text_a, c.text_b, RULES[:2])
    generate = Request.chat("Name a colour.", max_tokens=2)
    mixed = [generate, vote_request, vote_request, generate, vote_request.branch(0)]
    packed = provider(folder, token_budget=10**7).complete_many(mixed)
    single = provider(folder, prefix_cache=False)
    for got, request in zip(packed, mixed, strict=True):
        want = single.complete(request)
        assert got.text == want.text
        assert (got.branch_logprobs is None) == (want.branch_logprobs is None)


@pytest.mark.slow
def test_packed_pairs_vote_as_one_pair_per_pass_with_the_packaged_model(comparisons: list[Comparison]) -> None:
    try:
        one = LocalProvider("smollm2", device="cpu", token_budget=1)
        one.load()
    except ConfigError as exc:
        missing(str(exc))
    packed = LocalProvider("smollm2", device="cpu", token_budget=10**6)
    principles = [Principle.from_text(r) for r in RULES[:3]]
    pairs = comparisons[:3]
    expected = vote(pairs, principles, LLM(one, progress=False), mode="logprob")
    got = vote(pairs, principles, LLM(packed, progress=False), mode="logprob")
    assert [v.value for v in got] == [v.value for v in expected]
    margins = [float(v.raw.removeprefix("margin=")) for v in got]
    assert margins == pytest.approx([float(v.raw.removeprefix("margin=")) for v in expected], abs=1e-3)
    assert packed.forward_passes == 2 < one.forward_passes


def test_the_dtype_is_part_of_the_model_string_and_reaches_workers(folder: Path) -> None:
    """Two dtypes' answers differ, so they must never share cache keys or run fingerprints."""
    from icai.llm import get_llm

    spec = f"local/{folder}"
    plain = get_llm(spec, device="cpu", weights_cache=False, progress=False)
    assert plain.model == spec  # float32, the CPU default: the string as before
    bf16 = get_llm(f"{spec}@bfloat16", device="cpu", weights_cache=False, progress=False)
    assert bf16.model == f"{spec}@bfloat16"
    assert isinstance(bf16.provider, LocalProvider) and bf16.provider.dtype == "bfloat16"
    same = get_llm(spec, device="cpu", dtype="bfloat16", weights_cache=False, progress=False)
    assert same.model == bf16.model  # named by the spec or by the option: one identity
    request = Request.chat("Which is better, A or B?", choices=("A", "B"))
    assert request.cache_key(plain.model) != request.cache_key(bf16.model)
    # a worker rebuilds the provider with the dtype resolved here, not its own "auto"
    assert plain.recipe is not None and ("dtype", "float32") in plain.recipe.options
    assert bf16.recipe is not None and ("dtype", "bfloat16") in bf16.recipe.options
    with pytest.raises(ConfigError, match="dtype"):
        get_llm(f"{spec}@bfloat16", device="cpu", dtype="float32", progress=False)
