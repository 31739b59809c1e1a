"""The workbench behind `icai app`: one run directory, read through the store, edited one principle at a time.

No web code here (icai.app.server is the thin HTTP layer over it). Votes of a written or reworded
principle go through the vote stage (`icai.vote.vote`) on the run's training pairs with the run's
cache, so a principle voted once is never asked again; statistics come from `icai.stats` /
`icai.select` exactly as the pipeline computes them; versions are written by `icai.store`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from icai.errors import DataError
from icai.select import filtered_q_values, verdict
from icai.stats import principle_stats
from icai.store import COMPARISON_TABLE_COLUMNS, RunStore
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote, normalize_text
from icai.user_principles import USER_ORIGIN, injection

if TYPE_CHECKING:
    import pandas as pd

    from icai.evaluate import Evaluation
    from icai.llm.client import LLM
    from icai.vote import VoteMode

log = logging.getLogger(__name__)

MAX_PRINCIPLE_CHARS = 2000
"""The longest principle text the app accepts."""



_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

class PrincipleTextError(DataError):
    """A principle text the app refuses; the message says why in one sentence."""


def check_principle_text(text: str) -> str:
    """The text as the app votes it (one line, control characters removed), or PrincipleTextError.

    The text is normalised first (`icai.types.normalize_text`: NFKC, zero-width and other format
    characters removed). Refused: empty text, text over MAX_PRINCIPLE_CHARS characters, and text that
    tries to steer the annotator (prompt block tags, "ignore the instructions", JSON answers), also when
    written with Cyrillic or Greek look-alike letters. Newlines are folded into spaces, so a principle
    cannot add numbered rules of its own to a voting prompt. The filter is a courtesy, not the defence:
    prompts quote a principle where it cannot close its own line or block (`icai.prompts.rule_text`).
    """
    if not isinstance(text, str):
        raise PrincipleTextError("a principle must be text")
    try:
        text = normalize_text(text)
    except DataError as exc:
        raise PrincipleTextError(str(exc)) from None
    cleaned = " ".join(_CONTROL.sub(" ", text).split())
    if not cleaned:
        raise PrincipleTextError("a principle needs some text; write one such as 'Select the response that ...'")
    if len(cleaned) > MAX_PRINCIPLE_CHARS:
        raise PrincipleTextError(
            f"a principle may have at most {MAX_PRINCIPLE_CHARS:,} characters; this one has {len(cleaned):,}"
        )
    what = injection(cleaned)
    if what is not None:
        raise PrincipleTextError(
            f"this text contains {what}; a principle describes the response to select, "
            "it does not instruct the annotator"
        )
    return cleaned


JobState = Literal["running", "done", "failed"]


@dataclass
class Job:
    """Work the app runs in the background (voting a principle, evaluating a version), polled by the page."""

    id: str
    kind: str
    expected_calls: int
    total: int
    """Requests the job sends through the LLM layer (cached ones count when served)."""
    state: JobState = "running"
    done: Callable[[], int] = lambda: 0
    result: dict[str, Any] | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "expected_calls": self.expected_calls,
            "total": self.total,
            "done": min(self.done(), self.total) if self.state == "running" else self.total,
            "result": self.result,
            "error": self.error,
            "seconds": self.seconds,
        }


def stats_dict(s: PrincipleStats | None) -> dict[str, Any] | None:
    """The statistics of one principle as JSON-ready values (None when it has none)."""
    if s is None:
        return None
    d = dataclasses.asdict(s)
    d["agreement_ci"] = list(s.agreement_ci) if s.agreement_ci else None
    return d


def _comparisons(frame: pd.DataFrame) -> tuple[list[Comparison], list[Comparison], list[str]]:
    """Train and test comparisons of comparisons.csv, every other column kept as metadata; and those columns."""
    meta_columns = [c for c in frame.columns if c not in COMPARISON_TABLE_COLUMNS]
    train: list[Comparison] = []
    test: list[Comparison] = []
    for row in frame.to_dict("records"):
        preferred = str(row["preferred"]).strip().lower()
        if preferred not in ("a", "b"):
            raise DataError(f"comparisons.csv: pair {row['id']!r} has preferred {row['preferred']!r}, expected a or b")
        c = Comparison(
            str(row["id"]),
            str(row["text_a"]),
            str(row["text_b"]),
            "a" if preferred == "a" else "b",
            str(row["prompt"]),
            {k: row[k] for k in meta_columns},
        )
        (test if str(row.get("split", "train")) == "test" else train).append(c)
    return train, test, meta_columns


class Workbench:
    """One run directory opened for editing; holds its lock until `close`.

    Args:
        llm: the annotator; when None, `llm_factory` builds it on first use (a local model loads slowly).
            Its cache is set to the run's cache.sqlite when it has none.
        author: recorded in each saved version (default: the login name).
        model_name: what `llm_factory` builds, to show before it is built (default: the run's model).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        llm: LLM | None = None,
        llm_factory: Callable[[], LLM] | None = None,
        author: str | None = None,
        model_name: str | None = None,
    ) -> None:
        from icai.lifetime import locked_run

        reader = RunStore.existing(run_dir)
        identity = reader.read_identity()
        if identity is None or not reader.has("constitution.json"):
            raise DataError(f"{reader.path} holds no finished icai run (no config.json or constitution.json)")
        self._lifetime = contextlib.ExitStack()
        """The hold on the run directory (icai.lifetime): its lock, then the cache of the model; `close` ends both."""
        # a second app (or an icai run) on this directory is refused here
        self.store = self._lifetime.enter_context(locked_run(reader.path))
        try:
            self._load(identity)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            self._lifetime.close()
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{reader.path}: the run cannot be opened ({type(exc).__name__}: {exc})") from None
        except BaseException:
            self._lifetime.close()
            raise
        self._llm = llm
        self._llm_factory = llm_factory
        self._llm_lock = threading.Lock()
        self.author = author or _login()
        self.model_name = llm.model if llm is not None else (model_name or str(self.config.get("model", "")))
        """The annotator of edits; when it is not the run's model, old and new statistics come from different judges."""
        self.jobs: dict[str, Job] = {}
        self._write = threading.RLock()
        """Held while the app's files or its in-memory principles and votes change, and while statistics are counted."""
        self._work = threading.Lock()
        """One model job at a time: the local model and the cache are shared."""
        self._versions_seen: dict[int, tuple[tuple[int, int], dict[str, Any]]] = {}
        """Summaries of version files read, by number, with the (mtime, size) they were read at."""

    # loading -------------------------------------------------------------------------------
    def _load(self, identity: Mapping[str, Any]) -> None:
        store = self.store
        self.config: dict[str, Any] = dict(identity.get("config") or {})
        self.original = store.read_constitution()
        self.train, self.test, self.metadata_columns = _comparisons(
            store.read_csv("comparisons.csv", ("id", "prompt", "text_a", "text_b", "preferred"))
        )
        self.candidates, self.tested = store.load_clusters()
        self.votes: Sequence[Vote] = store.load_votes()
        table = store.read_csv("principles.csv", ("id", "text")) if store.has("principles.csv") else None
        self.table: dict[str, dict[str, Any]] = {r["id"]: r for r in table.to_dict("records")} if table is not None else {}
        self.user: list[dict[str, Any]] = store.load_app_principles()
        self.user_votes: list[Vote] = list(store.load_votes("app_votes.csv")) if store.has("app_votes.csv") else []
        self._stats_cache: dict[tuple[str, str] | None, dict[str, PrincipleStats]] = {}
        self._base_stats: dict[tuple[str, str] | None, list[PrincipleStats]] = {}
        """principle_stats of the run's own principles per subset (they never change while the app runs)."""

    def close(self) -> None:
        self._lifetime.close()

    def llm(self) -> LLM:
        """The annotator, built on first use, answering from the run's cache."""
        with self._llm_lock:
            if self._llm is None:
                if self._llm_factory is None:
                    raise DataError("this workbench has no model to vote with; start icai app with --model")
                self._llm = self._llm_factory()
            if self._llm.cache is None:
                from icai.lifetime import run_cache

                self._lifetime.enter_context(run_cache(self._llm, self.store))
            return self._llm

    def load_model(self) -> LLM:
        """The annotator with its weights loaded now (an in-process model), not on its first call."""
        llm = self.llm()
        if llm.capabilities.in_process:
            from typing import cast

            from icai.llm.base import InProcessProvider

            cast(InProcessProvider, llm.provider).load()
        return llm

    def warm_up(self) -> None:
        """Build the model in the background (a local one takes a while to load), so the first edit does not wait."""

        def load() -> None:
            try:
                self.load_model()
            except Exception as exc:  # the first edit reports it again, to the page
                log.warning("icai app: the model could not be loaded: %s", exc)

        threading.Thread(target=load, name="icai-app-load", daemon=True).start()

    # principles ---------------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        return float(self.config.get("alpha", 0.05))

    def user_principles(self) -> list[Principle]:
        return [row["principle"] for row in self.user]

    def principle(self, principle_id: str) -> Principle:
        for p in (*self.tested, *self.user_principles(), *self.candidates):
            if p.id == principle_id:
                return p
        raise DataError(f"no principle with id {principle_id!r} in this run")

    def replaces(self, principle_id: str) -> str | None:
        """The id of the principle a user principle rewords, if any."""
        return next((r["replaces"] for r in self.user if r["principle"].id == principle_id), None)

    def _pairs(self, subset: tuple[str, str] | None) -> list[Comparison]:
        if subset is None:
            return self.train
        column, value = subset
        if column not in self.metadata_columns:
            raise DataError(f"comparisons have no metadata column {column!r}")
        return [c for c in self.train if str(c.metadata.get(column, "")) == value]

    def stats(self, *, subset: tuple[str, str] | None = None) -> dict[str, PrincipleStats]:
        """Statistics of every voted principle on the training pairs (or those whose metadata `column == value`).

        The run's principles are one Benjamini-Hochberg family, as the pipeline has them. A principle
        written in the app is scored in that family with itself in the place of the principle it rewords
        (or added to it, when it rewords none), so it never moves the others' numbers, and a rewording
        that votes the same way gets the same q-value.
        """
        with self._write:
            return self._stats(subset)

    def _stats(self, subset: tuple[str, str] | None) -> dict[str, PrincipleStats]:
        if subset in self._stats_cache:
            return self._stats_cache[subset]
        pairs = self._pairs(subset)
        alpha = self.alpha
        if subset not in self._base_stats:
            self._base_stats[subset] = principle_stats(self.tested, pairs, self.votes)
        base = self._base_stats[subset]
        out = {s.principle_id: dataclasses.replace(s, verdict=verdict(s, alpha=alpha)) for s in filtered_q_values(base, alpha=alpha)}
        for row in self.user:
            p, replaced = row["principle"], row["replaces"]
            own = principle_stats([p], pairs, self.user_votes)[0]
            # the q-value in the run's family, with this principle in the place of the one it rewords
            family = filtered_q_values([*(b for b in base if b.principle_id != replaced), own], alpha=alpha)
            out[p.id] = dataclasses.replace(family[-1], verdict=verdict(family[-1], alpha=alpha))
        self._stats_cache[subset] = out
        return out

    def metadata_values(self) -> dict[str, list[str]]:
        """Distinct values of each metadata column over the training pairs (at most 50 per column)."""
        values: dict[str, list[str]] = {}
        for column in self.metadata_columns:
            seen = sorted({str(c.metadata.get(column, "")) for c in self.train})
            if 1 < len(seen) <= 50:
                values[column] = seen
        return values

    def rows(self, *, subset: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """One row per voted principle (the run's and the app's), for the candidates table."""
        stats = self.stats(subset=subset)
        rank = {p.id: i for i, p in enumerate(self.original.principles, start=1)}
        out = []
        for p in [*self.tested, *self.user_principles()]:
            row = self.table.get(p.id, {})
            out.append(
                {
                    "id": p.id,
                    "text": p.text,
                    "origin": p.origin,
                    "hint": p.hint,
                    "cluster_size": p.cluster_size,
                    "rank": rank.get(p.id),
                    "stability": _float(row.get("resample_frequency")),
                    "merged_into": row.get("merged_into") or None,
                    "replaces": self.replaces(p.id),
                    "stats": stats_dict(stats.get(p.id)),
                }
            )
        return out

    def pairs_for(self, principle_id: str, *, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """The training pairs on which the principle voted for and against the human label."""
        self.principle(principle_id)
        by_id = {c.id: c for c in self.train}
        out: dict[str, list[dict[str, Any]]] = {"for": [], "against": []}
        for v in [*self.votes, *self.user_votes]:
            if v.principle_id == principle_id and v.value in out and v.comparison_id in by_id:
                if len(out[v.value]) < limit:
                    c = by_id[v.comparison_id]
                    out[v.value].append(
                        {"id": c.id, "prompt": c.prompt, "text_a": c.text_a, "text_b": c.text_b,
                         "preferred": c.preferred, "picks": list(v.picks), "metadata": dict(c.metadata)}
                    )
        return out

    # edit and add --------------------------------------------------------------------------
    def _voted(self, principle_id: str) -> bool:
        return any(p.id == principle_id for p in (*self.tested, *self.user_principles()))

    def vote_estimate(self, text: str) -> dict[str, Any]:
        """What voting `text` would cost: its cleaned text and id, and the model calls it needs (0: voted already)."""
        cleaned = check_principle_text(text)
        p = Principle.from_text(cleaned, origin=USER_ORIGIN)
        pairs = len({(c.prompt, c.text_a, c.text_b) for c in self.train})
        calls = 0 if self._voted(p.id) else 2 * pairs  # one principle: one call per pair and presentation order
        return {"text": cleaned, "id": p.id, "calls": calls, "pairs": len(self.train), "voted": calls == 0}

    def start_vote(self, text: str, *, replaces: str | None = None, wait: bool = False) -> Job:
        """Vote a written or reworded principle on the training pairs, in the background; returns its job."""
        estimate = self.vote_estimate(text)
        if replaces is not None:
            self.principle(replaces)
        principle = Principle.from_text(estimate["text"], origin=USER_ORIGIN)
        job = Job(uuid.uuid4().hex[:12], "vote", estimate["calls"], estimate["calls"])
        self.jobs[job.id] = job
        return self._start(job, lambda: self._vote(job, principle, replaces), wait=wait)

    def _vote(self, job: Job, principle: Principle, replaces: str | None) -> dict[str, Any]:
        if not self._voted(principle.id):
            from icai.vote import vote

            llm, mode, calls_before = self._llm_for(job)
            votes = vote(self.train, [principle], llm, batch_size=int(self.config.get("vote_batch_size", 40)), mode=mode)
            with self._write:
                self.user.append({"principle": principle, "replaces": replaces, "author": self.author,
                                  "created_at": _now()})
                self.user_votes.extend(votes)
                self.store.save_votes(self.user_votes, name="app_votes.csv")
                self.store.save_app_principles(self.user)
                self._stats_cache.clear()
            made = llm.usage.calls - calls_before
        else:
            made = 0
        stats = self.stats()
        compare_to = replaces or self.replaces(principle.id)
        return {
            "principle": {"id": principle.id, "text": principle.text},
            "new": stats_dict(stats.get(principle.id)),
            "replaces": compare_to,
            "old": stats_dict(stats.get(compare_to)) if compare_to else None,
            "calls_made": made,
        }

    # jobs ----------------------------------------------------------------------------------
    def _llm_for(self, job: Job) -> tuple[LLM, VoteMode, int]:
        """The annotator, the run's vote mode (an embedding-mode run's edits are voted by the LLM),
        and its calls so far; `job` counts the requests answered from here on, cached ones too."""
        from icai.vote import resolve_vote_mode

        llm = self.llm()
        mode_name = str(self.config.get("vote_mode", "auto"))
        mode = resolve_vote_mode("auto" if mode_name == "embedding" else mode_name, llm)
        start = llm.usage.calls + llm.usage.cache_hits
        job.done = lambda: llm.usage.calls + llm.usage.cache_hits - start
        return llm, mode, llm.usage.calls

    def _start(self, job: Job, work: Callable[[], dict[str, Any]], *, wait: bool) -> Job:
        def target() -> None:
            with self._work:
                try:
                    job.result = work()
                    job.state = "done"
                except Exception as exc:  # reported to the page as one sentence; the log keeps the traceback
                    log.exception("app job %s (%s) failed", job.id, job.kind)
                    job.error = str(exc) or type(exc).__name__
                    job.state = "failed"
                finally:
                    job.seconds = time.monotonic() - job.started

        thread = threading.Thread(target=target, name=f"icai-app-{job.kind}", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return job

    # versions ------------------------------------------------------------------------------
    def versions(self, *, last: int | None = None) -> list[dict[str, Any]]:
        """Saved versions, oldest first (the `last` newest only, when given): number, file, author, time, note, changes.

        A version file is read once and kept while its size and modification time stay the same, so
        listing hundreds of versions does not read hundreds of files per page.
        """
        listing = self.store.constitution_versions()
        if last is not None:
            listing = listing[-last:] if last > 0 else []
        return [self._version_summary(n, path) for n, path in listing]

    def version_count(self) -> int:
        return len(self.store.constitution_versions())

    def version(self, n: int) -> dict[str, Any]:
        """The summary of version `n` (as in `versions`); DataError when there is none."""
        from icai.store import version_file_name

        path = self.store.path / version_file_name(n)
        if not path.is_file():
            raise DataError(f"constitution version {n} not found")
        return self._version_summary(n, path)

    def _version_summary(self, n: int, path: Path) -> dict[str, Any]:
        try:
            st = path.stat()
            key: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        cached = self._versions_seen.get(n)
        if key is not None and cached is not None and cached[0] == key:
            summary = cached[1]
        else:
            c = self.store.read_constitution_version(n)
            meta = c.metadata
            summary = {
                "version": n,
                "file": path.name,
                "ids": [p.id for p in c.principles],
                "texts": c.texts,
                "author": meta.get("edited_by"),
                "created_at": meta.get("edited_at"),
                "note": meta.get("edit_note"),
                "changes": meta.get("changes"),
            }
            if key is not None:
                self._versions_seen[n] = (key, summary)
        return {**summary, "evaluated": self.store.has(f"evaluation.v{n}.json") or (n == 1 and self.store.has("evaluation.json"))}

    def save_version(self, principle_ids: Sequence[str], *, note: str = "", author: str | None = None) -> dict[str, Any]:
        """Save a constitution of these principles, in this order, as the next version (constitution.vN.json).

        The version records who saved it, when, the note, and its changes against the latest version
        before it (added, removed, reworded, order). Earlier versions, constitution.json included, stay.
        """
        if not principle_ids:
            raise DataError("a constitution needs at least one principle")
        note = normalize_text(note)
        if len(set(principle_ids)) != len(principle_ids):
            raise DataError("a principle appears twice in the constitution")
        if len(note) > MAX_PRINCIPLE_CHARS:
            raise DataError(f"the note may have at most {MAX_PRINCIPLE_CHARS:,} characters")
        principles = [self.principle(i) for i in principle_ids]
        stats = self.stats()
        with self._write:
            previous_n, previous_path = self.store.constitution_versions()[-1]
            previous = self.store.read_constitution_version(previous_n)
            changes = diff_versions(previous, principles, replaces={r["principle"].id: r["replaces"] for r in self.user})
            changes["against_version"] = previous_n
            metadata = {
                **{k: v for k, v in self.original.metadata.items() if k not in ("notes",)},
                "edited_by": author or self.author,
                "edited_at": _now(),
                "edit_note": note,
                "based_on": previous_path.name,
                "changes": changes,
            }
            constitution = Constitution(
                tuple(principles), tuple(stats[p.id] for p in principles if p.id in stats), metadata
            )
            n, path = self.store.save_constitution_version(constitution)
        return {"version": n, "file": path.name, "changes": changes}

    def evaluation(self, n: int) -> dict[str, Any] | None:
        name = "evaluation.json" if n == 1 else f"evaluation.v{n}.json"
        return self.store.read_json(name) if self.store.has(name) else None

    def evaluate_estimate(self, n: int) -> dict[str, Any]:
        """The judge calls a held-out evaluation of version `n` sends: constitution, default and random annotators,
        each on every test pair in both orders (the default one's, made by the run, come from the cache)."""
        c = self.store.read_constitution_version(n)
        if not self.test:
            raise DataError("this run has no held-out split (run icai with --test-size) to evaluate on")
        annotators = 3 if c.principles and self.tested else 2
        calls = 2 * len(self.test) * annotators
        return {"version": n, "calls": calls, "pairs": len(self.test), "annotators": annotators}

    def start_evaluate(self, n: int, *, wait: bool = False) -> Job:
        estimate = self.evaluate_estimate(n)
        job = Job(uuid.uuid4().hex[:12], "evaluate", estimate["calls"], estimate["calls"])
        self.jobs[job.id] = job
        return self._start(job, lambda: self._evaluate(job, n), wait=wait)

    def _evaluate(self, job: Job, n: int) -> dict[str, Any]:
        from icai.evaluate import evaluate

        constitution = self.store.read_constitution_version(n)
        llm, mode, calls_before = self._llm_for(job)
        result: Evaluation = evaluate(
            self.test,
            llm,
            constitution_texts=constitution.texts,
            candidate_texts=[p.text for p in self.tested],
            seed=int(self.config.get("seed", 0)),
            mode=mode,
            train=self.train,
        )
        with self._write:
            self.store.save_version_evaluation(n, {**result.to_dict(), "constitution_version": n})
        return {"version": n, "evaluation": result.to_dict(), "calls_made": llm.usage.calls - calls_before}

    def export(self, n: int, fmt: str) -> str:
        """Version `n` in an export format (`icai.export.EXPORT_FORMATS`); the app's votes go with the run's."""
        from icai.export import RunTables, export_format, render_export
        from icai.store import version_file_name
        from icai.types import votes_to_frame

        spec = export_format(fmt)
        constitution = self.store.read_constitution_version(n)
        tables = RunTables(self.store.path, extra_votes=votes_to_frame(self.user_votes))
        return render_export(constitution, spec, tables, beside=version_file_name(n))


def diff_versions(
    previous: Constitution, principles: Sequence[Principle], *, replaces: Mapping[str, str | None]
) -> dict[str, Any]:
    """What changed from `previous` to `principles`: added, removed, reworded (new id replacing an old one) and order."""
    before = [p.id for p in previous.principles]
    after = [p.id for p in principles]
    texts = {p.id: p.text for p in (*previous.principles, *principles)}
    added = [i for i in after if i not in before]
    removed = [i for i in before if i not in after]
    reworded: list[dict[str, dict[str, str]]] = []
    for i in added:
        old = replaces.get(i)
        if old is not None and old in removed:
            reworded.append({"from": {"id": old, "text": texts[old]}, "to": {"id": i, "text": texts[i]}})
    taken = {r["to"]["id"] for r in reworded} | {r["from"]["id"] for r in reworded}
    kept_before = [i for i in before if i in after]
    kept_after = [i for i in after if i in before]
    return {
        "added": [{"id": i, "text": texts[i]} for i in added if i not in taken],
        "removed": [{"id": i, "text": texts[i]} for i in removed if i not in taken],
        "reworded": reworded,
        "reordered": kept_before != kept_after,
        "order_before": before,
        "order_after": after,
    }


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if out != out else out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
