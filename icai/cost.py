"""Know the cost before spending it: calls / tokens / USD per stage of a run (prices: `icai.llm.prices`).

The estimate renders the real prompts (`icai.prompts`) for the data and counts
about one token per four characters; the number of principles that reach the
vote is estimated as min(n_clusters, train pairs x proposals per pair).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from icai.llm.prices import CHARS_PER_TOKEN, PRICES_AS_OF, Price, estimate_tokens, price_for
from icai.prompts import FRAME, judge_request, vote_one_request, vote_request
from icai.split import propose_pool, train_test_split
from icai.types import Comparison

if TYPE_CHECKING:
    from icai.config import RunConfig
    from icai.llm.base import Capabilities


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    calls: int
    """The calls of the stage; an upper bound when `min_calls` is set."""
    input_tokens: int
    output_tokens: int
    min_calls: int | None = None
    """Set for a stage that stops early (adaptive voting) or skips work (cascade): its fewest calls."""

    @property
    def shown_calls(self) -> str:
        if self.min_calls is None or self.min_calls == self.calls:
            return f"{self.calls:,}"
        if self.min_calls == 0:
            return f"<= {self.calls:,}"
        return f"{self.min_calls:,}-{self.calls:,}"


@dataclass(frozen=True)
class RunEstimate:
    """Calls and tokens per stage of one run, and their price where the model's is known."""

    model: str
    stages: tuple[StageEstimate, ...]
    price: Price | None
    n_train: int
    n_test: int
    n_principles: int
    """Principles expected to reach the vote."""

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def min_calls(self) -> int:
        """The fewest calls the run can make (equal to `calls` unless a stage stops early)."""
        return sum(s.calls if s.min_calls is None else s.min_calls for s in self.stages)

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.stages)

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.stages)

    def cost(self, stage: StageEstimate | None = None) -> float | None:
        """USD for one stage or (by default) the whole run; None when the price is unknown."""
        if self.price is None:
            return None
        if stage is not None:
            return self.price.cost(stage.input_tokens, stage.output_tokens)
        return self.price.cost(self.input_tokens, self.output_tokens)

    def table(self, width: int | None = None) -> str:
        """The per-stage table `icai run --dry-run` prints (`icai.tables`: fits the terminal)."""
        from icai.tables import render_table

        total = StageEstimate("total", self.calls, self.input_tokens, self.output_tokens, self.min_calls)
        rows = []
        for s in (*self.stages, total):
            usd = self.cost(s if s is not total else None)
            rows.append([s.stage, s.shown_calls, f"{s.input_tokens:,}", f"{s.output_tokens:,}", "n/a" if usd is None else f"{usd:.4f}"])
        lines = [
            render_table(
                ["stage", "calls", "input tokens", "output tokens", "USD"], rows, numeric=[1, 2, 3, 4], width=width,
                title=f"Estimate for {self.model}: {self.n_train} train / {self.n_test} test pairs, "
                f"about {self.n_principles} principles voted on",
            )
        ]
        if self.min_calls != self.calls:
            lines.append(
                "A range: adaptive voting stops testing a principle once its place is clear (fewest: every "
                "principle on --min-pairs pairs), a cascade skips items the embedder finds irrelevant; "
                "tokens and USD are the most it can take."
            )
        if self.price is None:
            lines.append(f"No price is known for {self.model}: tokens only.")
        else:
            lines.append(
                f"Prices: ${self.price.input:g} / ${self.price.output:g} per 1M input / output tokens "
                f"(as of {PRICES_AS_OF}); tokens are estimated as characters / {CHARS_PER_TOKEN}."
            )
        return "\n".join(lines)


_TYPICAL_PRINCIPLE = f"{FRAME} gives a concrete example that illustrates the main point clearly."
"""Stands in for principles not yet proposed; about the length of a real one."""

_PROPOSE_OUTPUT_PER_PRINCIPLE = 20
_VOTE_OUTPUT_PER_RULE = 6
_JUDGE_OUTPUT = 6


