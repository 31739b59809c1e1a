"""The only writer of run directories. Every file is written atomically.

Layout of a run directory:
  config.json        the RunConfig and dataset hash
  checkpoints.json   fingerprint of each completed stage (a stage is reused only if it matches)
  proposals.json     stage 1 output
  clusters.json      stage 2 output
  votes.csv          stage 3 output (one row per comparison x principle), an export of votes.columns/
  votes.columns/     the votes as columns (icai.votes.VoteTable: picks.npy, values.npy, meta.json), filled
                     as the answers arrive and read back by a resumed run, the statistics and the report
  principles.csv     every candidate with its cluster and statistics
  comparisons.csv    the data used, with the train/test split
  constitution.json  the result (schema icai.constitution/1)
  evaluation.json    held-out scores, when a test split was asked for
  report.html        the HTML report
  groups.json        per-group statistics and difference tests (`icai run --by`; icai.groups)
  cache.sqlite       every LLM response, committed before use (resume never repeats a call)
  run.log            the log
  flipped/           the same for the flipped-label sanity run
  run.lock           the pid of the icai run holding the directory (an flock; removed when it ends)
  constitution.vN.json  hand-edited versions saved from `icai app` (N = 2, 3, ...; constitution.json is v1)
  evaluation.vN.json    held-out scores of version N, when evaluated from the app
  app_principles.json, app_votes.csv  principles written or reworded in the app, and their training votes
  label_pairs.csv    `icai label`: the unlabelled pairs a person labels (their votes in votes.csv are label-free)
  labels.json        `icai label`: every answer in order (pair id, a/b/tie/skip, who, when); rewritten per label
  labelled.csv       `icai label`: the pairs labelled a or b, as an ordinary labelled ICAI CSV for `icai run`

A run directory always describes one run: `begin` refuses a folder that holds files but no icai run,
a run on another dataset (unless overwrite=True, which first removes that run's files) and a folder
another process holds the lock of; the outputs of a finished run are removed when the config changes,
so a failed rerun never shows the old result under the new config. This module is also the only
reader of run directories for the report (`RunStore.existing`, `read_json`, `read_csv`).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from icai.errors import DataError
from icai.files import process_umask, write_atomic, write_json_atomic, write_text_atomic
from icai.types import Comparison, Constitution, Principle, PrincipleStats, Vote, comparisons_to_frame, votes_to_frame
from icai.votes import VoteTable

if TYPE_CHECKING:
    import pandas as pd

CONFIG_FILE = "config.json"
COMPARISON_COLUMNS = ("id", "prompt", "text_a", "text_b", "preferred")
"""The columns every comparisons.csv starts with; then `split` and one column per input metadata key."""
COMPARISON_TABLE_COLUMNS = (*COMPARISON_COLUMNS, "split")
"""comparisons.csv's fixed columns, the train/test split included."""
VOTE_COLUMNS = ("comparison_id", "principle_id", "value")
"""The columns of votes.csv (and test_votes.csv, app_votes.csv) that say which way a vote went."""
VOTE_PICK_COLUMNS = ("comparison_id", "principle_id", "picks")
"""The columns of votes.csv with each vote's per-order picks (a, b, neither, invalid)."""
LOCK_FILE = "run.lock"
FINAL_OUTPUTS = (
    "constitution.json",
    "principles.csv",
    "evaluation.json",
    "test_votes.csv",
    "test_votes.columns",
    "report.html",
    "groups.json",
)
"""Written at the end of a run from everything before: removed when a rerun changes the config."""
RUN_FILES = (
    CONFIG_FILE,
    "checkpoints.json",
    "proposals.json",
    "clusters.json",
    "votes.csv",
    "votes.columns",
    "comparisons.csv",
    *FINAL_OUTPUTS,
    "cache.sqlite",
    "cache.sqlite-wal",
    "cache.sqlite-shm",
    "run.log",
    "flipped",
    "app_principles.json",
    "app_votes.csv",
    "label_pairs.csv",
    "labels.json",
    "labelled.csv",
)
"""Every file and folder icai writes into a run directory (besides the lock)."""


