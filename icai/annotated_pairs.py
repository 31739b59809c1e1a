"""AnnotatedPairs v2.0 as Feedback Forensics and the reference ICAI implementation read and write it.

Facts of the format that a file must follow to open in Feedback Forensics
(`inverse_cai.data.annotated_pairs_format`, `feedback_forensics.data.loader`):

- an annotator id is the first 8 hex digits of the MD5 of a text: of the
  principle for a principle annotator (type "principle"), and of
  `DEFAULT_ANNOTATOR_DESCRIPTION` for the default (human) annotator, whose
  column Feedback Forensics compares every annotator with (`DEFAULT_ANNOTATOR_ID`);
- `pref` is "a" or "b"; no preference is `pref: null` with a `no_pref_reason`
  ("not_applicable", "invalid", "both" or "neither");
- per-comparison metadata holds string values, their keys listed in
  `metadata.available_metadata_keys_per_comparison`.

Feedback Forensics counts every comparison on which a principle annotator has
no "a"/"b" preference (null, invalid, or no annotation at all) as "not
applicable"; `read_annotated_pairs` turns those into "abstain" and "invalid"
votes so that `annotated_pairs_stats` gives the same numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from icai.errors import DataError
from icai.io import load_comparisons
from icai.stats import principle_stats
from icai.types import Comparison, Pick, Principle, PrincipleStats, Vote, VoteValue

FORMAT_VERSION = "2.0"
DEFAULT_ANNOTATOR_NAME = "preferred_text"
DEFAULT_ANNOTATOR_DESCRIPTION = "Default annotator from original dataset (from column `preferred_text`)"
DEFAULT_ANNOTATOR_TYPE = "unknown"
PRINCIPLE_ANNOTATOR_TYPE = "principle"
NO_PREF_REASONS = ("not_applicable", "invalid", "both", "neither")
SPLIT_KEY = "split"
"""Per-comparison metadata key of icai's train/test split ("train" or "test")."""


def annotator_id(text: str) -> str:
    """The id the format gives an annotator described by `text` (8 hex digits of its MD5)."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:8]


DEFAULT_ANNOTATOR_ID = annotator_id(DEFAULT_ANNOTATOR_DESCRIPTION)
"""The default annotator's id, "ba751e7b"; Feedback Forensics looks for this column as the reference."""


@dataclass(frozen=True)
class AnnotatedPairs:
    """An AnnotatedPairs file as icai records: the default annotator's labels and the principle annotators' votes.

    Principle ids are the file's annotator ids. Every (comparison, principle)
    has one vote: "for"/"against" the label, "invalid" (`no_pref_reason`
    "invalid"), or "abstain" (any other missing preference, including no
    annotation at all, which Feedback Forensics counts as not applicable).
    """

    comparisons: tuple[Comparison, ...]
    principles: tuple[Principle, ...]
    votes: tuple[Vote, ...]
    default_annotator: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def where(self, key: str, value: str) -> AnnotatedPairs:
        """The comparisons whose metadata `key` is `value` (compared as text), with their votes."""
        keep = tuple(c for c in self.comparisons if str(c.metadata.get(key)) == value)
        if not keep:
            found = sorted({str(c.metadata.get(key)) for c in self.comparisons})
            raise DataError(f"no comparison has metadata {key!r} = {value!r}; its values are {', '.join(found)}")
        ids = {c.id for c in keep}
        return replace(self, comparisons=keep, votes=tuple(v for v in self.votes if v.comparison_id in ids))


def read_annotated_pairs(path: str | Path) -> AnnotatedPairs:
    """Read an AnnotatedPairs file: comparisons as `icai.load_comparisons` loads them, and principle votes.

    Comparisons without an "a"/"b" label from the default annotator are
    dropped (ties and missing labels), as Feedback Forensics drops them.
    """
    path = Path(path)
    comparisons = load_comparisons(path, format="annotated_pairs")
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    annotators = data.get("annotators")
    if not isinstance(annotators, dict):
        raise DataError(f"{path}: AnnotatedPairs key 'annotators' is missing or not an object")
    principles = []
    for aid, info in annotators.items():
        if isinstance(info, dict) and info.get("type") == PRINCIPLE_ANNOTATOR_TYPE:
            text = info.get("description")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{path}: principle annotator {aid!r} has no 'description'")
            principles.append(Principle(id=str(aid), text=text, origin="annotated_pairs"))
    by_id = {c.id: c for c in comparisons}
    annotations = {
        str(raw["id"]): raw.get("annotations") or {}
        for raw in data["comparisons"]
        if isinstance(raw, dict) and str(raw.get("id")) in by_id
    }
    votes = [
        _vote(c, p.id, annotations[c.id].get(p.id), where=f"{path}, comparison {c.id!r}")
        for c in comparisons
        for p in principles
    ]
    meta = data.get("metadata") or {}
    return AnnotatedPairs(
        comparisons=tuple(comparisons),
        principles=tuple(principles),
        votes=tuple(votes),
        default_annotator=str(meta.get("default_annotator")),
        metadata=dict(meta),
    )


def annotated_pairs_stats(
    source: str | Path | AnnotatedPairs, *, where: tuple[str, str] | None = None
) -> list[PrincipleStats]:
    """icai's statistics of every principle annotator in an AnnotatedPairs file, in the file's order.

    They equal Feedback Forensics' strength, relevance and kappa on the same file.

    Args:
        where: (metadata key, value) to keep only some comparisons, e.g. ("split", "train").
    """
    pairs = source if isinstance(source, AnnotatedPairs) else read_annotated_pairs(source)
    if where is not None:
        pairs = pairs.where(*where)
    return principle_stats(list(pairs.principles), list(pairs.comparisons), list(pairs.votes))


def _vote(comparison: Comparison, principle_id: str, annotation: Any, *, where: str) -> Vote:
    if annotation is None:
        return Vote(comparison.id, principle_id, "abstain", ())
    if not isinstance(annotation, dict):
        raise DataError(f"{where}: annotation of {principle_id!r} is not an object")
    pref = annotation.get("pref")
    pick: Pick
    value: VoteValue
    if pref in ("a", "b", "text_a", "text_b"):
        pick = "a" if pref in ("a", "text_a") else "b"
        value = "for" if pick == comparison.preferred else "against"
    elif pref is None and annotation.get("no_pref_reason") == "invalid":
        pick, value = "invalid", "invalid"
    else:
        pick, value = "neither", "abstain"
    return Vote(comparison.id, principle_id, value, (pick,))