def resolve_mode(capabilities: Capabilities, vote_mode: str) -> str:
    """What "auto" becomes, as `icai.vote.resolve_vote_mode` decides it from the provider's capabilities.

    A server that negotiates log-probs is assumed to return them (the run asks it once).
    """
    if vote_mode != "auto":
        return vote_mode
    return "logprob" if capabilities.logprob_votes and capabilities.choice_logprobs else "generate"


def estimate_run(
    comparisons: Sequence[Comparison],
    config: RunConfig,
    *,
    capabilities: Capabilities | None = None,
    base_url: str | None = None,
    price: Price | None = None,
) -> RunEstimate:
    """Calls and tokens per stage that `icai.pipeline.run(comparisons, config=config)` will make.

    Identical requests are counted once (the response cache answers the rest).
    `capabilities`: those of the provider that will run (default: what the provider of
    `config.model` declares without a base_url; `icai.llm.capabilities_for`).
    """
    from icai.llm.registry import capabilities_for
    from icai.voter import resolve_voter

    if capabilities is None:
        capabilities = capabilities_for(config.model)
    config = resolve_voter(config, capabilities)
    mode = resolve_mode(capabilities, config.vote_mode)
    train, test = train_test_split(comparisons, test_size=config.test_size, seed=config.seed)
    pool = propose_pool(train, config)
    # the user's principles bypass clustering (icai.pipeline.with_user_principles); icai test proposes nothing
    proposed = 0 if config.principles_only else min(config.n_clusters, len(pool) * config.proposals_per_pair)
    n_principles = proposed + len(config.principles)
    stages = [] if config.principles_only else [_propose(pool, config, capabilities, form_from=train)]
    stages.append(_learn_vote("vote", train, n_principles, config, mode, capabilities))
    if test:
        if config.flip_check:
            flipped = [c.with_preferred(c.rejected) for c in train]
            if not config.principles_only:
                stages.append(
                    _propose(propose_pool(flipped, config), config, capabilities, stage="propose (flipped)", form_from=flipped)
                )
            stages.append(_learn_vote("vote (flipped)", flipped, n_principles, config, mode, capabilities))
        n_constitution = min(config.max_principles, n_principles)
        judged = [n_constitution, 0] + ([n_constitution] if n_constitution else [])
        if config.flip_check:
            judged.append(n_constitution)
        stages.append(_judge(test, judged, mode))
        curve = min(config.curve_candidates, n_principles)
        stages.append(estimate_vote("evaluate: vote", test, curve, config, mode, capabilities))
    price = price if price is not None else price_for(config.model, base_url=base_url)
    return RunEstimate(config.model, tuple(stages), price, len(train), len(test), n_principles)


def _propose(
    pool: Sequence[Comparison],
    config: RunConfig,
    capabilities: Capabilities,
    *,
    stage: str = "propose",
    form_from: Sequence[Comparison] | None = None,
) -> StageEstimate:
    from icai.propose import (
        SAMPLE_TEMPERATURE,
        SMALL_MAX_TOKENS,
        resolve_propose_style,
        small_plan,
        small_requests,
        standard_requests,
    )

    if resolve_propose_style(config.propose_style, capabilities) == "small":
        # The requests icai.propose sends: one short rule per call, `proposal_samples` calls per pair.
        hints, forms = small_plan(pool, form_from=form_from)
        requests = small_requests(
            pool, hints, seed=config.seed, samples=config.proposal_samples, temperature=SAMPLE_TEMPERATURE, forms=forms
        )
        per_call_output = SMALL_MAX_TOKENS
    else:
        requests = standard_requests(pool, per_pair=config.proposals_per_pair, seed=config.seed)
        per_call_output = _PROPOSE_OUTPUT_PER_PRINCIPLE * config.proposals_per_pair + 10
    seen: set[str] = set()
    tokens = 0
    for request in requests:
        key = request.cache_key(config.model)
        if key not in seen:
            seen.add(key)
            tokens += estimate_tokens(request.prompt_text)
    return StageEstimate(stage, len(seen), tokens, len(seen) * per_call_output)


