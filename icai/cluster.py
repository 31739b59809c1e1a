"""Stage 2: embed candidate principles, cluster them, keep one representative per cluster.

Everything after encoding is linear in the number of principles: distinct points
are counted only up to `n_clusters`, and representatives come from one
vectorised distance computation and one sort, so 50,000 principles cluster in
seconds (bench/cluster_scale.py); encoding dominates.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from icai.embed import Embedder
from icai.types import Principle

log = logging.getLogger(__name__)

MINIBATCH_ABOVE = 5000
"""Above this many principles, MiniBatchKMeans replaces KMeans."""


@dataclass(frozen=True)
class Clustering:
    candidates: tuple[Principle, ...]
    """Every input principle, with its cluster set."""
    representatives: tuple[Principle, ...]
    """One per cluster: the member nearest the centroid, carrying the cluster's size and sources."""


def count_distinct(vectors: np.ndarray, *, limit: int, decimals: int = 6) -> int:
    """Distinct rows (after rounding), counting stops at `limit`; O(limit) rows read when most are distinct."""
    seen: set[bytes] = set()
    for row in np.ascontiguousarray(vectors.round(decimals)):
        seen.add(row.tobytes())
        if len(seen) >= limit:
            break
    return len(seen)


def cluster(
    principles: Sequence[Principle],
    embedder: Embedder,
    *,
    n_clusters: int = 40,
    seed: int = 0,
    minibatch_above: int = MINIBATCH_ABOVE,
) -> Clustering:
    """Group near-duplicate principles with seeded k-means (MiniBatchKMeans above `minibatch_above`)."""
    if not principles:
        return Clustering((), ())
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    vectors = np.asarray(embedder.encode([p.text for p in principles]), dtype=np.float32)
    # never ask for more clusters than there are distinct points (k-means would warn and duplicate)
    k = count_distinct(vectors, limit=n_clusters)
    if k > 1:
        if len(principles) > minibatch_above:
            # Its steps are too small to gain from threads, and on a shared CPU the idle
            # OpenMP/BLAS threads spin: one thread was 5-10x faster in wall time at 10,000.
            with threadpool_limits(limits=1):
                minibatch = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048)
                labels = np.asarray(minibatch.fit_predict(vectors), dtype=np.int64)
        else:
            labels = np.asarray(KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(vectors), dtype=np.int64)
    else:
        labels = np.zeros(len(principles), dtype=np.int64)

    # Centroids are the members' means (MiniBatchKMeans centres are only running estimates).
    n_labels = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_labels)
    sums = np.zeros((n_labels, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, vectors)
    centroids = sums / np.maximum(sizes, 1)[:, None]
    dists = np.linalg.norm(vectors - centroids[labels], axis=1).round(6)
    ids = np.array([p.id for p in principles])
    # nearest to the centroid; ties broken by id so the choice never depends on input order
    order = np.lexsort((ids, dists, labels))
    firsts = order[np.r_[True, labels[order][1:] != labels[order][:-1]]]

    members: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        members.setdefault(lab, []).append(i)
    candidates = tuple(dataclasses.replace(p, cluster=int(c)) for p, c in zip(principles, labels.tolist(), strict=True))
    representatives = []
    for best in firsts.tolist():
        c = int(labels[best])
        sources = tuple(dict.fromkeys(s for i in members[c] for s in principles[i].source_ids))
        representatives.append(
            dataclasses.replace(principles[best], cluster=c, cluster_size=len(members[c]), source_ids=sources)
        )
    log.info("cluster: %d candidates -> %d clusters", len(principles), len(representatives))
    return Clustering(candidates, tuple(representatives))
