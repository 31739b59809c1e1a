"""A person's labelling session over an `icai label` run directory: the queue, the answers, the constitution.

No model calls and no printing: the principles and their label-free votes were made before the first
label (`icai.pipeline.prepare_labelling`); each answer only counts votes. The terminal (`icai label`)
and the workbench (`icai app RUN`) drive the same session. Every answer is written at once: labels.json
(every answer in order, with who and when), then labelled.csv (an ordinary labelled ICAI CSV that
`icai run` reads) and constitution.json (selected from only the labelled pairs, with intervals).
"""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from icai.active import (
    PATIENCE,
    RANDOM_SHARE,
    Choice,
    Label,
    label_vector,
    membership,
    next_pair,
    relabelled,
    side_matrix,
    stable_for,
)
from icai.config import RunConfig
from icai.errors import DataError
from icai.select import select_as_configured
from icai.store import RunStore
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote, stats_to_dict

LABELS: tuple[str, ...] = get_args(Label)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class Summary:
    """Where a session stands: counts, the constitution from the labels so far, and the stop rule."""

    n_pairs: int
    n_labelled: int
    """Pairs answered A or B (the ones that count)."""
    n_ties: int
    n_skipped: int
    constitution: Constitution
    stats: tuple[PrincipleStats, ...]
    stable_for: int
    """Labels in a row after which the posterior membership has not changed (`icai.active.stable_for`)."""
    patience: int

    @property
    def should_stop(self) -> bool:
        return self.n_labelled > 0 and bool(self.constitution.principles) and self.stable_for >= self.patience

    def rows(self) -> list[dict[str, Any]]:
        """The constitution's principles with their agreement, interval and counts, in rank order."""
        out = []
        for rank, p in enumerate(self.constitution.principles, start=1):
            s = self.constitution.stats_for(p.id)
            out.append({"rank": rank, "id": p.id, "text": p.text, "stats": stats_to_dict(s) if s else None})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_pairs": self.n_pairs,
            "n_labelled": self.n_labelled,
            "n_ties": self.n_ties,
            "n_skipped": self.n_skipped,
            "constitution": self.rows(),
            "stable_for": self.stable_for,
            "patience": self.patience,
            "should_stop": self.should_stop,
        }


