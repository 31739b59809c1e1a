"""icai's AnnotatedPairs export opens in Feedback Forensics 0.5.0 with the numbers icai reports, and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from interop_env import FF_PYTHON, feedback_forensics_metrics, needs

from icai import datasets
from icai.annotated_pairs import DEFAULT_ANNOTATOR_ID, annotated_pairs_stats, read_annotated_pairs
from icai.types import Constitution, PrincipleStats

pytestmark = pytest.mark.interop
_tool_installed = needs(FF_PYTHON, "Feedback Forensics")

TOLERANCE = 1e-6
EXAMPLE = datasets.path("synthetic-annotated-pairs")


def _assert_same(ff: dict[str, Any], stats: PrincipleStats) -> None:
    icai = {"strength": stats.strength, "relevance": stats.relevance, "kappa": stats.kappa}
    assert ff == pytest.approx(icai, abs=TOLERANCE)


@pytest.fixture(scope="module")
def ff_on_export(annotated_pairs_export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Feedback Forensics' metrics on the export's train and test splits (one process)."""
    splits = ("train", "test")
    work = tmp_path_factory.mktemp("ff")
    results = feedback_forensics_metrics([(annotated_pairs_export, ("split", s)) for s in splits], work_dir=work)
    return dict(zip(splits, results, strict=True))


def test_export_opens_in_feedback_forensics_with_icai_numbers(icai_run: Path, ff_on_export: dict) -> None:
    constitution = Constitution.load(icai_run / "constitution.json")
    ff = ff_on_export["train"]
    assert ff["reference_annotator"] == DEFAULT_ANNOTATOR_ID
    assert ff["num_pairs"] == constitution.metadata["n_train"]
    assert set(ff["principles"]) == set(constitution.texts)
    for principle, stats in zip(constitution.principles, constitution.stats, strict=True):
        _assert_same(ff["principles"][principle.text], stats)


def test_icai_reads_the_export_back_with_feedback_forensics_numbers(
    annotated_pairs_export: Path, ff_on_export: dict
) -> None:
    pairs = read_annotated_pairs(annotated_pairs_export)
    text = {p.id: p.text for p in pairs.principles}
    for split, ff in ff_on_export.items():  # the held-out split carries icai's test votes
        stats = annotated_pairs_stats(pairs, where=("split", split))
        assert ff["num_pairs"] == len(pairs.where("split", split).comparisons) > 0
        assert len(stats) == len(ff["principles"]) == len(pairs.principles) > 0
        for s in stats:
            _assert_same(ff["principles"][text[s.principle_id]], s)


def test_reference_example_gives_the_same_numbers_in_both(tmp_path: Path) -> None:
    (ff,) = feedback_forensics_metrics([(EXAMPLE, None)], work_dir=tmp_path)
    example = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    stats = annotated_pairs_stats(EXAMPLE)
    assert len(stats) == len(ff["principles"]) == 3
    for s in stats:
        _assert_same(ff["principles"][example["annotators"][s.principle_id]["description"]], s)


def test_stats_match_where_empirical_kappa_differs(tmp_path: Path) -> None:
    """Imperfect, label-imbalanced votes with abstains and invalids: icai's definitions are Feedback Forensics'."""
    import random

    import pandas as pd

    from icai.export import to_annotated_pairs
    from icai.stats import principle_stats
    from icai.types import Comparison, Principle, Vote

    rng = random.Random(7)
    comparisons = [
        Comparison(f"c{i}", f"A{i}", f"B{i}", "a" if rng.random() < 0.7 else "b", f"Q{i}", {}) for i in range(60)
    ]
    # (P(for), P(against), P(abstain)); the rest is invalid
    rates = {"p1": (0.5, 0.2, 0.25), "p2": (0.3, 0.3, 0.3), "p3": (0.1, 0.6, 0.2), "p4": (0.7, 0.05, 0.2)}
    principles = [Principle(pid, f"Select the response that is {pid}.") for pid in rates]
    votes = []
    for c in comparisons:
        for pid, (p_for, p_against, p_abstain) in rates.items():
            u = rng.random()
            value = (
                "for"
                if u < p_for
                else "against"
                if u < p_for + p_against
                else "abstain"
                if u < p_for + p_against + p_abstain
                else "invalid"
            )
            votes.append(Vote(c.id, pid, value, ()))  # type: ignore[arg-type]
    stats = principle_stats(principles, comparisons, votes)
    constitution = Constitution(tuple(principles), tuple(stats))
    frame = pd.DataFrame(
        [
            {"id": c.id, "prompt": c.prompt, "text_a": c.text_a, "text_b": c.text_b, "preferred": c.preferred}
            for c in comparisons
        ]
    )
    votes_frame = pd.DataFrame(
        [{"comparison_id": v.comparison_id, "principle_id": v.principle_id, "value": v.value} for v in votes]
    )
    path = tmp_path / "pairs.json"
    path.write_text(
        json.dumps(to_annotated_pairs(constitution, frame, votes_frame, dataset_name="imbalanced")), encoding="utf-8"
    )
    (ff,) = feedback_forensics_metrics([(path, None)], work_dir=tmp_path)
    for principle, s in zip(principles, stats, strict=True):
        _assert_same(ff["principles"][principle.text], s)
    # the case the test is for: Cohen's kappa from the empirical marginals is not Feedback Forensics' kappa
    assert any(s.cohen_kappa is not None and abs(s.cohen_kappa - (s.kappa or 0)) > 0.05 for s in stats)
