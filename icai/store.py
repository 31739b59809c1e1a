"""The only writer of run directories. Every file is written atomically.

Layout of a run directory:
  config.json        the RunConfig and dataset hash
  checkpoints.json   fingerprint of each completed stage (a stage is reused only if it matches)
  proposals.json     stage 1 output
  clusters.json      stage 2 output
  votes.csv          stage 3 output (one row per comparison x principle)
  principles.csv     every candidate with its cluster and statistics
  comparisons.csv    the data used, with the train/test split
  constitution.json  the result (schema icai.constitution/1)
  evaluation.json    held-out scores, when a test split was asked for
  report.html        the HTML report
  cache.sqlite       every LLM response, committed before use (resume never repeats a call)
  run.log            the log
  flipped/           the same for the flipped-label sanity run
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from icai.types import (
    Comparison,
    Constitution,
    DataError,
    Principle,
    PrincipleStats,
    Vote,
    comparisons_to_frame,
    votes_to_frame,
    write_json_atomic,
    write_text_atomic,
)


def _principles(rows: Sequence[Mapping[str, Any]]) -> list[Principle]:
    """Principles from their saved `dataclasses.asdict` rows (JSON turns tuples into lists)."""
    return [Principle(**{**r, "source_ids": tuple(r["source_ids"])}) for r in rows]


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise DataError(f"{self.path}: output directory is not writable ({exc.strerror})") from None

    def child(self, name: str) -> RunStore:
        return RunStore(self.path / name)

    @property
    def cache_path(self) -> Path:
        return self.path / "cache.sqlite"

    @property
    def log_path(self) -> Path:
        return self.path / "run.log"

    # checkpoints -----------------------------------------------------------
    def _checkpoints(self) -> dict[str, str]:
        f = self.path / "checkpoints.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def is_done(self, stage: str, fingerprint: str) -> bool:
        return self._checkpoints().get(stage) == fingerprint

    def mark_done(self, stage: str, fingerprint: str) -> None:
        marks = self._checkpoints()
        marks[stage] = fingerprint
        write_json_atomic(self.path / "checkpoints.json", marks)

    # stage files -------------------------------------------------------------
    def save_config(self, config: Mapping[str, Any]) -> None:
        write_json_atomic(self.path / "config.json", dict(config))

    def save_principles(self, name: str, principles: Sequence[Principle]) -> None:
        write_json_atomic(self.path / name, [dataclasses.asdict(p) for p in principles])

    def load_principles(self, name: str) -> list[Principle]:
        return _principles(json.loads((self.path / name).read_text(encoding="utf-8")))

    def save_clusters(self, candidates: Sequence[Principle], representatives: Sequence[Principle]) -> None:
        write_json_atomic(
            self.path / "clusters.json",
            {
                "candidates": [dataclasses.asdict(p) for p in candidates],
                "representatives": [dataclasses.asdict(p) for p in representatives],
            },
        )

    def load_clusters(self) -> tuple[list[Principle], list[Principle]]:
        data = json.loads((self.path / "clusters.json").read_text(encoding="utf-8"))
        return _principles(data["candidates"]), _principles(data["representatives"])

    def save_votes(self, votes: Sequence[Vote], name: str = "votes.csv") -> None:
        buf = io.StringIO()
        votes_to_frame(votes).to_csv(buf, index=False)
        write_text_atomic(self.path / name, buf.getvalue())

    def load_votes(self, name: str = "votes.csv") -> list[Vote]:
        import pandas as pd

        frame = pd.read_csv(self.path / name, dtype=str, keep_default_na=False)
        return [
            Vote(
                comparison_id=r.comparison_id,
                principle_id=r.principle_id,
                value=r.value,
                picks=tuple(r.picks.split(",")) if r.picks else (),
                raw=r.raw,
            )
            for r in frame.itertuples(index=False)
        ]

    def save_comparisons(self, train: Sequence[Comparison], test: Sequence[Comparison]) -> None:
        """comparisons.csv: the pairs, their split, then one column per input metadata key (exports carry them on)."""
        everything = [*train, *test]
        frame = comparisons_to_frame(everything)
        frame["split"] = ["train"] * len(train) + ["test"] * len(test)
        keys = list(dict.fromkeys(k for c in everything for k in c.metadata))
        for key in keys:
            # a metadata key that is also a column name (an input's own "split", say) keeps its value under input_<key>
            column = f"input_{key}" if key in frame.columns else key
            frame[column] = [_csv_cell(c.metadata.get(key)) for c in everything]
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        write_text_atomic(self.path / "comparisons.csv", buf.getvalue())

    def save_principle_table(
        self, candidates: Sequence[Principle], stats: Sequence[PrincipleStats], constitution: Constitution
    ) -> None:
        import pandas as pd

        by_cluster_rep = {s.principle_id: s for s in stats}
        rank = {p.id: i for i, p in enumerate(constitution.principles, start=1)}
        selection = constitution.metadata.get("selection") or {}
        merged_into = {m["merged"]: m["kept"] for m in selection.get("merges", [])}
        stability = constitution.metadata.get("stability") or {}
        frequency = stability.get("frequency", {})
        rows = []
        for p in candidates:
            s = by_cluster_rep.get(p.id)
            row: dict[str, Any] = {
                "id": p.id,
                "text": p.text,
                "cluster": p.cluster,
                "cluster_size": p.cluster_size,
                "origin": p.origin,
                "hint": p.hint,
                "in_constitution": p.id in rank,
                "rank": rank.get(p.id),
                "merged_into": merged_into.get(p.id),
                "resample_frequency": frequency.get(p.id, 0.0) if stability else None,
            }
            if s is not None:
                d = dataclasses.asdict(s)
                ci = d.pop("agreement_ci") or (None, None)
                d.pop("principle_id")
                row.update(d, agreement_ci_low=ci[0], agreement_ci_high=ci[1])
            rows.append(row)
        buf = io.StringIO()
        pd.DataFrame(rows).to_csv(buf, index=False)
        write_text_atomic(self.path / "principles.csv", buf.getvalue())

    def save_constitution(self, constitution: Constitution) -> Path:
        return constitution.save(self.path / "constitution.json")

    def save_evaluation(self, evaluation: Mapping[str, Any]) -> None:
        write_json_atomic(self.path / "evaluation.json", dict(evaluation))

    def save_report(self, html: str) -> Path:
        return write_text_atomic(self.path / "report.html", html)


def _csv_cell(value: Any) -> Any:
    """A metadata value as one CSV cell: scalars as they are, None as empty, anything else as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
