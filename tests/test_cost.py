"""icai.cost: the dry-run estimate of calls and tokens per stage, against the calls a run makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from icai.config import RunConfig
from icai.cost import estimate_run
from icai.embed import get_embedder
from icai.io import load_comparisons
from icai.llm import get_llm
from icai.pipeline import run


def test_estimate_counts_branched_calls_for_local_models(orthogonal_csv: Path) -> None:
    from icai.io import load_comparisons

    comparisons = load_comparisons(orthogonal_csv)
    local = estimate_run(comparisons, RunConfig(model="local/smollm2", vote_mode="logprob", n_clusters=12))
    server = estimate_run(comparisons, RunConfig(model="openai/some-server-model", vote_mode="logprob", n_clusters=12))
    n_pairs = len(comparisons)
    assert local.stages[1].calls == n_pairs * 2  # 12 principles as branches of one call per order
    assert server.stages[1].calls == n_pairs * 2 * 12  # a server gets one call per principle
    assert local.stages[1].input_tokens == server.stages[1].input_tokens
    one_order = estimate_run(comparisons, RunConfig(model="local/smollm2", vote_mode="logprob", n_clusters=12, adaptive=True, adaptive_one_order=True))
    assert one_order.stages[1].calls == n_pairs


@pytest.mark.parametrize(
    "options",
    [
        {"adaptive": True, "min_pairs": 8},
        {"adaptive": True, "min_pairs": 8, "adaptive_one_order": True, "propose_sample": 12},
        {"cascade": True},
    ],
    ids=["adaptive", "adaptive-one-order-sample", "cascade"],
)
def test_estimate_brackets_runs_that_stop_early(orthogonal_csv: Path, options: dict[str, Any]) -> None:
    comparisons = load_comparisons(orthogonal_csv)
    config = RunConfig(model="fake/keyword", embedder="hash", n_clusters=12, **options)
    estimate = estimate_run(comparisons, config)
    llm = get_llm("fake/keyword", progress=False)
    run(comparisons, llm=llm, embedder=get_embedder("hash"), config=config)
    assert estimate.min_calls < estimate.calls
    assert estimate.min_calls <= llm.usage.calls <= estimate.calls
    exhaustive = estimate_run(comparisons, RunConfig(model="fake/keyword", embedder="hash", n_clusters=12))
    if options.get("adaptive_one_order"):
        assert estimate.stages[1].calls == exhaustive.stages[1].calls // 2  # one order: half the most
        assert estimate.stages[0].calls == 12  # proposals from the sample only
