"""A prepared `icai label` run for the labelling tests (importable by name: `from labelrun import prepared_label_run`)."""

from __future__ import annotations

import csv
from pathlib import Path

from testdata import data_file

from icai.config import RunConfig
from icai.embed import get_embedder
from icai.io import load_comparisons, load_comparisons_with_report
from icai.llm.client import LLM
from icai.llm.fake import FakeProvider, keyword_responder
from icai.pipeline import prepare_labelling
from icai.store import RunStore
from icai.types import Comparison


def unlabelled_csv(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The synthetic orthogonal set without its label column, and the hidden labels (the 'person')."""
    pairs = load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))
    path = tmp_path / "unlabelled.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "text_a", "text_b"])
        for c in pairs:
            w.writerow([c.id, c.prompt, c.text_a, c.text_b])
    return path, {c.id: c.preferred for c in pairs}


def prepared_label_run(tmp_path: Path) -> tuple[Path, FakeProvider, dict[str, str], list[Comparison]]:
    """Label-free principles and votes (fake/keyword, hash embedder) over the unlabelled set, in tmp_path/label-run."""
    data, truth = unlabelled_csv(tmp_path)
    pairs, report = load_comparisons_with_report(data, allow_unlabelled=True)
    assert len(report.unlabelled_ids) == len(pairs) == 30
    fake = FakeProvider(keyword_responder, model="fake/keyword")
    out = tmp_path / "label-run"
    config = RunConfig(model="fake/keyword", embedder="hash", n_clusters=20)
    prep = prepare_labelling(pairs, llm=LLM(fake, progress=False), embedder=get_embedder("hash"), config=config, store=RunStore(out))
    assert prep.tested and len(prep.votes) == len(pairs) * len(prep.tested)
    return out, fake, truth, pairs
