"""Stages done / total and an ETA during a run; the dry run's wall-time estimate for local models."""

from __future__ import annotations

from pathlib import Path

import pytest

from icai.cli import main
from icai.config import RunConfig
from icai.cost import RunEstimate, StageEstimate, estimate_run
from icai.io import load_comparisons
from icai.llm import LLM, Request
from icai.llm.base import Capabilities, Completion
from icai.progress import (
    LOCAL_CPU_RATES,
    CallProgress,
    LocalRates,
    RunProgress,
    estimate_wall_time,
    format_seconds,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Ticking:
    """A provider whose every call advances a fake clock by its stage's seconds per call."""

    model = "fake/ticking"

    def __init__(self, clock: Clock, seconds: dict[str, float]) -> None:
        self.clock, self.seconds = clock, seconds

    def complete(self, request: Request) -> Completion:
        self.clock.now += self.seconds[request.prompt_text.split()[0]]
        return Completion("ok")


def plan() -> RunEstimate:
    stages = (StageEstimate("propose", 10, 0, 0), StageEstimate("vote", 40, 0, 0), StageEstimate("evaluate: judge", 20, 0, 0))
    return RunEstimate("fake/ticking", stages, None, 10, 5, 4)


def test_stages_and_eta_follow_the_measured_rate() -> None:
    clock = Clock()
    progress = RunProgress(plan(), every_s=1e9, clock=clock, emit=lambda _: None)
    llm = LLM(Ticking(clock, {"p": 2.0, "v": 0.5, "j": 1.0}), progress=False)
    llm.observer = progress

    llm.map([Request.chat(f"p {i}") for i in range(10)], desc="propose (small)")
    assert progress.lines[-1].startswith("stage 1/5 propose: 10/10 calls")
    llm.map([Request.chat(f"v {i}") for i in range(20)], desc="vote (log-prob)")
    # 20 of 40 votes at 0.5 s each: 10 s left in the stage; nothing is known of the judge stage yet (a vote's rate
    # says nothing of it), so no ETA for the run
    assert progress.lines[-1] == "stage 3/5 vote: 20/40 calls; ETA stage 10 s"
    llm.map([Request.chat(f"v {i}") for i in range(20, 40)], desc="vote (log-prob)")  # a second round, same stage
    assert progress.lines[-1] == "stage 3/5 vote: 40/40 calls; ETA stage 0 s"
    llm.map([Request.chat(f"j {i}") for i in range(4)], desc="judge: constitution")
    assert progress.lines[-1] == "stage 5/5 evaluate: judge: 4/20 calls; ETA stage 16 s, run 16 s"


def test_a_prior_stands_in_for_stages_not_yet_run() -> None:
    clock = Clock()
    wall = estimate_wall_time(plan(), Capabilities(in_process=True), rates=LocalRates(1.0, 1.0, 3.0, "test"))
    assert wall is not None
    progress = RunProgress(plan(), prior=wall, every_s=1e9, clock=clock, emit=lambda _: None)
    llm = LLM(Ticking(clock, {"p": 2.0}), progress=False)
    llm.observer = progress
    llm.map([Request.chat(f"p {i}") for i in range(5)], desc="propose")
    # 5 more proposals at 2 s; vote and judge from the prior (0 tokens: 0 s)
    assert progress.lines[-1] == "stage 1/5 propose: 5/10 calls; ETA stage 10 s, run 10 s"


def test_lines_within_a_stage_are_spaced_out() -> None:
    clock = Clock()
    lines: list[str] = []
    progress = RunProgress(plan(), every_s=5.0, clock=clock, emit=lines.append)
    llm = LLM(Ticking(clock, {"v": 1.0}), progress=False)
    llm.observer = progress
    llm.map([Request.chat(f"v {i}") for i in range(12)], desc="vote")
    # the stage start, then about one line per 5 s of calls, and the last call
    assert 3 <= len(lines) <= 5 and lines[-1].startswith("stage 3/5 vote: 12/40")


def test_a_command_without_a_plan_reports_each_map_with_its_eta() -> None:
    clock = Clock()
    lines: list[str] = []
    progress = CallProgress(every_s=3.0, clock=clock, emit=lines.append)
    llm = LLM(Ticking(clock, {"j": 1.0, "v": 0.5}))
    llm.observer = progress
    llm.map([Request.chat(f"j {i}") for i in range(8)], desc="judge: constitution")
    # its start, a line every 3 s of calls (1 s each: 5 left x 1 s after 3 done), its end without an ETA
    assert lines == [
        "judge: constitution: 0/8 calls", "judge: constitution: 3/8 calls; ETA 5 s",
        "judge: constitution: 6/8 calls; ETA 2 s", "judge: constitution: 8/8 calls",
    ]
    lines.clear()
    llm.map([Request.chat(f"v {i}") for i in range(4)], desc="vote")  # a new map: its own count and rate
    assert lines[0] == "vote: 0/4 calls" and lines[-1] == "vote: 4/4 calls" and len(lines) <= 3


def test_without_an_observer_a_map_logs_its_start_and_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="icai.llm.client")
    LLM(Ticking(Clock(), {"v": 1.0})).map([Request.chat(f"v {i}") for i in range(3)], desc="vote")
    assert [r.getMessage() for r in caplog.records] == ["vote: 0/3 calls", "vote: 3/3 calls"]
    caplog.clear()
    LLM(Ticking(Clock(), {"v": 1.0}), progress=False).map([Request.chat("v 0")], desc="vote")
    assert not caplog.records


