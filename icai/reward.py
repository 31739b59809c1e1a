"""A reward from a constitution: per-principle weights fitted on the training votes, and a callable that applies them.

A pair's features are its principles' vote directions (`icai.stats.direction`):
+1 when the principle picks response a, -1 when it picks b, 0 when it abstains
or has no valid vote. A logistic regression of the label (a preferred) on the
directions gives one weight per principle. By default the fit has no intercept, so
the reward is position-free: P(a over b) = 1 - P(b over a). It is fitted on each
pair in both orders (directions negated, label flipped): without an intercept that
leaves the weights' data term unchanged (each row counts twice) and keeps both labels
present when every pair was labelled "a".

`ConstitutionReward` votes each principle on a new pair with any icai LLM, through
`icai.vote.vote` (the same requests, both orders, and debiasing as a run's votes),
and combines the directions with the weights. Nothing here writes files;
`icai.export` writes the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icai.errors import DataError
from icai.llm.client import LLM
from icai.stats import bootstrap_ci, direction
from icai.types import Comparison, Principle, Vote, read_json_file
from icai.vote import LOGPROB_MARGIN, resolve_vote_mode, vote

REWARD_SCHEMA = "icai.reward_weights/1"

DEFAULT_C = 1.0
"""Inverse L2 regularisation strength (scikit-learn's `C`); directions lie in {-1, 0, 1}, so 1.0 keeps weights moderate."""

FEATURE = "vote direction: +1 the principle picks response a, -1 response b, 0 abstain or no valid vote"


@dataclass(frozen=True)
class HeldOut:
    """Accuracy of the weights on held-out pairs; a pair the weights cannot tell apart scores 0.5."""

    accuracy: float
    ci: tuple[float, float]
    """95% percentile bootstrap interval."""
    n_pairs: int

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "ci": list(self.ci), "n_pairs": self.n_pairs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeldOut:
        lo, hi = data["ci"]
        return cls(float(data["accuracy"]), (float(lo), float(hi)), int(data["n_pairs"]))


@dataclass(frozen=True)
class RewardWeights:
    """Per-principle weights of a logistic reward over vote directions."""

    principles: tuple[Principle, ...]
    weights: tuple[float, ...]
    intercept: float
    train_accuracy: float
    n_pairs: int
    """Training pairs the weights were fitted on."""
    seed: int
    regularization_c: float = DEFAULT_C
    symmetric: bool = True
    """Fitted on each pair in both orders, without an intercept."""
    held_out: HeldOut | None = None
    held_out_note: str = ""
    """Why `held_out` is None, when it is."""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.principles):
            raise ValueError(f"{len(self.weights)} weights for {len(self.principles)} principles")

    @property
    def principle_ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def logit(self, directions: Sequence[float] | np.ndarray) -> float:
        """The log-odds that response a is preferred, from one pair's directions (in principle order)."""
        d = np.asarray(directions, dtype=float)
        if d.shape != (len(self.weights),):
            raise ValueError(f"expected {len(self.weights)} directions, got shape {d.shape}")
        return float(d @ np.asarray(self.weights) + self.intercept)

    def probability(self, directions: Sequence[float] | np.ndarray) -> float:
        """P(response a preferred) from one pair's directions."""
        return _sigmoid(self.logit(directions))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REWARD_SCHEMA,
            "feature": FEATURE,
            "link": "logistic: P(a preferred) = 1 / (1 + exp(-(sum_i weight_i * direction_i + intercept)))",
            "principles": [
                {"rank": rank, "id": p.id, "text": p.text, "origin": p.origin, "weight": w}
                for rank, (p, w) in enumerate(zip(self.principles, self.weights, strict=True), start=1)
            ],
            "intercept": self.intercept,
            "train_accuracy": self.train_accuracy,
            "held_out": self.held_out.to_dict() if self.held_out is not None else None,
            "held_out_note": self.held_out_note,
            "n_pairs": self.n_pairs,
            "seed": self.seed,
            "regularization": {"penalty": "l2", "C": self.regularization_c},
            "symmetric": self.symmetric,
            **dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardWeights:
        if data.get("schema") != REWARD_SCHEMA:
            raise DataError(f"not icai reward weights: schema is {data.get('schema')!r}, expected {REWARD_SCHEMA!r}")
        rows = sorted(data["principles"], key=lambda r: r["rank"])
        held_out = data.get("held_out")
        own = {"schema", "feature", "link", "principles", "intercept", "train_accuracy", "held_out", "held_out_note",
               "n_pairs", "seed", "regularization", "symmetric"}
        return cls(
            principles=tuple(Principle(id=r["id"], text=r["text"], origin=str(r.get("origin", "llm"))) for r in rows),
            weights=tuple(float(r["weight"]) for r in rows),
            intercept=float(data["intercept"]),
            train_accuracy=float(data["train_accuracy"]),
            n_pairs=int(data["n_pairs"]),
            seed=int(data["seed"]),
            regularization_c=float(data.get("regularization", {}).get("C", DEFAULT_C)),
            symmetric=bool(data.get("symmetric", True)),
            held_out=HeldOut.from_dict(held_out) if held_out is not None else None,
            held_out_note=str(data.get("held_out_note", "")),
            metadata={k: v for k, v in data.items() if k not in own},
        )

    @classmethod
    def load(cls, path: str | Path) -> RewardWeights:
        path = Path(path)
        data = read_json_file(path, "reward weights file")
        try:
            return cls.from_dict(data)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed reward weights ({exc!r})") from None


