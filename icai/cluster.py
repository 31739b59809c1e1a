"""Stage 2: embed candidate principles, cluster them, keep one representative per cluster."""

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


def cluster(
    principles: Sequence[Principle],
    embedder: Embedder,
    *,
    n_clusters: int = 40,
    seed: int = 0,
) -> Clustering:
    """Group near-duplicate principles with seeded k-means."""
    if not principles:
        return Clustering((), ())
    from sklearn.cluster import KMeans, MiniBatchKMeans

    vectors = embedder.encode([p.text for p in principles])
    # never ask for more clusters than there are distinct points (k-means would warn and duplicate)
    k = min(n_clusters, len(np.unique(vectors.round(6), axis=0)))
    model: KMeans | MiniBatchKMeans
    if len(principles) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=10)
    labels = model.fit_predict(vectors) if k > 1 else np.zeros(len(principles), dtype=int)
    centroids = model.cluster_centers_ if k > 1 else vectors.mean(axis=0, keepdims=True)

    candidates = tuple(dataclasses.replace(p, cluster=int(c)) for p, c in zip(principles, labels, strict=True))
    representatives = []
    for c in sorted(set(int(x) for x in labels)):
        members = [i for i, lab in enumerate(labels) if lab == c]
        dists = np.linalg.norm(vectors[members] - centroids[c], axis=1)
        # nearest to the centroid; ties broken by id so the choice never depends on input order
        best = min(range(len(members)), key=lambda j: (round(float(dists[j]), 6), principles[members[j]].id))
        sources = tuple(dict.fromkeys(s for i in members for s in principles[i].source_ids))
        representatives.append(
            dataclasses.replace(principles[members[best]], cluster=c, cluster_size=len(members), source_ids=sources)
        )
    log.info("cluster: %d candidates -> %d clusters", len(principles), len(representatives))
    return Clustering(candidates, tuple(representatives))