def _principles(rows: Sequence[Mapping[str, Any]]) -> list[Principle]:
    """Principles from their saved `dataclasses.asdict` rows (JSON turns tuples into lists)."""
    return [Principle(**{**r, "source_ids": tuple(r["source_ids"])}) for r in rows]


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"{self.path} is a file, and a run is written into a folder; choose a new or empty folder for --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise DataError(f"{self.path}: output directory is not writable ({exc.strerror})") from None

    @classmethod
    def existing(cls, path: str | Path) -> RunStore:
        """A store to read an existing run directory: nothing is created or written."""
        store = cls.__new__(cls)
        store.path = Path(path)
        store._lock_fd = None
        if not store.path.is_dir():
            raise DataError(f"{store.path}: run directory not found")
        return store

    def child(self, name: str) -> RunStore:
        return RunStore(self.path / name)

    # one run per directory ---------------------------------------------------------
    def begin(self, *, dataset_hash: str, config: Mapping[str, Any], version: str, overwrite: bool = False) -> bool:
        """Lock the directory and make it describe this run; True when this call took the lock.

        Refused (DataError, one sentence): a directory another process holds, a non-empty folder that is not an
        icai run, and a run on another dataset unless `overwrite` (then that run's files are removed first).
        A changed config keeps the stage files (their fingerprints decide reuse) and removes the final outputs.
        """
        took = self.lock()
        previous: dict[str, Any] | None = None
        try:
            previous = self.read_identity()
            if previous is None:
                # icai's own files without config.json (a cache opened before the run began) are a run not yet begun
                others = sorted(p.name for p in self.path.iterdir() if p.name not in (*RUN_FILES, LOCK_FILE))
                if others:
                    more = f" and {len(others) - 1} more" if len(others) > 1 else ""
                    raise DataError(
                        f"{self.path} is not empty and holds no icai run ({others[0]}{more}); choose a new or empty --out"
                    )
            elif previous.get("dataset_hash") != dataset_hash:
                if not overwrite:
                    raise DataError(
                        f"{self.path} holds a run on another dataset (hash {previous.get('dataset_hash')}, this one "
                        f"{dataset_hash}); pass --overwrite to replace it or choose another --out"
                    )
                self.discard(*RUN_FILES)
            elif previous.get("config") != dict(config) or previous.get("version") != version:
                self.discard(*FINAL_OUTPUTS)
            self.save_config({"config": dict(config), "dataset_hash": dataset_hash, "version": version})
        except BaseException:
            if took:
                self.release(remove=previous is None)
            raise
        return took

    def read_identity(self) -> dict[str, Any] | None:
        """config.json of the run in this directory, or None when it holds no icai run."""
        f = self.path / CONFIG_FILE
        if not f.is_file():
            return None
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "dataset_hash" in data and "config" in data else None

    def lock(self) -> bool:
        """Take the directory's lock (run.lock, holding this pid); False when this store holds it already."""
        if self._lock_fd is not None:
            return False
        while True:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides, as for every run file
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise DataError(
                        f"{self.path} is in use by another icai run (pid {holder}); wait for it to end or choose another --out"
                    ) from None
                raise
            # the holder before us removes run.lock as it releases it: a lock on that removed file holds nothing
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path / LOCK_FILE).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def holder(self) -> str | None:
        """The pid in run.lock when another process holds the directory's lock (a run in progress), else None."""
        if self._lock_fd is not None:
            return None
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            raise
        finally:
            os.close(fd)
        return None

    def release(self, *, remove: bool = True) -> None:
        """Release the lock taken by `lock` and remove run.lock (removed while still held, so no run finds it stale).

        remove=False keeps the file (for a caller that hands the directory on at once)."""
        if self._lock_fd is None:
            return
        if remove:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    def discard(self, *names: str) -> None:
        """Remove these files or folders of the run directory if they exist."""
        for name in names:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

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

    def vote_table(
        self, comparison_ids: Sequence[str], principle_ids: Sequence[str], *, orders: int, margins: bool, name: str = "votes.csv"
    ) -> VoteTable:
        """An empty vote table memory-mapped in this run directory (`name`'s columns), for a vote to fill as it goes."""
        folder = self.path / _columns_name(name)
        self.discard(_columns_name(name))
        return VoteTable.allocate(comparison_ids, principle_ids, orders=orders, margins=margins, folder=folder)

    def save_votes(self, votes: Sequence[Vote], name: str = "votes.csv") -> None:
        """`name` (CSV, one row per vote) and, for votes that form a table, its columns beside it."""
        table = votes if isinstance(votes, VoteTable) else None
        if table is None and len(votes) >= COLUMNS_FROM_RECORDS:
            table = VoteTable.from_votes(votes)
        if table is None:
            self.discard(_columns_name(name))
            buf = io.StringIO()
            votes_to_frame(votes).to_csv(buf, index=False)
            write_text_atomic(self.path / name, buf.getvalue())
            return
        table.save(self.path / _columns_name(name))
        write_atomic(self.path / name, table.write_csv)

    def load_votes(self, name: str = "votes.csv") -> Sequence[Vote]:
        """The votes saved as `name`: from its columns when they are there (memory-mapped), else from the CSV."""
        columns = self.path / _columns_name(name)
        if (columns / "meta.json").exists():
            return VoteTable.load(columns)
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
        splits = ["train"] * len(train) + ["test"] * len(test)
        keys = list(dict.fromkeys(k for c in everything for k in c.metadata))

        # Above CSV_CHUNK_ROWS pairs, a chunk at a time (a million pairs never become one frame and one string);
        # metadata columns are then kept as objects, so every chunk writes a cell alike (1 stays 1 beside an
        # empty cell, where one frame would make the column float and write 1.0).
        chunk = CSV_CHUNK_ROWS if len(everything) > CSV_CHUNK_ROWS else max(len(everything), 1)

        def write(fh: IO[str]) -> None:
            import pandas as pd

            for start in range(0, max(len(everything), 1), chunk):
                part = everything[start : start + chunk]
                frame = comparisons_to_frame(part)
                frame["split"] = splits[start : start + chunk]
                for key in keys:
                    # a metadata key that is also a column name (an input's own "split", say) keeps its value under input_<key>
                    column = f"input_{key}" if key in frame.columns else key
                    cells = [_csv_cell(c.metadata.get(key)) for c in part]
                    frame[column] = pd.Series(cells, dtype=object) if chunk < len(everything) else cells
                frame.to_csv(fh, index=False, header=start == 0)

        write_atomic(self.path / "comparisons.csv", write)

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
        stat_columns = [f.name for f in dataclasses.fields(PrincipleStats) if f.name not in ("principle_id", "agreement_ci")]
        columns = [
            "id", "text", "cluster", "cluster_size", "origin", "hint", "in_constitution", "rank", "merged_into",
            "resample_frequency", *stat_columns, "agreement_ci_low", "agreement_ci_high",
        ]
        buf = io.StringIO()
        # the columns are named even when there is no row (an empty constitution), so the file is still a table
        pd.DataFrame(rows, columns=columns).to_csv(buf, index=False)
        write_text_atomic(self.path / "principles.csv", buf.getvalue())

    def save_constitution(self, constitution: Constitution) -> Path:
        return constitution.save(self.path / "constitution.json")

    def save_evaluation(self, evaluation: Mapping[str, Any]) -> None:
        write_json_atomic(self.path / "evaluation.json", dict(evaluation))

    def save_groups(self, analysis: Mapping[str, Any]) -> Path:
        """groups.json: per-group statistics of the run's principles (`icai.groups.GroupAnalysis.to_dict`)."""
        return write_json_atomic(self.path / "groups.json", dict(analysis))

    def read_comparisons(self) -> tuple[list[Comparison], list[Comparison]]:
        """(train, test) from comparisons.csv, each with the input metadata columns it was saved with."""
        frame = self.read_csv("comparisons.csv", COMPARISON_TABLE_COLUMNS)
        fixed = set(COMPARISON_TABLE_COLUMNS)
        extra = [c for c in frame.columns if c not in fixed]
        train: list[Comparison] = []
        test: list[Comparison] = []
        for row in frame.to_dict("records"):
            if row["preferred"] not in ("a", "b"):
                raise DataError(f"{self.path / 'comparisons.csv'}: preferred must be a or b, not {row['preferred']!r}")
            c = Comparison(
                id=row["id"], text_a=row["text_a"], text_b=row["text_b"], preferred=row["preferred"], prompt=row["prompt"],
                metadata={k.removeprefix("input_"): row[k] for k in extra if row[k] != ""},
            )
            (test if row["split"] == "test" else train).append(c)
        return train, test

    # labelling (icai label) -----------------------------------------------------------
    def save_label_pairs(self, pairs: Sequence[Comparison]) -> None:
        """label_pairs.csv: the pairs to label; their `preferred` is a placeholder and is not read back."""
        frame = comparisons_to_frame(pairs).drop(columns=["preferred"])
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        write_text_atomic(self.path / "label_pairs.csv", buf.getvalue())

    def is_labelling(self) -> bool:
        """Whether this directory holds an `icai label` session (its pairs were saved)."""
        return (self.path / "label_pairs.csv").is_file()

    def read_label_pairs(self) -> list[Comparison]:
        frame = self.read_csv("label_pairs.csv", ("id", "prompt", "text_a", "text_b"))
        return [Comparison(str(r["id"]), r["text_a"], r["text_b"], "a", r["prompt"]) for r in frame.to_dict("records")]

    def save_labels(self, records: Sequence[Mapping[str, Any]], labelled: Sequence[Comparison]) -> None:
        """labels.json (every answer, in order) then labelled.csv (the pairs labelled a or b), each atomically."""
        write_json_atomic(self.path / "labels.json", {"schema": "icai.labels/1", "labels": [dict(r) for r in records]})
        from icai.io import save_comparisons_csv

        save_comparisons_csv(labelled, self.path / "labelled.csv")

    def load_labels(self) -> list[dict[str, Any]]:
        f = self.path / "labels.json"
        if not f.is_file():
            return []
        data = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
            raise DataError(f"{f}: not an icai labels file")
        return [dict(r) for r in data["labels"]]

    def save_report(self, html: str) -> Path:
        return write_text_atomic(self.path / "report.html", html)

    # reading (the report) -----------------------------------------------------------
    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON object file of the run directory (DataError when it holds something else)."""
        path = self.path / name
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object, found {type(data).__name__}")
        return data

    def read_constitution(self) -> Constitution:
        return Constitution.from_dict(self.read_json("constitution.json"))

    def read_csv(self, name: str, required: tuple[str, ...] = ()) -> pd.DataFrame:
        """A CSV file of the run directory, every cell as text (`read_run_csv`)."""
        return read_run_csv(self.path / name, required)

    def read_csv_chunks(self, name: str, required: tuple[str, ...] = (), *, rows: int = 100_000) -> Iterator[pd.DataFrame]:
        """A CSV file of the run directory in chunks of `rows` rows, every cell as text (memory bounded by a chunk)."""
        import pandas as pd

        path = self.path / name
        try:
            for frame in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=rows):
                missing = [c for c in required if c not in frame.columns]
                if missing:
                    raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
                yield frame
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc})") from None

    def has_vote_columns(self, name: str = "votes.csv") -> bool:
        """Whether `name`'s votes are also saved as columns (`load_votes` then reads those)."""
        return (self.path / _columns_name(name) / "meta.json").exists()


    # constitution versions (icai app) ------------------------------------------------------------
    def constitution_versions(self) -> list[tuple[int, Path]]:
        """(N, path) of every saved constitution version, oldest first; constitution.json is version 1."""
        found = [(1, self.path / "constitution.json")] if self.has("constitution.json") else []
        for f in self.path.glob("constitution.v*.json"):
            m = VERSION_FILE.fullmatch(f.name)
            if m and int(m.group(1)) >= 2:
                found.append((int(m.group(1)), f))
        return sorted(found)

    def read_constitution_version(self, n: int) -> Constitution:
        """Version `n` of the constitution (1: constitution.json); DataError when there is none."""
        path = self.path / version_file_name(n)
        if not path.is_file():
            raise DataError(f"{self.path}: constitution version {n} not found")
        return Constitution.load(path)

    def save_constitution_version(self, constitution: Constitution) -> tuple[int, Path]:
        """Write `constitution` as the next version, constitution.vN.json (N >= 2); returns (N, path).

        Atomic and exclusive: the file is written and fsynced under a temporary name, then hard-linked
        to its final name, which fails when that name exists, so a killed save leaves at most a stray
        temporary file and two writers never share a version number. The metadata key
        `constitution_version` is set to N.
        """
        existing = self.constitution_versions()
        n = max((v for v, _ in existing), default=1) + 1
        while True:
            data = {**constitution.to_dict(), "constitution_version": n}
            target = self.path / version_file_name(n)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    os.fchmod(fh.fileno(), 0o666 & ~process_umask())  # the mode of every run file (write_text_atomic)
                    fh.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.link(tmp, target)
            except FileExistsError:
                n += 1
                continue
            finally:
                Path(tmp).unlink(missing_ok=True)
            return n, target

    def save_app_principles(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """app_principles.json: principles written in the app, each with `replaces`, `author` and `created_at`."""
        write_json_atomic(
            self.path / "app_principles.json",
            [{**row, "principle": dataclasses.asdict(row["principle"])} for row in rows],
        )

    def load_app_principles(self) -> list[dict[str, Any]]:
        """The rows of `save_app_principles` (none when the app has written nothing)."""
        if not self.has("app_principles.json"):
            return []
        rows = json.loads((self.path / "app_principles.json").read_text(encoding="utf-8"))
        return [{**row, "principle": _principles([row["principle"]])[0]} for row in rows]

    def save_version_evaluation(self, n: int, evaluation: Mapping[str, Any]) -> Path:
        return write_json_atomic(self.path / f"evaluation.v{n}.json", dict(evaluation))


VERSION_FILE = re.compile(r"constitution\.v(\d+)\.json")


CSV_CHUNK_ROWS = 50_000
"""Rows of comparisons.csv made into one frame at a time."""


COLUMNS_FROM_RECORDS = 1000
"""Votes given as records are also saved as columns from this many on (when they form a table)."""


def _columns_name(name: str) -> str:
    """The folder of a votes file's columns: votes.csv -> votes.columns."""
    return name.rsplit(".", 1)[0] + ".columns"


def version_file_name(n: int) -> str:
    """constitution.json for version 1, constitution.vN.json for the versions saved after it."""
    return "constitution.json" if n == 1 else f"constitution.v{n}.json"


def _csv_cell(value: Any) -> Any:
    """A metadata value as one CSV cell: scalars as they are, None as empty, anything else as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def read_run_csv(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A run-directory CSV with every column read as text (ids like "007" stay intact)."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (ValueError, UnicodeDecodeError) as exc:  # pandas parser errors are ValueErrors
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


class CompareStore(RunStore):
    """The output folder of `icai compare`: cross_a.csv / cross_b.csv (the cross-test votes on A's / B's pairs),
    compare.json, compare.html and cache.sqlite. A run directory is refused, so a compare never writes into a run."""

    FILES = ("cross_a.csv", "cross_b.csv", "compare.json", "compare.html", "cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm", "runs")

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if (path / CONFIG_FILE).is_file():
            raise DataError(f"{path} is a run directory; choose another --out for the comparison")
        if path.is_dir():
            others = sorted(p.name for p in path.iterdir() if p.name not in self.FILES)
            if others:
                raise DataError(f"{path} is not empty and holds no icai comparison ({others[0]}); choose a new or empty --out")
        super().__init__(path)

    def save_compare(self, data: Mapping[str, Any]) -> Path:
        return write_json_atomic(self.path / "compare.json", dict(data))

    def save_compare_report(self, html: str) -> Path:
        return write_text_atomic(self.path / "compare.html", html)
