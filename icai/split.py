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
    from icai.pipeline import RunConfig


def train_test_split(
    comparisons: Sequence[Comparison], *, test_size: float = 0.3, seed: int = 0
) -> tuple[list[Comparison], list[Comparison]]:
    """Seeded split stratified by `preferred`; both parts keep the input order.

    With 0 < test_size < 1 and at least two comparisons, each part gets at least one.
    """
    if not 0 <= test_size <= 1:
        raise ValueError(f"test_size must lie in [0, 1]; got {test_size}")
    n = len(comparisons)
    if test_size == 0 or n == 0:
        return list(comparisons), []
    if test_size == 1:
        return [], list(comparisons)
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
    test_idx = {i for idx in chosen.values() for i in idx}
    train = [c for i, c in enumerate(comparisons) if i not in test_idx]
    test = [c for i, c in enumerate(comparisons) if i in test_idx]
    return train, test


def propose_pool(train: Sequence[Comparison], config: RunConfig) -> list[Comparison]:
    """The pairs to propose from: all, or a seeded sample of `propose_sample` in their input order."""
    n = config.propose_sample
    if n is None or n >= len(train):
        return list(train)
    keep = set(random.Random(config.seed).sample(range(len(train)), n))
    return [c for i, c in enumerate(train) if i in keep]
