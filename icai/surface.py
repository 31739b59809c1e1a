"""A surface-feature baseline: how much of a preference dataset cheap style features already explain.

No model calls. Each response is reduced to a few counts (length, markdown
structure as in Chatbot Arena's style control, and a few lexical markers); a
pair becomes the normalised difference of its two responses' counts,
(a - b) / (a + b) (0 when both are 0), the transform Arena's style control
uses. A seeded L2 logistic regression without intercept learns P(a preferred)
from them. Every training pair is also added mirrored (features negated, label
swapped), so the fit cannot learn a position preference, a one-class training
set still has two classes, and a pair whose features are all equal is predicted
as a tie ("neither"), which scores 0.5.

The same per-response counts give the proposal stage its form hints
(`separating_features`): features on which the preferred response differs from
the rejected one in a consistent direction across the training pairs.

Features (`FEATURES`, in this order):

| name | counts |
|---|---|
| chars | characters |
| words | whitespace-separated words |
| sentences | runs of text ending in . ! or ? (or the end) |
| headers | markdown headers (lines starting with 1-6 #) |
| list_items | lines starting with -, *, +, a bullet, or "1." / "1)" |
| bold | **bold** or __bold__ spans |
| code_blocks | fenced code blocks (pairs of ```) |
| links | URLs and markdown links |
| questions | question marks |
| refusals | refusal phrases ("I can't", "I cannot", "I'm unable", "I won't", "as an AI") |
| hedges | hedging words ("might", "perhaps", "possibly", "probably", "I think", "it seems") |
| politeness | polite words ("please", "thank you", "sorry", "apologise", "happy to help") |
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from icai.types import Comparison, Pick

FEATURES: tuple[str, ...] = (
    "chars",
    "words",
    "sentences",
    "headers",
    "list_items",
    "bold",
    "code_blocks",
    "links",
    "questions",
    "refusals",
    "hedges",
    "politeness",
)

_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s+\S", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_LINK = re.compile(r"https?://\S+|\[[^\]\n]+\]\([^)\s]+\)")
_REFUSAL = re.compile(
    r"\b(?:i\s+can't|i\s+cannot|i\s+can\s+not|i\s+won't|i\s+will\s+not|i\s+am\s+(?:not\s+able|unable)"
    r"|i'm\s+(?:not\s+able|unable)|as\s+an\s+ai)\b",
    re.IGNORECASE,
)
_HEDGE = re.compile(
    r"\b(?:might|perhaps|possibly|probably|maybe|likely|i\s+think|i\s+believe|it\s+seems|may\s+be)\b", re.IGNORECASE
)
_POLITE = re.compile(
    r"\b(?:please|thanks|thank\s+you|sorry|apologi[sz]e|apologies|happy\s+to\s+help|glad\s+to\s+help)\b",
    re.IGNORECASE,
)


def response_features(text: str) -> np.ndarray:
    """The `FEATURES` counts of one response, as floats."""
    stripped = text.strip()
    plain = text.replace("\u2019", "'")  # typographic apostrophes, as in "I can\u2019t"
    sentences = len(_SENTENCE_END.findall(stripped)) + (0 if not stripped or stripped[-1] in ".!?" else 1)
    return np.array(
        [
            len(text),
            len(text.split()),
            sentences,
            len(_HEADER.findall(text)),
            len(_LIST_ITEM.findall(text)),
            len(_BOLD.findall(text)),
            text.count("```") // 2,
            len(_LINK.findall(text)),
            text.count("?"),
            len(_REFUSAL.findall(plain)),
            len(_HEDGE.findall(plain)),
            len(_POLITE.findall(plain)),
        ],
        dtype=float,
    )


def side_features(comparisons: Sequence[Comparison]) -> tuple[np.ndarray, np.ndarray]:
    """The `FEATURES` counts of every pair's responses, each counted once: (side a, side b), each pairs x features."""
    if not comparisons:
        return np.zeros((0, len(FEATURES))), np.zeros((0, len(FEATURES)))
    return (
        np.stack([response_features(c.text_a) for c in comparisons]),
        np.stack([response_features(c.text_b) for c in comparisons]),
    )


def pair_features(comparisons: Sequence[Comparison]) -> np.ndarray:
    """One row per pair: (a - b) / (a + b) for every feature, 0 where both counts are 0."""
    a, b = side_features(comparisons)
    total = a + b
    return np.divide(a - b, total, out=np.zeros_like(total), where=total > 0)


def _labels(comparisons: Sequence[Comparison]) -> np.ndarray:
    return np.array([1 if c.preferred == "a" else 0 for c in comparisons], dtype=int)


