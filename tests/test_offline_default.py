"""The voter a provider's capabilities choose for `--vote-mode auto` (icai.voter.resolve_voter), and the local default."""

from __future__ import annotations

import json
from pathlib import Path

from icai.config import RunConfig
from icai.cost import estimate_run
from icai.embed import HashingEmbedder
from icai.llm import LLM
from icai.llm.base import Capabilities
from icai.llm.fake import fake_provider
from icai.llm.local import LOCAL_CAPABILITIES
from icai.pipeline import run
from icai.prompts import VOTE_SYSTEM
from icai.style import STYLE_ORIGIN
from icai.voter import resolve_voter

ROOT = Path(__file__).resolve().parents[1]
EMBEDDING_VOTER = Capabilities(embedding_votes=True)


def test_auto_becomes_embedding_only_for_a_provider_that_declares_it() -> None:
    assert resolve_voter(RunConfig(), EMBEDDING_VOTER).vote_mode == "embedding"
    assert resolve_voter(RunConfig(), Capabilities()).vote_mode == "auto"
    for mode in ("generate", "logprob", "embedding"):  # an explicit choice is never overridden
        assert resolve_voter(RunConfig(vote_mode=mode), EMBEDDING_VOTER).vote_mode == mode  # type: ignore[arg-type]


def test_a_run_with_an_embedding_voter_asks_the_model_no_vote_and_says_which_judge_scored_it(orthogonal_csv) -> None:
    from icai.io import load_comparisons

    provider = fake_provider("keyword")
    provider.capabilities = EMBEDDING_VOTER  # type: ignore[attr-defined]
    result = run(
        load_comparisons(orthogonal_csv), llm=LLM(provider, progress=False), embedder=HashingEmbedder(),
        config=RunConfig(model="fake/keyword", test_size=0.3),
    )  # fmt: skip
    assert result.constitution.metadata["config"]["vote_mode"] == "embedding"  # the voter that ran is recorded
    assert provider.requests and not any(r.messages[0].content == VOTE_SYSTEM for r in provider.requests)
    assert result.evaluation is not None
    explanation = result.evaluation.explanations["constitution"]
    assert "own votes on the held-out pairs" in explanation
    assert "embedding similarity" in explanation or not any(p.origin != STYLE_ORIGIN for p in result.constitution.principles)
    assert result.evaluation.score_for("constitution_llm") is not None  # the LLM judge's line, beside it
    estimate = estimate_run(load_comparisons(orthogonal_csv), RunConfig(model="fake/keyword"), capabilities=EMBEDDING_VOTER)
    assert next(s for s in estimate.stages if s.stage == "vote").calls == 0


def test_the_local_default_follows_the_recorded_benchmark() -> None:
    """LOCAL_CAPABILITIES.embedding_votes and RunConfig.style_principles are what bench/offline_default.py chose."""
    report = json.loads((ROOT / "bench" / "results" / "offline_default.json").read_text())
    chosen = report["decision"]["default"]
    voter, _, style = chosen.partition("+")
    assert LOCAL_CAPABILITIES.embedding_votes is (voter == "embedding")
    assert RunConfig().style_principles is (style == "style")
