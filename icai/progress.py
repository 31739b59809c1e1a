"""How long a run takes: a wall-time estimate for local models from measured rates, and live progress with an ETA.

`estimate_wall_time` turns a `icai.cost.RunEstimate` into seconds per stage for an in-process
(local) model, from rates measured on the 2-core development machine (`LOCAL_CPU_RATES`, each
citing its results file). `RunProgress` is an `LLM.observer`: as a run's model calls complete it
logs "stage k/5" (the README's five stages), the calls done in the stage and an ETA for the stage and
the run, from the rate measured so far in the run (before a kind of stage has run: the prior, when
there is one). `LiveProgress` shows the same as a live bar (rich) when stderr is a terminal;
`observer_for` picks one. Commands other than a run (annotate, evaluate, compare, label's preparation) have no
stage plan: `CallProgress` and `LiveCalls` report each `LLM.map` by its own name, and `call_observer` picks one
the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icai.cost import RunEstimate, StageEstimate
    from icai.llm.base import Capabilities

log = logging.getLogger(__name__)

BURST_S = 0.05
"""Completions closer together than this are one burst (a batch that finished at once)."""

RATE_WINDOW_S = 60.0
"""A stage's rate is read over its most recent work: from the last burst end at least this long before the newest
one (or from the stage's first burst end, early on), so neither the set-up before the first answer nor a first
burst of cache hits sets the ETA of a long stage."""


@dataclass(frozen=True)
class LocalRates:
    """Measured rates of the packaged local model (SmolLM2-135M, float32) on one machine."""

    vote_units_per_s: float
    """Log-prob votes, pairs x principles per second (both orders, principles as branches)."""
    prompt_tokens_per_s: float
    """Prompt tokens computed per second (what a judge or unbranched scoring call costs)."""
    propose_s_per_call: float
    """Seconds per proposal call (a short generated rule)."""
    measured: str
    """Where and when, and the results file the numbers come from."""


LOCAL_CPU_RATES = LocalRates(
    vote_units_per_s=7.1,
    prompt_tokens_per_s=480.0,
    propose_s_per_call=1.2,
    measured="2-core development CPU (bench/results/vote_bound_cpu.json, bench/results/batch_pairs_cpu_quiet.json)",
)
"""The packaged model on the 2-core development machine, one request per pass (the CPU default).
Votes and prompt tokens: the current one-pair path in bench/results/vote_bound_cpu.json (7.13
pairs·principles/s, 21,631 prompt tokens computed in 44.9 s = 482/s; the machine to itself). The
10.07 of bench/results/local_vote_40.json was another, faster virtual machine. Proposals: 1.155 s
per prompt decoded one at a time in bench/results/batch_pairs_cpu_quiet.json (load average 0.7-1.5)."""


@dataclass(frozen=True)
class WallTime:
    """Estimated seconds per stage of a run with a local model."""

    stages: tuple[tuple[str, float], ...]
    rates: LocalRates

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.stages)

    def line(self) -> str:
        """The sentence `icai run --dry-run` prints."""
        per_stage = ", ".join(f"{name} {format_seconds(s)}" for name, s in self.stages if s > 0)
        return (
            f"Estimated wall time with the local model: {format_seconds(self.seconds)} ({per_stage}), "
            f"from rates measured on the {self.rates.measured}; model calls only (loading, embedding and "
            "clustering add seconds); another machine or load changes it."
        )


def format_seconds(seconds: float) -> str:
    """12 s, 4.2 min, 3.1 h, 2.5 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


PIPELINE_STAGES = ("propose", "cluster", "vote", "select", "evaluate")
"""The five stages of a run, as the README describes them; progress counts "stage k/5" in this order."""


def pipeline_stage(name: str) -> int:
    """The 1-based number of the pipeline stage an estimate's stage belongs to ("evaluate: judge" -> 5)."""
    head = name.split(":")[0].split(" ")[0]
    if head not in PIPELINE_STAGES:
        head = stage_kind(name) if stage_kind(name) in PIPELINE_STAGES else "evaluate"  # a judge is evaluation
    return PIPELINE_STAGES.index(head) + 1


def stage_kind(name: str) -> str:
    """"propose", "vote" or "judge": what a stage (or an `LLM.map` desc) spends its calls on."""
    if name.startswith("propose"):
        return "propose"
    if "judge" in name or name.startswith("annotate"):
        return "judge"
    return "vote"


def estimate_wall_time(
    estimate: RunEstimate, capabilities: Capabilities, *, rates: LocalRates = LOCAL_CPU_RATES
) -> WallTime | None:
    """Seconds per stage for a model run in this process; None for an API or a server.

    vote: principles voted x pairs / `vote_units_per_s` (the estimate's log-prob calls carry
    2 x principles units per pair with both orders); judge: prompt tokens / `prompt_tokens_per_s`;
    propose: calls x `propose_s_per_call`.
    """
    if not capabilities.in_process:
        return None
    stages = []
    for stage in estimate.stages:
        stages.append((stage.stage, _stage_seconds(stage, rates)))
    return WallTime(tuple(stages), rates)


def _stage_seconds(stage: StageEstimate, rates: LocalRates) -> float:
    kind = stage_kind(stage.stage)
    if kind == "propose":
        return stage.calls * rates.propose_s_per_call
    if kind == "judge":
        return stage.input_tokens / rates.prompt_tokens_per_s
    # a log-prob vote's output is one token per (pair, order, principle): units = output / 2 orders
    return stage.output_tokens / 2 / rates.vote_units_per_s


def eta_text(stage_left: float, run_left: float | None) -> str:
    """ "ETA stage 4.1 min, run 12.8 min"; without the run's part while a later stage's time is unknown."""
    text = f"ETA stage {format_seconds(stage_left)}"
    return text if run_left is None else f"{text}, run {format_seconds(run_left)}"


class RunProgress:
    """Logs stages done / total and an ETA as the calls of a run complete (an `LLM.observer`).

    Stages are the estimate's (`icai.cost.estimate_run`), in order; each `LLM.map` is matched
    to the next stage of its kind. The ETA of the current stage comes from its own rate, measured
    between the ends of its bursts of completions over the last `RATE_WINDOW_S` seconds (until a second burst has
    ended: from the stage's start, and for a stage of several maps whose first map ends in one burst, only once the
    next map starts, so the work between maps is counted);
    later stages use the rate measured for their kind in this run, else `prior` (seconds per
    stage, e.g. from `estimate_wall_time`); while a later stage has neither, no ETA is given for the run.

    Args:
        every_s: least seconds between two lines within a stage (a new stage always logs).
        clock: seconds, monotonic (tests pass a fake).
        emit: where lines go; default the `icai.progress` logger at INFO.
    """

    def __init__(
        self,
        estimate: RunEstimate,
        *,
        prior: WallTime | None = None,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.stages = [s.stage for s in estimate.stages]
        self.planned = [s.calls for s in estimate.stages]
        self.prior = dict(prior.stages) if prior is not None else {}
        self.every_s = every_s
        self.clock = clock
        self.emit = emit if emit is not None else log.info
        self.lines: list[str] = []
        self._index = -1
        self._desc: str | None = None
        self._stage_start = 0.0
        self._stage_done = 0
        self._map_base = 0
        self._map_total = 0
        self._last_emit = -float("inf")
        self._prev_time, self._prev_done = 0.0, 0
        self._seconds_per_call: dict[str, float] = {}
        self._marks: deque[tuple[float, int]] = deque()
        """(time, calls done) at the end of each burst of the current stage, the oldest pruned (`RATE_WINDOW_S`)."""

    def __call__(self, desc: str, done: int, total: int) -> None:
        """One report from `LLM.map`: `done` of its `total` requests are complete."""
        now = self.clock()
        if desc != self._desc or done == 0:
            self._enter(desc, total, now)
        # A batching provider completes a chunk of requests at one instant: the rate is read at
        # the end of a burst (the previous call, once a later one comes after a gap), not at its start.
        if self._prev_done and now - self._prev_time > BURST_S:
            self._settle(self._prev_time, self._prev_done)
        self._stage_done = self._map_base + done
        self._prev_time, self._prev_done = now, self._stage_done
        if done == total:
            self._settle(now, self._stage_done)
        if done == total or now - self._last_emit >= self.every_s:
            self._report(now)

    def _settle(self, when: float, done: int) -> None:
        if not done or when <= self._stage_start or (self._marks and done <= self._marks[-1][1]):
            return
        marks = self._marks
        marks.append((when, done))
        while len(marks) > 2 and when - marks[1][0] >= RATE_WINDOW_S:
            marks.popleft()
        first_time, first_done = marks[0]
        if len(marks) == 1 and done == self._map_base + self._map_total and done < self.stage_total():
            # The stage's first map ended in one burst and more maps follow: a rate from its calls alone would leave
            # out the work between maps (reading the answers, building the next requests), half of a fast
            # provider's time. It is read as the next map starts (`_enter`).
            return
        if len(marks) == 1 or when <= first_time:
            rate = (when - self._stage_start) / done  # one burst so far: all there is to go on
        else:
            rate = (when - first_time) / (done - first_done)
        self._seconds_per_call[stage_kind(self.stages[self._index])] = rate

    def _enter(self, desc: str, total: int, now: float) -> None:
        kind = stage_kind(desc)
        same_stage = (
            self._index >= 0 and self._desc is not None and stage_kind(self._desc) == kind and stage_kind(self.stages[self._index]) == kind
            and self._stage_done < self.planned[self._index]
        )  # fmt: skip
        if same_stage:
            if len(self._marks) == 1 and kind not in self._seconds_per_call:
                # the first map's whole cycle (its calls, then its answers read and these requests built) is over
                self._seconds_per_call[kind] = (now - self._stage_start) / max(self._stage_done, 1)
            self._map_base = self._stage_done
        else:
            following = [i for i in range(self._index + 1, len(self.stages)) if stage_kind(self.stages[i]) == kind]
            if following:
                self._index = following[0]
            elif self._index < 0:
                self._index = 0
            self._stage_start, self._stage_done, self._map_base = now, 0, 0
            self._prev_time, self._prev_done = now, 0
            self._marks.clear()
            self._last_emit = -float("inf")
        self._desc, self._map_total = desc, total

    def stage_total(self) -> int:
        return max(self.planned[self._index], self._map_base + self._map_total)

    def eta(self, now: float) -> tuple[float | None, float | None]:
        """Seconds left in the current stage and in the run; None before any rate is known (for the run: until every
        later stage has a rate measured in this run or a `prior`)."""
        kind = stage_kind(self.stages[self._index])
        rate = self._seconds_per_call.get(kind)
        if rate is None:
            return None, None
        stage_left = max(self.stage_total() - self._stage_done, 0) * rate
        later = 0.0
        for i in range(self._index + 1, len(self.stages)):
            measured = self._seconds_per_call.get(stage_kind(self.stages[i]))
            if measured is not None:
                later += self.planned[i] * measured
            elif self.stages[i] in self.prior:
                later += self.prior[self.stages[i]]
            else:
                # Nothing measured or known about that stage: another kind of call's rate says nothing of it (200
                # proposals with a worker pool's start-up put 2M votes at 4.2 h; they took 9 min).
                return stage_left, None
        return stage_left, stage_left + later

    def _report(self, now: float) -> None:
        self._last_emit = now
        stage_left, run_left = self.eta(now)
        name = self.stages[self._index]
        text = f"stage {pipeline_stage(name)}/{len(PIPELINE_STAGES)} {name}: {self._stage_done:,}/{self.stage_total():,} calls"
        if stage_left is not None:
            text += f"; {eta_text(stage_left, run_left)}"
        self.lines.append(text)
        self.emit(text)


class LiveProgress:
    """A live progress bar on a terminal (rich): the current stage, its calls done / planned and the ETAs of a
    `RunProgress`, redrawn in place on `file` (stderr). Where stderr is not a terminal, use `RunProgress` alone: plain
    log lines. Also an `LLM.observer`; `close()` (or the context manager) leaves the last state on screen.
    """

    def __init__(self, progress: RunProgress, *, file: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = progress
        self.console = Console(file=file if file is not None else sys.stderr, highlight=False, markup=False)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("calls"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self._task: Any = None
        self._stage = -1
        self._started = False

    def __call__(self, desc: str, done: int, total: int) -> None:
        if not self._started:  # started by the first call, so a run refused before it draws nothing
            self.bar.start()
            self._started = True
        self.progress(desc, done, total)
        p = self.progress
        now = p.clock()
        name = p.stages[p._index]
        description = f"stage {pipeline_stage(name)}/{len(PIPELINE_STAGES)} {name}"
        stage_left, run_left = p.eta(now)
        eta = "" if stage_left is None else eta_text(stage_left, run_left)
        if p._index != self._stage or self._task is None:
            if self._task is not None:
                self.bar.stop_task(self._task)
            self._task = self.bar.add_task(description, total=p.stage_total(), eta=eta)
            self._stage = p._index
        self.bar.update(self._task, description=description, completed=p._stage_done, total=p.stage_total(), eta=eta)

    def close(self) -> None:
        if self._started:
            self.bar.stop()
            self._started = False

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def observer_for(
    estimate: RunEstimate, *, prior: WallTime | None = None, stream: IO[str] | None = None
) -> RunProgress | LiveProgress:
    """A live bar when `stream` (default stderr) is a terminal, else plain progress lines in the log."""
    stream = stream if stream is not None else sys.stderr
    plain = RunProgress(estimate, prior=prior)
    if not stream.isatty():
        return plain
    # on a terminal the bar says it: the lines still go to run.log, not to the screen
    live = RunProgress(estimate, prior=prior, emit=_file_only)
    return LiveProgress(live, file=stream)


def _file_only(line: str) -> None:
    log.info(line, extra={"icai_progress_bar": True})


class HideBarLines(logging.Filter):
    """Keeps the lines a live bar already shows off the terminal's log handler (run.log still gets them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "icai_progress_bar", False)


class CallProgress:
    """Logs "<what>: calls done / total; ETA" for each `LLM.map` of a command without a stage plan (an `LLM.observer`).

    The ETA comes from the map's own rate: from the end of its first burst of completions (cache hits served at
    once) to the newest one; until a second burst has ended, from the map's start.

    Args:
        every_s: least seconds between two lines within a map (its start and its end always log).
        clock: seconds, monotonic (tests pass a fake).
        emit: where lines go; default the `icai.progress` logger at INFO.
    """

    def __init__(
        self, *, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic, emit: Callable[[str], None] | None = None
    ) -> None:
        self.every_s = every_s
        self.clock = clock
        self.emit = emit if emit is not None else log.info
        self.lines: list[str] = []
        self.desc: str | None = None
        self.done = 0
        self.total = 0
        self._start = 0.0
        self._last_emit = -float("inf")
        self._prev: tuple[float, int] = (0.0, 0)
        self._mark: tuple[float, int] | None = None
        """(time, calls done) at the end of the map's first burst of completions."""

    def __call__(self, desc: str, done: int, total: int) -> None:
        now = self.clock()
        if desc != self.desc or done == 0:
            self.desc, self._start, self._last_emit, self._prev, self._mark = desc, now, -float("inf"), (now, 0), None
        if self._mark is None and self._prev[1] and now - self._prev[0] > BURST_S:
            self._mark = self._prev
        self.done, self.total, self._prev = done, total, (now, done)
        if done == 0 or done == total or now - self._last_emit >= self.every_s:
            self._last_emit = now
            text = self.line(now)
            self.lines.append(text)
            self.emit(text)

    def eta(self, now: float) -> float | None:
        """Seconds left in the current map; None before a call has completed."""
        if not self.done:
            return None
        if self._mark is not None and self.done > self._mark[1] and now > self._mark[0]:
            rate = (now - self._mark[0]) / (self.done - self._mark[1])
        else:
            rate = (now - self._start) / self.done
        return max(self.total - self.done, 0) * rate

    def line(self, now: float) -> str:
        text = f"{self.desc}: {self.done:,}/{self.total:,} calls"
        left = self.eta(now)
        if left is not None and self.done < self.total:
            text += f"; ETA {format_seconds(left)}"
        return text


class LiveCalls:
    """`CallProgress` as a live bar on a terminal (rich), one line per `LLM.map`, redrawn in place on `file`; each
    map's bar is left on screen, finished, when its last call completes (so a prompt that follows is not redrawn
    over). `close()` stops a bar that a failure left running."""

    def __init__(self, progress: CallProgress | None = None, *, file: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = progress if progress is not None else CallProgress(emit=lambda line: None)
        self.console = Console(file=file if file is not None else sys.stderr, highlight=False, markup=False)
        self._columns = (
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("calls"),
            TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
        )
        self._progress_type = Progress
        self.bar: Any = None
        self._task: Any = None

    def __call__(self, desc: str, done: int, total: int) -> None:
        p = self.progress
        new = desc != p.desc or done == 0
        p(desc, done, total)
        if new or self.bar is None:
            self.close()
            self.bar = self._progress_type(*self._columns, console=self.console, transient=False)
            self.bar.start()
            self._task = self.bar.add_task(desc, total=total, eta="")
        left = p.eta(p.clock())
        eta = f"ETA {format_seconds(left)}" if left is not None and done < total else ""
        self.bar.update(self._task, completed=done, total=total, eta=eta)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> LiveCalls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call_observer(*, stream: IO[str] | None = None) -> CallProgress | LiveCalls:
    """For a command without a stage plan: a live bar per `LLM.map` when `stream` (default stderr) is a terminal,
    else plain progress lines in the log."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        return CallProgress()
    return LiveCalls(file=stream)