def test_dry_run_prints_a_wall_time_for_local_models(orthogonal_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(orthogonal_csv), "--out", "unused", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Estimated wall time with the local model:" in out and LOCAL_CPU_RATES.measured in out
    assert main(["run", str(orthogonal_csv), "--out", "unused", "--dry-run", "--model", "openai/gpt-4o-mini"]) == 0
    assert "Estimated wall time" not in capsys.readouterr().out


def test_the_wall_time_follows_the_estimate(orthogonal_csv: Path) -> None:
    comparisons = load_comparisons(orthogonal_csv)
    rates = LocalRates(vote_units_per_s=10.0, prompt_tokens_per_s=500.0, propose_s_per_call=1.0, measured="test")
    config = RunConfig(model="local/smollm2", n_clusters=12, test_size=0.3, vote_mode="logprob")
    estimate = estimate_run(comparisons, config)
    wall = estimate_wall_time(estimate, Capabilities(in_process=True), rates=rates)
    assert wall is not None
    by_stage = dict(wall.stages)
    vote = next(s for s in estimate.stages if s.stage == "vote")
    assert by_stage["vote"] == pytest.approx(estimate.n_train * 12 / 10.0)  # pairs x principles / rate
    assert vote.output_tokens == 2 * estimate.n_train * 12
    assert by_stage["propose"] == estimate.stages[0].calls * 1.0
    judge = next(s for s in estimate.stages if s.stage == "evaluate: judge")
    assert by_stage["evaluate: judge"] == pytest.approx(judge.input_tokens / 500.0)
    assert estimate_wall_time(estimate, Capabilities()) is None


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (12, 300, 7200, 4 * 86400)] == ["12 s", "5.0 min", "2.0 h", "4.0 days"]


def test_a_batch_that_completes_at_once_is_timed_at_its_end() -> None:
    clock = Clock()
    progress = RunProgress(plan(), every_s=0.0, clock=clock, emit=lambda _: None)
    progress("vote (log-prob)", 0, 40)
    clock.now = 20.0  # the first chunk of 10 completes at t = 20 s, all at once
    for done in range(1, 11):
        progress("vote (log-prob)", done, 40)
    assert "ETA" not in progress.lines[0]  # no rate yet: 20 s for one call would be 40x too slow
    clock.now = 40.0  # the next chunk
    progress("vote (log-prob)", 11, 40)
    # read at the end of the first chunk: 2 s per call, 29 calls left (the judge stage after it: not yet known)
    assert progress.lines[-1] == "stage 3/5 vote: 11/40 calls; ETA stage 58 s"


def test_the_eta_follows_the_recent_rate_not_the_set_up_or_a_first_burst() -> None:
    # 100 s of set-up before the first answer, a first burst of 1,000 cache hits, then 10 calls a second
    stages = (StageEstimate("vote", 13_000, 0, 0),)
    clock = Clock()
    progress = RunProgress(RunEstimate("fake/ticking", stages, None, 10, 5, 4), every_s=0.0, clock=clock, emit=lambda _: None)
    progress("vote", 0, 13_000)
    clock.now = 100.0
    for done in range(1, 1001):  # the hits, all at once
        progress("vote", done, 13_000)
    done = 1000
    for _ in range(120):  # 12 s at 10 calls a second
        clock.now += 0.1
        done += 1
        progress("vote", done, 13_000)
    stage_left, _ = progress.eta(clock.now)
    assert stage_left == pytest.approx((13_000 - done) / 10, rel=1e-6)
    # then the calls slow down to 5 a second: within a window the ETA follows (the stage's average since its
    # start, 252 s for 2,100 calls, would say 0.12 s a call: 40 % short)
    for _ in range(700):  # 140 s
        clock.now += 0.2
        done += 1
        progress("vote", done, 13_000)
    stage_left, _ = progress.eta(clock.now)
    assert stage_left == pytest.approx((13_000 - done) / 5, rel=0.01)


def test_early_in_a_long_stage_the_eta_is_not_the_first_burst_s() -> None:
    # a driver that takes 30 s to build its first requests, then answers 100 calls a second, in chunks of 400
    stages = (StageEstimate("vote", 100_000, 0, 0),)
    clock = Clock()
    progress = RunProgress(RunEstimate("fake/ticking", stages, None, 10, 5, 4), every_s=0.0, clock=clock, emit=lambda _: None)
    progress("vote", 0, 100_000)
    clock.now = 30.0
    done = 0
    for chunk in range(5):
        if chunk:
            clock.now += 4.0
        for _ in range(400):
            done += 1
            progress("vote", done, 100_000)
    stage_left, _ = progress.eta(clock.now)
    # from the stage's start this would be 46 s / 2,000 calls x 98,000 = 37.6 min; the measured rate says 16.3 min
    assert stage_left == pytest.approx((100_000 - done) / 100, rel=1e-6)


def test_a_stage_of_several_maps_counts_the_work_between_them_from_the_first_eta() -> None:
    # the vote stage at scale: maps of 4,000 calls that each complete in one burst (1 s of calls), then 1 s of driver
    # work between maps (reading the answers, building the next requests): 2 s a map, 500 maps
    stages = (StageEstimate("vote", 2_000_000, 0, 0),)
    clock = Clock()
    progress = RunProgress(RunEstimate("fake/keyword", stages, None, 10, 5, 4), every_s=0.0, clock=clock, emit=lambda _: None)
    done = 0
    for chunk in range(3):
        if chunk:
            clock.now += 1.0  # between maps
        progress("vote", 0, 4_000)
        for k in range(1, 4_001):
            clock.now += 1.0 / 4_000
            progress("vote", k, 4_000)
        done += 4_000
        if chunk == 0:
            # the first map's calls alone would say 1 s a map: half the time left
            assert "ETA" not in progress.lines[-1] and progress.eta(clock.now) == (None, None)
        else:
            stage_left, _ = progress.eta(clock.now)
            assert stage_left == pytest.approx((2_000_000 - done) / 4_000 * 2.0, rel=1e-3)