class LabelSession:
    """An `icai label` run directory opened for labelling; holds the directory's lock until `close`.

    Args:
        who: recorded with each answer (default: the login name).
        random_share: share of the next pairs chosen at random (`icai.active.next_pair`).
        patience: labels without a change in membership after which the session says it may stop.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        who: str | None = None,
        random_share: float = RANDOM_SHARE,
        patience: int = PATIENCE,
        store: RunStore | None = None,
    ) -> None:
        self._owns_lock = store is None
        if store is None:
            reader = RunStore.existing(run_dir)
            if not reader.is_labelling():
                raise DataError(f"{reader.path} holds no labelling session; start one with: icai label DATA --out {reader.path}")
            store = RunStore(reader.path)
            store.lock()  # another labeller (terminal or app) on this directory is refused here
        self.store = store
        try:
            identity = store.read_identity() or {}
            known = {f.name for f in dataclasses.fields(RunConfig)}
            self.config = RunConfig(**{k: v for k, v in (identity.get("config") or {}).items() if k in known})
            self.pairs: list[Comparison] = store.read_label_pairs()
            _, tested = store.load_clusters()
            self.principles: list[Principle] = tested
            self.votes: Sequence[Vote] = store.load_votes()
            self.records: list[dict[str, Any]] = store.load_labels()
        except (OSError, KeyError, ValueError) as exc:
            self.close()
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{store.path}: the labelling session cannot be opened ({type(exc).__name__}: {exc})") from None
        self.who = who or _login()
        self.random_share = random_share
        self.patience = patience
        self.row = {c.id: i for i, c in enumerate(self.pairs)}
        self.by_id = {c.id: c for c in self.pairs}
        unknown = [r.get("id") for r in self.records if r.get("id") not in self.row or r.get("label") not in LABELS]
        if unknown:
            self.close()
            raise DataError(f"{store.path / 'labels.json'}: answer for an unknown pair or with an unknown label ({unknown[0]!r})")
        self.sides = side_matrix([c.id for c in self.pairs], [p.id for p in self.principles], self.votes)

    def close(self) -> None:
        if self._owns_lock:
            self.store.release()
            self._owns_lock = False

    def __enter__(self) -> LabelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the answers ---------------------------------------------------------------------------
    def answers(self, records: Sequence[Mapping[str, Any]] | None = None) -> dict[str, str]:
        """Each answered pair's latest answer (a later answer to a pair replaces an earlier one)."""
        return {str(r["id"]): str(r["label"]) for r in (self.records if records is None else records)}

    def labelled_pairs(self) -> list[Comparison]:
        """The pairs answered A or B, with the person's label, in the order first answered."""
        answers = self.answers()
        seen = dict.fromkeys(str(r["id"]) for r in self.records)
        return [self.by_id[i].with_preferred(answers[i]) for i in seen if answers[i] in ("a", "b")]  # type: ignore[arg-type]

    def next(self) -> tuple[Comparison, Choice] | None:
        """The pair to ask next and why, or None when every pair has an answer.

        Deterministic given the answers so far (seeded by the run's seed and their count): a resumed
        session asks the same pair. Ties and skips are not asked again.
        """
        answers = self.answers()
        labels = label_vector([c.id for c in self.pairs], answers)
        exclude = [self.row[i] for i, a in answers.items() if a in ("tie", "skip")]
        choice = next_pair(
            self.sides,
            labels,
            k=self.config.max_principles,
            exclude=exclude,
            random_share=self.random_share,
            seed=self.config.seed * 100_003 + len(self.records),
        )
        return None if choice is None else (self.pairs[choice.index], choice)

    def answer(self, pair_id: str, label: str) -> Summary:
        """Record one answer ("a", "b", "tie" or "skip") with who and when, write it at once, and summarise."""
        if pair_id not in self.row:
            raise DataError(f"no pair {pair_id!r} in this labelling session")
        if label not in LABELS:
            raise DataError(f"a label is one of {', '.join(LABELS)}, not {label!r}")
        when = datetime.now(UTC).isoformat(timespec="seconds")
        self.records.append({"id": pair_id, "label": label, "who": self.who, "when": when})
        return self._save()

    def undo(self) -> dict[str, Any] | None:
        """Take back the latest answer (written at once); None when there is none."""
        if not self.records:
            return None
        last = self.records.pop()
        self._save()
        return last

    # what the answers say -----------------------------------------------------------------------
    def constitution(self) -> tuple[Constitution, list[PrincipleStats]]:
        """The constitution selected from only the labelled pairs' votes (the run's selection options)."""
        labelled = self.labelled_pairs()
        votes = relabelled(self.votes, labelled)
        constitution, stats, _ = select_as_configured(self.config, self.principles, labelled, votes)
        return constitution, stats

    def summary(self) -> Summary:
        constitution, stats = self.constitution()
        answers = self.answers()
        ids = [c.id for c in self.pairs]
        history = [
            membership(self.sides, label_vector(ids, self.answers(self.records[: t + 1])), k=self.config.max_principles)
            for t in range(len(self.records))
        ]
        return Summary(
            n_pairs=len(self.pairs),
            n_labelled=sum(a in ("a", "b") for a in answers.values()),
            n_ties=sum(a == "tie" for a in answers.values()),
            n_skipped=sum(a == "skip" for a in answers.values()),
            constitution=constitution,
            stats=tuple(stats),
            stable_for=stable_for(history),
            patience=self.patience,
        )

    def _save(self) -> Summary:
        self.store.save_labels(self.records, self.labelled_pairs())
        summary = self.summary()
        metadata = {
            "labelling": {
                "n_pairs": summary.n_pairs,
                "n_labelled": summary.n_labelled,
                "n_ties": summary.n_ties,
                "n_skipped": summary.n_skipped,
                "stable_for": summary.stable_for,
                "patience": summary.patience,
                "who": sorted({str(r.get("who")) for r in self.records}),
            },
            "config": self.config.to_dict(),
            "n_train": summary.n_labelled,
        }
        self.store.save_constitution(dataclasses.replace(summary.constitution, metadata=metadata))
        return summary

