"""Which pairs each part of a run uses: the seeded train / test split and the pool proposals come from.

Pure functions of the data and the seed, so the pipeline and the cost estimate (`icai.cost`) cut
the data the same way without one importing the other.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from icai.types import Comparison, Side

if TYPE_CHECKING:
    from icai.config import RunConfig


def duplicate_key(comparison: Comparison) -> tuple[str, str, str]:
    """What makes two pairs the same: the prompt and the two responses (in either order), ignoring outer whitespace."""
    first, second = sorted((comparison.text_a.strip(), comparison.text_b.strip()))
    return comparison.prompt.strip(), first, second


def duplicate_groups(comparisons: Sequence[Comparison]) -> list[list[int]]:
    """Indices of the pairs that are the same pair (`duplicate_key`), one group per distinct pair, in input order."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, c in enumerate(comparisons):
        groups.setdefault(duplicate_key(c), []).append(i)
    return list(groups.values())


def train_test_split(
    comparisons: Sequence[Comparison], *, test_size: float = 0.3, seed: int = 0
) -> tuple[list[Comparison], list[Comparison]]:
    """Seeded split stratified by `preferred`; both parts keep the input order.

    Copies of one pair (`duplicate_key`) go to the same part, so a held-out score never tests a pair that was
    also trained on: the split draws distinct pairs (each stratified by its first copy's label) and then
    places every copy with its first. Without duplicates this is the plain stratified split.
    With 0 < test_size < 1 and at least two distinct pairs, each part gets at least one.
    """
    if not 0 <= test_size <= 1:
        raise ValueError(f"test_size must lie in [0, 1]; got {test_size}")
    n = len(comparisons)
    if test_size == 0 or n == 0:
        return list(comparisons), []
    if test_size == 1:
        return [], list(comparisons)
    groups = duplicate_groups(comparisons)
    heads = [comparisons[g[0]] for g in groups]
    test_heads = stratified_test_indices(heads, test_size=test_size, seed=seed)
    test_idx = {i for h in test_heads for i in groups[h]}
    train = [c for i, c in enumerate(comparisons) if i not in test_idx]
    test = [c for i, c in enumerate(comparisons) if i in test_idx]
    return train, test


def stratified_test_indices(comparisons: Sequence[Comparison], *, test_size: float, seed: int) -> set[int]:
    """The seeded stratified draw of test indices, each pair on its own (duplicates ignored; `train_test_split` groups them)."""
    n = len(comparisons)
    rng = random.Random(seed)
    strata: dict[Side, list[int]] = defaultdict(list)
    for i, c in enumerate(comparisons):
        strata[c.preferred].append(i)
    chosen: dict[Side, list[int]] = {}
    for side in sorted(strata):
        idx = strata[side][:]
        rng.shuffle(idx)
        strata[side] = idx
        chosen[side] = idx[: math.floor(test_size * len(idx) + 0.5)]
    n_test = sum(len(v) for v in chosen.values())
    largest = max(strata, key=lambda s: (len(strata[s]), s))
    if n >= 2 and n_test == 0:
        chosen[largest] = strata[largest][:1]
    elif n >= 2 and n_test == n:
        chosen[largest] = strata[largest][:-1]
    return {i for idx in chosen.values() for i in idx}


def propose_pool(train: Sequence[Comparison], config: RunConfig) -> list[Comparison]:
    """The pairs to propose from: all, or a seeded sample of `propose_sample` in their input order."""
    n = config.propose_sample
    if n is None or n >= len(train):
        return list(train)
    keep = set(random.Random(config.seed).sample(range(len(train)), n))
    return [c for i, c in enumerate(train) if i in keep]
