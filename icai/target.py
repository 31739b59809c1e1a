"""What the label means: the human preference (`label`), or which response a given model wrote (`model:NAME`).

With `model:NAME` each pair's label becomes "the response by NAME", as in Feedback Forensics' model-identity
annotators, so a run learns what distinguishes NAME's responses. Pairs where NAME wrote neither response,
or both, say nothing about NAME and are dropped (and counted). The human label is kept in the metadata
as `human_preferred` (a or b) and `target_preferred` (yes where the human preferred NAME's response), so
`--by target_preferred` splits NAME's distinguishing traits by whether the human labels rewarded them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from icai.errors import DataError
from icai.types import Comparison, Side

LABEL = "label"
HUMAN_PREFERRED = "human_preferred"
TARGET_PREFERRED = "target_preferred"
"""Metadata set by `retarget`: "yes" where the human label preferred the target model's response, else "no"
(so `--target model:NAME --by target_preferred` asks what NAME does in the pairs it wins and loses)."""


@dataclass(frozen=True)
class Target:
    """`label` (the human preference) or `model:NAME`."""

    kind: str
    model: str = ""

    @classmethod
    def parse(cls, text: str) -> Target:
        text = text.strip()
        if text == LABEL:
            return cls(LABEL)
        if text.startswith("model:") and text[len("model:") :].strip():
            return cls("model", text[len("model:") :].strip())
        raise DataError(f"--target must be 'label' or 'model:NAME', not {text!r}")

    def __str__(self) -> str:
        return LABEL if self.kind == LABEL else f"model:{self.model}"


@dataclass(frozen=True)
class Retargeted:
    comparisons: tuple[Comparison, ...]
    target: Target
    n_dropped_neither: int = 0
    n_dropped_both: int = 0

    def note(self) -> str | None:
        """One sentence on what the label now means and what was dropped; None for the human label."""
        if self.target.kind == LABEL:
            return None
        return (
            f"label: which response is {self.target.model}'s; {len(self.comparisons)} pairs kept, "
            f"{self.n_dropped_neither} dropped where {self.target.model} wrote neither response and "
            f"{self.n_dropped_both} where it wrote both"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "target": str(self.target),
            "n_kept": len(self.comparisons),
            "n_dropped_neither": self.n_dropped_neither,
            "n_dropped_both": self.n_dropped_both,
        }


def retarget(
    comparisons: Sequence[Comparison],
    target: Target | str,
    *,
    model_a_col: str = "model_a",
    model_b_col: str = "model_b",
) -> Retargeted:
    """The comparisons with the label `target` asks for (see the module docstring)."""
    target = Target.parse(target) if isinstance(target, str) else target
    if target.kind == LABEL:
        return Retargeted(tuple(comparisons), target)
    for col in (model_a_col, model_b_col):
        if not any(col in c.metadata for c in comparisons):
            found = sorted({k for c in comparisons for k in c.metadata})
            raise DataError(
                f"--target {target}: the data has no {col} column (metadata columns: {', '.join(found) or 'none'}); "
                "name the model columns with --model-a-col and --model-b-col"
            )
    kept: list[Comparison] = []
    neither = both = 0
    for c in comparisons:
        a = str(c.metadata.get(model_a_col) or "").strip() == target.model
        b = str(c.metadata.get(model_b_col) or "").strip() == target.model
        if a and b:
            both += 1
            continue
        if not (a or b):
            neither += 1
            continue
        side: Side = "a" if a else "b"
        won = "yes" if c.preferred == side else "no"
        kept.append(replace(c, preferred=side, metadata={**c.metadata, HUMAN_PREFERRED: c.preferred, TARGET_PREFERRED: won}))
    if not kept:
        raise DataError(f"--target {target}: no pair has a response by {target.model} on exactly one side")
    return Retargeted(tuple(kept), target, n_dropped_neither=neither, n_dropped_both=both)