@dataclass(frozen=True)
class SurfaceModel:
    """A fitted surface baseline: standardised feature weights, positive = favours the side with more."""

    coefficients: tuple[float, ...]
    scale: tuple[float, ...]
    n_train: int

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Log-odds that response a is preferred, per row of `pair_features`."""
        if features.size == 0:
            return np.zeros(len(features))
        return (features / np.asarray(self.scale)) @ np.asarray(self.coefficients)

    def predict(self, comparisons: Sequence[Comparison]) -> list[Pick]:
        """"a", "b", or "neither" when the features do not tell the sides apart."""
        return [_pick(z) for z in self.decision(pair_features(comparisons))]

    def weights(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.coefficients, strict=True))


def _pick(z: float) -> Pick:
    return "a" if z > 1e-9 else "b" if z < -1e-9 else "neither"


def fit_surface(train: Sequence[Comparison], *, c: float = 1.0, seed: int = 0) -> SurfaceModel:
    """Fit the logistic regression on `train` and its mirror image; zero weights for an empty set.

    Features are divided by their standard deviation over the mirrored set (a
    constant 0 feature keeps scale 1 and weight 0); `c` is the inverse L2 strength.
    """
    if not train:
        return SurfaceModel(tuple(0.0 for _ in FEATURES), tuple(1.0 for _ in FEATURES), 0)
    from sklearn.linear_model import LogisticRegression

    x = pair_features(train)
    y = _labels(train)
    x_all, y_all = np.vstack([x, -x]), np.concatenate([y, 1 - y])
    scale = x_all.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = x_all / scale
    if not np.any(z):
        return SurfaceModel(tuple(0.0 for _ in FEATURES), tuple(float(s) for s in scale), len(train))
    model = LogisticRegression(C=c, fit_intercept=False, random_state=seed, max_iter=1000)
    model.fit(z, y_all)
    return SurfaceModel(tuple(float(w) for w in model.coef_[0]), tuple(float(s) for s in scale), len(train))


def agreement(picks: Sequence[Pick], comparisons: Sequence[Comparison]) -> np.ndarray:
    """1 where the pick is the preferred side, 0 where it is the other, 0.5 for "neither"."""
    return np.array(
        [1.0 if p == c.preferred else 0.0 if p == c.rejected else 0.5 for p, c in zip(picks, comparisons, strict=True)]
    )


def cross_val_picks(comparisons: Sequence[Comparison], *, folds: int = 5, seed: int = 0) -> list[Pick] | None:
    """Out-of-fold picks: each pair predicted by a model fitted on the other folds; None for fewer than 2 pairs.

    Folds are a seeded shuffle cut into min(`folds`, n) parts.
    """
    n = len(comparisons)
    if n < 2:
        return None
    k = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    picks: list[Pick] = ["neither"] * n
    for part in np.array_split(order, k):
        held = set(part.tolist())
        model = fit_surface([c for i, c in enumerate(comparisons) if i not in held], seed=seed)
        for i, pick in zip(part.tolist(), model.predict([comparisons[i] for i in part.tolist()]), strict=True):
            picks[i] = pick
    return picks


SurfaceFit = Literal["train", "cross-validated"]


@dataclass(frozen=True)
class SurfaceBaseline:
    """What the surface baseline did on one evaluation: how it was fitted, its weights, and the comparison.

    `fit` is "train" (fitted on the training pairs, scored on the held-out ones)
    or "cross-validated" (no training pairs given: out-of-fold predictions on the
    evaluated pairs themselves, and `coefficients` from a fit on all of them).
    `cv_accuracy` is the out-of-fold agreement on the training pairs (None with
    fewer than two); when cross-validated, on the evaluated pairs (= the score). `constitution_minus_surface` is the
    paired mean difference in per-pair agreement and its bootstrap interval.
    """

    fit: SurfaceFit
    n_train: int
    coefficients: Mapping[str, float]
    cv_accuracy: float | None
    constitution_minus_surface: tuple[float, tuple[float, float]] | None

    def to_dict(self) -> dict[str, Any]:
        diff = self.constitution_minus_surface
        return {
            "fit": self.fit,
            "n_train": self.n_train,
            "features": list(FEATURES),
            "coefficients": dict(self.coefficients),
            "cv_accuracy": self.cv_accuracy,
            "constitution_minus_surface": None if diff is None else {"mean": diff[0], "ci": list(diff[1])},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurfaceBaseline:
        diff = data.get("constitution_minus_surface")
        cv = data.get("cv_accuracy")
        return cls(
            fit=data.get("fit", "train"),
            n_train=int(data.get("n_train", 0)),
            coefficients={str(k): float(v) for k, v in (data.get("coefficients") or {}).items()},
            cv_accuracy=None if cv is None else float(cv),
            constitution_minus_surface=None
            if diff is None
            else (float(diff["mean"]), (float(diff["ci"][0]), float(diff["ci"][1]))),
        )


def versus_sentence(mean: float, ci: tuple[float, float]) -> str:
    """constitution - surface in words: "explains N points more/fewer" only when the interval excludes 0."""
    lo, hi = ci
    points = abs(100 * mean)
    if lo > 0:
        return f"the constitution explains {points:.1f} points more of the labels than surface features"
    if hi < 0:
        return f"the constitution explains {points:.1f} points fewer of the labels than surface features"
    return (
        f"the interval includes 0, so the constitution is not shown to explain more or fewer of the labels than "
        f"surface features ({100 * mean:+.1f} points)"
    )


# --- form hints for the proposal stage ---------------------------------------------------------

FORM_PHRASES: Mapping[str, tuple[str, str]] = {
    "words": ("is longer", "is shorter and more concise"),
    "sentences": ("has more sentences", "is brief, in few sentences"),
    "headers": ("uses section headers", "uses no section headers"),
    "list_items": ("uses a bulleted or numbered list", "uses no list"),
    "bold": ("uses bold text", "uses no bold text"),
    "code_blocks": ("includes a code block", "has no code block"),
    "links": ("includes links", "has no links"),
    "questions": ("asks the user a question", "asks no question"),
    "refusals": ("declines the request", "does not decline the request"),
    "hedges": ("hedges with words such as 'might' or 'perhaps'", "states things without hedging"),
    "politeness": ("uses polite words such as 'please' or 'thank you'", "skips pleasantries"),
}
"""(phrase when the preferred response has more, phrase when it has less), completing "the preferred answer ...".
`chars` has none: `words` stands for length."""

Direction = Literal["more", "less"]


@dataclass(frozen=True)
class FormSignal:
    """A feature on which preferred responses differ from rejected ones in one direction across the data."""

    feature: str
    direction: Direction
    n_agree: int
    """Pairs where the preferred response has more (direction "more") or less of it."""
    n_differ: int
    """Pairs where the two responses differ on the feature at all."""
    low: float
    """Lower end of the Wilson 95% interval of n_agree / n_differ."""

    @property
    def hint(self) -> str:
        """The hint tag recorded on principles proposed from it: "form:<feature>:<more|less>"."""
        return f"form:{self.feature}:{self.direction}"

    @property
    def phrase(self) -> str:
        more, less = FORM_PHRASES[self.feature]
        return more if self.direction == "more" else less


def preferred_minus_rejected(comparison: Comparison) -> np.ndarray:
    """Raw feature counts of the preferred response minus those of the rejected one."""
    return response_features(comparison.text(comparison.preferred)) - response_features(
        comparison.text(comparison.rejected)
    )


def separating_features(
    comparisons: Sequence[Comparison], *, min_pairs: int = 4, confidence: float = 0.95
) -> list[FormSignal]:
    """Form features whose direction (preferred has more, or less) holds on clearly more than half the differing pairs.

    A feature separates when it differs on at least `min_pairs` pairs and the
    Wilson interval of the majority direction's share lies above 0.5 (a sign
    test). Strongest (highest lower bound) first; ties in `FEATURES` order.
    """
    from icai.stats import wilson_ci

    if not comparisons:
        return []
    diffs = np.stack([preferred_minus_rejected(c) for c in comparisons])
    out: list[FormSignal] = []
    for j, name in enumerate(FEATURES):
        if name not in FORM_PHRASES:
            continue
        more, less = int((diffs[:, j] > 0).sum()), int((diffs[:, j] < 0).sum())
        n = more + less
        if n < min_pairs or more == less:
            continue
        direction: Direction = "more" if more > less else "less"
        k = max(more, less)
        low, _ = wilson_ci(k, n, confidence=confidence)
        if low > 0.5:
            out.append(FormSignal(name, direction, k, n, low))
    order = {name: i for i, name in enumerate(FEATURES)}
    out.sort(key=lambda s: (-s.low, order[s.feature]))
    return out


def pair_form_hint(comparison: Comparison, signals: Sequence[FormSignal]) -> FormSignal | None:
    """The strongest dataset-level signal that this pair shows too (its preferred side differs that way), or None."""
    diff = preferred_minus_rejected(comparison)
    index = {name: j for j, name in enumerate(FEATURES)}
    for s in signals:
        d = diff[index[s.feature]]
        if (d > 0 and s.direction == "more") or (d < 0 and s.direction == "less"):
            return s
    return None