def direction_matrix(
    principle_ids: Sequence[str], votes: Sequence[Vote], comparisons: Sequence[Comparison]
) -> np.ndarray:
    """directions[i, j] of principle j on comparison i; 0 where there is no vote."""
    row = {c.id: i for i, c in enumerate(comparisons)}
    col = {pid: j for j, pid in enumerate(principle_ids)}
    out = np.zeros((len(comparisons), len(principle_ids)))
    for v in votes:
        i, j = row.get(v.comparison_id), col.get(v.principle_id)
        if i is not None and j is not None:
            out[i, j] = direction(v)
    return out


def fit_reward_weights(
    principles: Sequence[Principle],
    votes: Sequence[Vote],
    train: Sequence[Comparison],
    *,
    test_votes: Sequence[Vote] = (),
    test: Sequence[Comparison] = (),
    c: float = DEFAULT_C,
    symmetric: bool = True,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
) -> RewardWeights:
    """Fit one weight per principle by L2-regularised logistic regression of the labels on the vote directions.

    Held-out accuracy is computed on `test` from `test_votes` when those cover
    every principle; otherwise `held_out` is None and `held_out_note` says why.

    Args:
        c: inverse regularisation strength (smaller: weights shrink more toward 0).
        symmetric: fit each pair in both orders without an intercept, so the reward has no position preference;
            False fits the pairs as given, with an intercept (the data's lean to side a).
    """
    from sklearn.linear_model import LogisticRegression

    if not principles:
        raise DataError("reward weights need at least one principle")
    if not train:
        raise DataError("reward weights need at least one training pair")
    if c <= 0:
        raise ValueError(f"c must be positive; got {c}")
    ids = [p.id for p in principles]
    x = direction_matrix(ids, votes, train)
    y = np.array([1 if cmp.preferred == "a" else 0 for cmp in train])
    if symmetric:
        x_fit, y_fit = np.vstack([x, -x]), np.concatenate([y, 1 - y])
    else:
        x_fit, y_fit = x, y
    if len(np.unique(y_fit)) < 2:  # only when asymmetric: mirrored pairs always hold both labels
        raise DataError(
            f"every training label is {'a' if y_fit[0] == 1 else 'b'}, so an asymmetric fit has nothing to learn; "
            "fit symmetrically instead"
        )
    model = LogisticRegression(C=c, fit_intercept=not symmetric, random_state=seed, max_iter=1000)
    model.fit(x_fit, y_fit)
    weights = model.coef_[0]
    intercept = 0.0 if symmetric else float(model.intercept_[0])
    train_acc = float(_pair_scores(x @ weights + intercept, y).mean())

    held_out, note = None, ""
    if not test:
        note = "the run has no test split"
    else:
        covered = {v.principle_id for v in test_votes}
        missing = [pid for pid in ids if pid not in covered]
        if missing:
            note = (
                f"test votes cover {len(ids) - len(missing)} of {len(ids)} principles "
                f"(none for {', '.join(missing)}); held-out accuracy needs all of them"
            )
        else:
            xt = direction_matrix(ids, test_votes, test)
            yt = np.array([1 if cmp.preferred == "a" else 0 for cmp in test])
            scores = _pair_scores(xt @ weights + intercept, yt)
            held_out = HeldOut(float(scores.mean()), bootstrap_ci(scores, seed=seed), len(test))
    return RewardWeights(
        principles=tuple(Principle(id=p.id, text=p.text, origin=p.origin, hint=p.hint) for p in principles),
        weights=tuple(float(w) for w in weights),
        intercept=intercept,
        train_accuracy=train_acc,
        n_pairs=len(train),
        seed=seed,
        regularization_c=c,
        symmetric=symmetric,
        held_out=held_out,
        held_out_note=note,
        metadata=dict(metadata or {}),
    )


