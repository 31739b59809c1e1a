"""icai's AnnotatedPairs export opens in Feedback Forensics 0.5.0 with the numbers icai reports, and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from interop_env import ROOT, feedback_forensics_metrics

from icai.annotated_pairs import DEFAULT_ANNOTATOR_ID, annotated_pairs_stats, read_annotated_pairs
from icai.types import Constitution, PrincipleStats

TOLERANCE = 1e-6
EXAMPLE = ROOT.parent / "shared" / "data" / "icai_synthetic" / "example_annotated_pairs.json"


def _assert_same(ff: dict[str, Any], stats: PrincipleStats) -> None:
    icai = {"strength": stats.strength, "relevance": stats.relevance, "kappa": stats.kappa}
    assert ff == pytest.approx(icai, abs=TOLERANCE)


def test_export_opens_in_feedback_forensics_with_icai_numbers(icai_run: Path, annotated_pairs_export: Path) -> None:
    constitution = Constitution.load(icai_run / "constitution.json")
    ff = feedback_forensics_metrics(annotated_pairs_export, where=("split", "train"))
    assert ff["reference_annotator"] == DEFAULT_ANNOTATOR_ID
    assert ff["num_pairs"] == constitution.metadata["n_train"]
    assert set(ff["principles"]) == set(constitution.texts)
    for principle, stats in zip(constitution.principles, constitution.stats, strict=True):
        _assert_same(ff["principles"][principle.text], stats)


def test_icai_reads_the_export_back_with_feedback_forensics_numbers(annotated_pairs_export: Path) -> None:
    pairs = read_annotated_pairs(annotated_pairs_export)
    for split in ("train", "test"):  # the held-out split carries icai's test votes
        ff = feedback_forensics_metrics(annotated_pairs_export, where=("split", split))
        stats = annotated_pairs_stats(pairs, where=("split", split))
        assert ff["num_pairs"] == len(pairs.where("split", split).comparisons) > 0
        text = {p.id: p.text for p in pairs.principles}
        assert len(stats) == len(ff["principles"]) == 5
        for s in stats:
            _assert_same(ff["principles"][text[s.principle_id]], s)


def test_reference_example_gives_the_same_numbers_in_both() -> None:
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} not available")
    ff = feedback_forensics_metrics(EXAMPLE)
    example = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    stats = annotated_pairs_stats(EXAMPLE)
    assert len(stats) == len(ff["principles"]) == 3
    for s in stats:
        _assert_same(ff["principles"][example["annotators"][s.principle_id]["description"]], s)
