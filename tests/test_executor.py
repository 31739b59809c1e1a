"""The executor seam: shards, local vs Ray equality, worker deaths, GPU placement, Ray as an optional extra."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from icai.cli import main
from icai.config import RunConfig
from icai.executor import LocalExecutor, WorkerRecipe, cut_shards
from icai.io import load_comparisons
from icai.llm import get_llm
from icai.llm.base import Request
from icai.pipeline import run
from icai.ray_executor import RayExecutor, actor_options, default_workers
from icai.store import RunStore
from icai.types import Principle
from icai.vote import vote

# -- shards ------------------------------------------------------------------------------


def test_shards_never_split_a_key_and_close_after_size() -> None:
    keys = ["p1"] * 4 + ["p2"] * 4 + ["p3"] * 4 + ["p4"]
    assert cut_shards(keys, 5) == [list(range(0, 8)), list(range(8, 13))]
    assert cut_shards(keys, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12]]
    assert cut_shards(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert cut_shards([], 3) == []
    with pytest.raises(ValueError):
        cut_shards(keys, 0)


class RecordingExecutor(LocalExecutor):
    def __init__(self) -> None:
        self.shards: list[list[Any]] = []

    def run(self, recipe, shards, run_here, on_result):  # type: ignore[no-untyped-def]
        def recorded() -> Iterator[Sequence[Any]]:
            for shard in shards:
                self.shards.append(list(shard))
                yield shard

        return super().run(recipe, recorded(), run_here, on_result)


def test_map_sends_only_uncached_requests_in_whole_pair_shards(tmp_path: Path) -> None:
    executor = RecordingExecutor()
    llm = get_llm("fake/keyword", cache_path=tmp_path / "cache.sqlite", executor=executor, shard_size=3, progress=False)
    requests = [Request.chat(f"pair {p} question {q}") for p in range(3) for q in range(2)]
    keys = [p for p in range(3) for _ in range(2)]
    llm.map(requests[:2], keys=keys[:2])  # pair 0 is now cached
    executor.shards.clear()
    out = llm.map(requests, keys=keys)
    assert [len(s) for s in executor.shards] == [4]  # pairs 1 and 2; pair 0 never sent
    assert [r.prompt_text for r in executor.shards[0]] == [r.prompt_text for r in requests[2:]]
    assert len(out) == 6 and llm.usage.calls == 6 and llm.usage.cache_hits == 2


# -- placement ---------------------------------------------------------------------------


def test_gpu_work_asks_for_one_gpu_per_actor_only_when_the_cluster_has_one() -> None:
    local_model = WorkerRecipe("llm", "local/smollm2", gpu=True)
    api_model = WorkerRecipe("llm", "openai/gpt-4o-mini", gpu=False)
    gpu_cluster = {"CPU": 32.0, "GPU": 4.0}
    cpu_cluster = {"CPU": 2.0}
    assert actor_options(local_model, gpu_cluster)["num_gpus"] == 1
    assert actor_options(local_model, cpu_cluster)["num_gpus"] == 0
    assert actor_options(api_model, gpu_cluster)["num_gpus"] == 0
    assert default_workers(local_model, gpu_cluster) == 4
    assert default_workers(local_model, cpu_cluster) == 2
    assert default_workers(api_model, gpu_cluster) == 8
    assert actor_options(local_model, cpu_cluster)["max_task_retries"] > 0


# -- Ray as an optional extra ------------------------------------------------------------


def test_core_never_imports_ray() -> None:
    code = (
        "import sys, icai, icai.cli, icai.pipeline, icai.llm, icai.embed, icai.executor, icai.vote, icai.propose\n"
        "from icai.ray_executor import make_executor\n"
        "make_executor('local')\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_executor_ray_without_ray_installed_exits_2_with_install_hint(
    tmp_path: Path, orthogonal_csv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    out = tmp_path / "run"
    code = main(["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash", "--executor", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and "pip install 'icai[ray]'" in err and "Traceback" not in err
    assert not out.exists()


# -- on a local Ray cluster --------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024 * 1024, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_args(data: Path, out: Path, executor: str) -> list[str]:
    args = ["run", str(data), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash"]
    args += ["--n-clusters", "12", "--test-size", "0.3", "--shard-size", "16", "--executor", executor]
    return args + (["--ray-workers", "2"] if executor == "ray" else [])


def _results(run_dir: Path) -> tuple[dict[str, Any], str, str]:
    constitution = json.loads((run_dir / "constitution.json").read_text())
    return constitution, (run_dir / "votes.csv").read_text(), (run_dir / "test_votes.csv").read_text()


def test_ray_run_writes_what_a_local_run_writes(ray_cluster: Any, tmp_path: Path, orthogonal_csv: Path) -> None:
    assert main(_run_args(orthogonal_csv, tmp_path / "local", "local")) == 0
    assert main(_run_args(orthogonal_csv, tmp_path / "ray", "ray")) == 0
    local, ray_run = _results(tmp_path / "local"), _results(tmp_path / "ray")
    assert local == ray_run
    assert local[0]["principles"]  # a real constitution, not two empty ones
    # Resume through Ray: everything is in the cache, nothing is sent; only the usage counts differ.
    assert main(_run_args(orthogonal_csv, tmp_path / "ray", "ray")) == 0
    resumed = _results(tmp_path / "ray")
    assert resumed[0]["usage"]["calls"] == 0 and resumed[0]["usage"]["cache_hits"] > 0
    assert resumed[1:] == local[1:] and resumed[0]["principles"] == local[0]["principles"]


def _cache_rows(path: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(path) as conn:
            rows, keys = conn.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM responses").fetchone()
    except sqlite3.OperationalError:  # polled while the cache file exists but its table is not made yet
        return 0, 0
    return int(rows), int(keys)


def test_a_killed_worker_changes_nothing(
    ray_cluster: Any, tmp_path: Path, orthogonal_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    # The driver writes answers to the cache at the end of a map and at most CACHE_FLUSH_S after the first unwritten
    # one (2 s). The vote stage here takes about 3 s (60 calls of 0.1 s on 2 workers, results a shard of 10 at a
    # time), so with 2 s the one timed write could come after the last answers, and the cache would go from the
    # proposals straight to every vote with no moment to kill a worker mid-stage. 0.2 s shows the stage's progress.
    monkeypatch.setattr(importlib.import_module("icai.llm.client"), "CACHE_FLUSH_S", 0.2)
    comparisons = load_comparisons(orthogonal_csv)
    config = RunConfig(model="fake/keyword", embedder="hash", n_clusters=12, seed=0)

    def pipeline(executor: Any, out: Path) -> tuple[Any, Any]:
        store = RunStore(out)
        llm = get_llm("fake/keyword", cache_path=store.cache_path, executor=executor, shard_size=10, progress=False, delay=0.1)
        from icai.embed import get_embedder

        result = run(comparisons, llm=llm, embedder=get_embedder("hash", executor=executor), config=config, store=store)
        return result, llm

    reference, reference_llm = pipeline(LocalExecutor(), tmp_path / "local")

    executor = RayExecutor(workers=2)
    cache = tmp_path / "ray" / "cache.sqlite"
    n_propose = len(comparisons)  # one proposal request per pair; then 2 vote requests per pair
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"], outcome["llm"] = pipeline(executor, tmp_path / "ray")
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (cache.exists() and _cache_rows(cache)[0] >= n_propose + 10):
        time.sleep(0.02)
    done_before_kill = _cache_rows(cache)[0]
    assert thread.is_alive() and done_before_kill < n_propose + 2 * len(comparisons), "the run ended before the kill"
    os.kill(executor.pids[0], signal.SIGKILL)  # a vote worker, mid-shard
    thread.join(timeout=300)
    executor.close()
    assert "error" not in outcome, outcome.get("error")
    result, llm = outcome["result"], outcome["llm"]
    assert result.constitution.texts == reference.constitution.texts
    assert result.votes == reference.votes
    rows, keys = _cache_rows(cache)
    assert rows == keys == llm.usage.calls == reference_llm.usage.calls  # no call counted or stored twice


@pytest.mark.slow
def test_ray_votes_with_the_real_local_model_equal_local_votes(ray_cluster: Any, orthogonal_csv: Path) -> None:
    pairs = load_comparisons(orthogonal_csv)[::10][:3]
    principles = [
        Principle.from_text("Select the response that is about a cat rather than a dog."),
        Principle.from_text("Select the response that recommends lemon ice cream."),
    ]
    # One torch thread in both places: float sums depend on the thread count, not on the executor.
    local = vote(pairs, principles, get_llm("local/smollm2", progress=False, shard_size=4, threads=1), mode="logprob")
    executor = RayExecutor(workers=2)
    try:
        remote_llm = get_llm("local/smollm2", progress=False, executor=executor, shard_size=4, threads=1)
        remote = vote(pairs, principles, remote_llm, mode="logprob")
    finally:
        executor.close()
    assert remote == local
    assert remote_llm.usage.calls == 2 * len(pairs)  # a pair's principles are branches of one call per order


def test_faults_in_workers_are_retried_there_counted_here_and_never_become_votes(
    ray_cluster: Any, tmp_path: Path, orthogonal_csv: Path
) -> None:
    from fault_server import FAST_FAULTS, FaultServer

    from icai.embed import get_embedder

    pairs = load_comparisons(orthogonal_csv)
    config = RunConfig(model="openai/fake", embedder="hash", n_clusters=12)

    def through(server: FaultServer, executor: Any, out: Path) -> tuple[Any, Any]:
        store = RunStore(out)
        llm = get_llm(
            "openai/fake", base_url=server.base_url, timeout=5.0, concurrency=2, cache_path=store.cache_path,
            executor=executor, shard_size=16, progress=False,
        )  # fmt: skip
        return run(pairs, llm=llm, embedder=get_embedder("hash", executor=executor), config=config, store=store), llm

    with FaultServer() as clean:
        reference, _ = through(clean, LocalExecutor(), tmp_path / "clean")
    executor = RayExecutor(workers=2)
    try:
        with FaultServer(fault_rate=0.3, faults=FAST_FAULTS, seed=1) as server:
            result, llm = through(server, executor, tmp_path / "ray")
            log = server.entries()
    finally:
        executor.close()
    n_faults = sum(e.outcome in FAST_FAULTS for e in log)
    assert n_faults >= 10
    assert llm.usage.retries == n_faults  # retried in the workers, reported to the driver
    assert llm.usage.calls == len(log) - n_faults == _cache_rows(tmp_path / "ray" / "cache.sqlite")[0]
    assert result.votes == reference.votes and result.constitution.texts == reference.constitution.texts