def _pair_scores(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 when the sign of the logit names the preferred side, 0 the other side, 0.5 when it is 0."""
    lean = np.sign(np.where(np.abs(logits) < 1e-12, 0.0, logits))
    return 0.5 + 0.5 * lean * (2 * y - 1)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class ConstitutionReward:
    """P(response a preferred over response b), from the principles' votes by an LLM and fitted weights.

    `reward(prompt, response_a, response_b)` scores one pair; `reward.score_many(pairs)`
    scores many in one batch of LLM calls (the LLM's concurrency and cache apply).
    """

    def __init__(
        self,
        weights: RewardWeights,
        llm: LLM,
        *,
        mode: str = "auto",
        batch_size: int = 40,
        both_orders: bool = True,
        threshold: float = LOGPROB_MARGIN,
    ) -> None:
        self.weights = weights
        self.llm = llm
        self.mode = mode
        self.batch_size = batch_size
        self.both_orders = both_orders
        self.threshold = threshold

    @classmethod
    def from_file(cls, path: str | Path, *, llm: LLM, **options: Any) -> ConstitutionReward:
        """Load weights written by `icai export ... --format reward-weights`.

        Args:
            options: `mode`, `batch_size`, `both_orders`, `threshold`, as for `icai.vote.vote`.
        """
        return cls(RewardWeights.load(path), llm, **options)

    def directions(self, pairs: Sequence[tuple[str, str, str]]) -> np.ndarray:
        """Vote directions, one row per (prompt, response_a, response_b), one column per principle."""
        # the label is a placeholder: directions come from the picks alone
        comparisons = [Comparison(f"pair-{i}", a, b, "a", prompt) for i, (prompt, a, b) in enumerate(pairs)]
        if not comparisons:
            return np.zeros((0, len(self.weights.principles)))
        votes = vote(
            comparisons,
            self.weights.principles,
            self.llm,
            batch_size=self.batch_size,
            both_orders=self.both_orders,
            mode=resolve_vote_mode(self.mode, self.llm),
            threshold=self.threshold,
        )
        return direction_matrix(self.weights.principle_ids, votes, comparisons)

    def score_many(self, pairs: Sequence[tuple[str, str, str]]) -> list[float]:
        """P(response a preferred) for each (prompt, response_a, response_b)."""
        return [self.weights.probability(row) for row in self.directions(pairs)]

    def __call__(self, prompt: str, response_a: str, response_b: str) -> float:
        """P(response_a preferred over response_b); 0.5 when no principle tells them apart."""
        return self.score_many([(prompt, response_a, response_b)])[0]