def _learn_vote(
    stage: str, train: Sequence[Comparison], n_principles: int, config: RunConfig, mode: str, capabilities: Capabilities
) -> StageEstimate:
    """The training vote: exhaustive, or a range for adaptive voting and cascades."""
    if config.vote_mode == "embedding":
        return StageEstimate(stage, 0, 0, 0)
    if config.adaptive:
        orders = 1 if config.adaptive_one_order else 2
        most = estimate_vote(stage, train, n_principles, config, mode, capabilities, orders=orders)
        fewest = estimate_vote(stage, train[: config.min_pairs], n_principles, config, mode, capabilities, orders=orders)
        return dataclasses.replace(most, min_calls=fewest.calls)
    exhaustive = estimate_vote(stage, train, n_principles, config, mode, capabilities)
    return dataclasses.replace(exhaustive, min_calls=0) if config.cascade else exhaustive


def estimate_vote(
    stage: str,
    pairs: Sequence[Comparison],
    n_principles: int,
    config: RunConfig,
    mode: str,
    capabilities: Capabilities,
    *,
    orders: int = 2,
) -> StageEstimate:
    """Calls and tokens of voting `n_principles` on `pairs` in `orders` presentation orders with the config's batch size."""
    if n_principles == 0 or not pairs:
        return StageEstimate(stage, 0, 0, 0)
    batch_size = config.vote_batch_size
    if mode == "logprob":
        # a provider with branched requests (the local model) scores a call's principles in one request;
        # others take one per call
        per_call = batch_size if capabilities.branches else 1
        unique = _unique_pairs(pairs)
        sample, scale = _token_sample(unique)
        tokens = round(scale * sum(
            orders * n_principles * estimate_tokens(vote_one_request(c.prompt, c.text_a, c.text_b, _TYPICAL_PRINCIPLE).prompt_text)
            for c in sample
        ))  # fmt: skip
        calls = len(unique) * orders * math.ceil(n_principles / per_call)
        return StageEstimate(stage, calls, tokens, orders * n_principles * len(unique))
    sizes = [batch_size] * (n_principles // batch_size) + (
        [n_principles % batch_size] if n_principles % batch_size else []
    )
    unique = _unique_pairs(pairs)
    sample, scale = _token_sample(unique)
    tokens = 0
    for c in sample:
        for size in sizes:
            request = vote_request(c.prompt, c.text_a, c.text_b, [_TYPICAL_PRINCIPLE] * size)
            tokens += orders * estimate_tokens(request.prompt_text)
    calls = len(unique) * len(sizes) * orders  # both presentation orders, or one
    output = len(unique) * orders * sum(2 + _VOTE_OUTPUT_PER_RULE * size for size in sizes)
    return StageEstimate(stage, calls, round(scale * tokens), output)


def _judge(test: Sequence[Comparison], principle_counts: Sequence[int], mode: str) -> StageEstimate:
    logprob = mode == "logprob"
    calls = tokens = 0
    for c in _unique_pairs(test):
        for k in principle_counts:
            request = judge_request(c.prompt, c.text_a, c.text_b, [_TYPICAL_PRINCIPLE] * k, logprob=logprob)
            calls += 2
            tokens += 2 * estimate_tokens(request.prompt_text)
    return StageEstimate("evaluate: judge", calls, tokens, calls * (1 if logprob else _JUDGE_OUTPUT))


TOKEN_SAMPLE = 20_000
"""Above this many distinct pairs, vote prompts' tokens are counted on an evenly spaced sample of this many and
scaled up (rendering a million prompts to count them took longer than the estimate is worth)."""


def _token_sample(unique: Sequence[Comparison]) -> tuple[Sequence[Comparison], float]:
    """The pairs whose prompts are counted, and the factor that scales their tokens to all of `unique`."""
    if len(unique) <= TOKEN_SAMPLE:
        return unique, 1.0
    step = len(unique) / TOKEN_SAMPLE
    return [unique[int(i * step)] for i in range(TOKEN_SAMPLE)], len(unique) / TOKEN_SAMPLE


def _unique_pairs(pairs: Sequence[Comparison]) -> list[Comparison]:
    """Pairs with distinct texts: a repeated pair sends the same requests, which the cache answers."""
    seen: dict[tuple[str, str, str], Comparison] = {}
    for c in pairs:
        seen.setdefault((c.prompt, c.text_a, c.text_b), c)
    return list(seen.values())
