"""A run directory's lifetime, with one owner: lock it, open its response cache and its log, run, report, release.

The CLI (`icai run`, `icai test`, `icai label`, the runs `icai compare` makes from data files), the Python API
(`icai.run_to_directory`) and the workbench (`icai app`) all go through here, so the order of these
side effects is written once:

1. `RunStore.begin` refuses another dataset's run, a folder that is not a run, and a directory another
   process holds; it takes the directory's lock before anything is written there;
2. the model answers from the run's `cache.sqlite` (kept across resumes: a resumed run repeats no call);
3. the `icai` log goes to the run's `run.log` as well;
4. the stages run (`icai.pipeline.run`), then the per-group analysis when asked (`icai.analyses.run_groups`),
   and `report.html` is written;
5. whatever happens, the log handler is removed, the cache closed and the lock released.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icai._version import __version__
from icai.analyses import run_groups
from icai.config import RunConfig
from icai.embed import Embedder
from icai.errors import DataError
from icai.groups import GroupAnalysis
from icai.llm.cache import ResponseCache
from icai.llm.client import LLM
from icai.pipeline import RunResult, dataset_hash, recorded_config, run
from icai.report import write_report
from icai.store import RunStore
from icai.types import Comparison

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The line format of run.log."""


@contextlib.contextmanager
def run_cache(llm: LLM, store: RunStore) -> Iterator[LLM]:
    """`llm` answering from the run's cache.sqlite while inside; a cache the caller set already is kept as it is."""
    if llm.cache is not None:
        yield llm
        return
    llm.cache = ResponseCache(store.cache_path)
    try:
        yield llm
    finally:
        llm.cache.close()
        llm.cache = None


@contextlib.contextmanager
def run_log(store: RunStore) -> Iterator[Path]:
    """The `icai` log at INFO also written to the run's run.log while inside."""
    handler = logging.FileHandler(store.log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("icai")
    level = logger.level
    logging.getLogger().addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield store.log_path
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        logger.setLevel(level)


@contextlib.contextmanager
def run_directory(
    out: str | Path,
    *,
    comparisons: Sequence[Comparison],
    config: RunConfig,
    llm: LLM,
    embedder: Embedder,
    overwrite: bool = False,
) -> Iterator[RunStore]:
    """The run directory `out`, locked for this run, with the model on its cache and the log in its run.log.

    Refused (DataError) before anything is opened when `out` holds another dataset's run (unless `overwrite`),
    files that are not a run, or a run another process has open.
    """
    store = RunStore(out)
    store.begin(
        dataset_hash=dataset_hash(comparisons),
        config=recorded_config(config, llm=llm, embedder=embedder).to_dict(),
        version=__version__,
        overwrite=overwrite,
    )
    try:
        with run_cache(llm, store), run_log(store):
            yield store
    finally:
        store.release()


@contextlib.contextmanager
def locked_run(path: str | Path) -> Iterator[RunStore]:
    """A finished run directory, held against other apps and runs while inside (the workbench's hold on a run)."""
    reader = RunStore.existing(path)
    store = RunStore(reader.path)
    try:
        store.lock()
    except DataError:
        holder = (reader.path / "run.lock").read_text(encoding="ascii", errors="replace").strip() or "unknown"
        raise DataError(f"{reader.path} is open in another icai app or run (pid {holder}); close that one first") from None
    try:
        yield store
    finally:
        store.release()


@dataclass(frozen=True)
class GroupOptions:
    """`icai run --by`: split the run's statistics by a metadata column (`icai.analyses.run_groups`)."""

    by: str
    bins: int | None = None
    per_group_constitution: bool = False
    extra: Mapping[str, Any] | None = None
    """Recorded with the analysis (the CLI records how the label was made: `icai.target`)."""


@dataclass(frozen=True)
class DirectoryRun:
    """What `run_to_directory` made: the result, the per-group analysis when asked for, and where it is."""

    result: RunResult
    analysis: GroupAnalysis | None
    path: Path


def run_to_directory(
    out: str | Path,
    comparisons: Sequence[Comparison],
    *,
    llm: LLM,
    embedder: Embedder,
    config: RunConfig = RunConfig(),
    overwrite: bool = False,
    groups: GroupOptions | None = None,
) -> DirectoryRun:
    """Run the stages into the run directory `out` and write its report, as `icai run` does.

    An existing run of the same data in `out` is resumed (saved stages reused, model calls answered from its
    cache); see `run_directory` for what is refused. Without `groups`, a groups.json of an earlier run is removed.
    """
    with run_directory(
        out, comparisons=comparisons, config=config, llm=llm, embedder=embedder, overwrite=overwrite
    ) as store:
        result = run(comparisons, llm=llm, embedder=embedder, config=config, store=store)
        analysis = None
        if groups is not None:
            analysis = run_groups(
                result,
                by=groups.by,
                bins=groups.bins,
                config=config,
                store=store,
                test_votes=store.load_votes("test_votes.csv") if store.has("test_votes.csv") else (),
                per_group_constitution=groups.per_group_constitution,
                extra=groups.extra,
            )
        else:
            store.discard("groups.json")
        write_report(store.path)
    return DirectoryRun(result, analysis, store.path)
