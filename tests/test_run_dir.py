"""A run directory always describes one run: its dataset and config are stored, another dataset is refused
(unless --overwrite), outputs of stages that no longer apply are removed, a non-run folder is refused,
and a run holds a lock on its directory."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from icai.cli import main
from icai.errors import DataError
from icai.store import LOCK_FILE, RunStore

FAKE = ["--model", "fake/keyword", "--embedder", "hash", "--bootstrap", "0"]


def icai_run(data: Path, out: Path, *options: str) -> int:
    return main(["run", str(data), "--out", str(out), *FAKE, *options])


@pytest.fixture
def other_csv(orthogonal_csv, tmp_path):
    path = tmp_path / "other.csv"
    pd.read_csv(orthogonal_csv).head(20).to_csv(path, index=False)
    return path


def test_the_run_directory_stores_dataset_hash_and_config(orthogonal_csv, tmp_path):
    out = tmp_path / "run"
    assert icai_run(orthogonal_csv, out, "--seed", "3") == 0
    saved = json.loads((out / "config.json").read_text())
    assert len(saved["dataset_hash"]) == 16 and saved["config"]["seed"] == 3 and saved["version"]
    assert saved["config"]["model"] == "fake/keyword"


def test_another_dataset_is_refused_unless_overwrite(orthogonal_csv, other_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert icai_run(orthogonal_csv, out) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != LOCK_FILE}
    capsys.readouterr()
    assert icai_run(other_csv, out) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds a run on another dataset" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != LOCK_FILE} == before  # untouched

    assert icai_run(other_csv, out, "--overwrite") == 0
    assert len(pd.read_csv(out / "comparisons.csv")) == 20
    assert json.loads((out / "constitution.json").read_text())["n_train"] == 20


def test_dropped_options_remove_the_outputs_that_no_longer_apply(orthogonal_csv, tmp_path):
    out = tmp_path / "run"
    assert icai_run(orthogonal_csv, out, "--test-size", "0.3", "--flip-check") == 0
    for name in ("evaluation.json", "test_votes.csv", "flipped"):
        assert (out / name).exists(), name
    assert icai_run(orthogonal_csv, out) == 0
    for name in ("evaluation.json", "test_votes.csv", "flipped"):
        assert not (out / name).exists(), name
    assert "evaluation.json is missing" in (out / "report.html").read_text()
    assert json.loads((out / "constitution.json").read_text())["n_test"] == 0


def test_a_changed_config_removes_the_old_result_before_the_rerun(orthogonal_csv, tmp_path):
    store = RunStore(tmp_path / "run")
    store.begin(dataset_hash="d1", config={"seed": 0}, version="v")
    store.release()
    for name in ("constitution.json", "report.html", "votes.csv"):
        (store.path / name).write_text("{}")
    store.begin(dataset_hash="d1", config={"seed": 0}, version="v")  # resume: nothing removed
    store.release()
    assert (store.path / "constitution.json").exists()
    store.begin(dataset_hash="d1", config={"seed": 1}, version="v")
    store.release()
    assert not (store.path / "constitution.json").exists() and not (store.path / "report.html").exists()
    assert (store.path / "votes.csv").exists()  # stage files stay; their fingerprints decide reuse


def test_a_folder_that_is_not_a_run_is_refused_and_left_alone(orthogonal_csv, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert icai_run(orthogonal_csv, out) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "holds no icai run (notes.txt)" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert icai_run(orthogonal_csv, empty) == 0


HOLDER = textwrap.dedent(
    """
    import sys
    from icai.store import RunStore
    store = RunStore(sys.argv[1])
    store.begin(dataset_hash="held", config={}, version="test")
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes stdin
    store.release()
    """
)


def test_a_second_run_into_a_locked_directory_is_refused_naming_the_holder(orthogonal_csv, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert (out / LOCK_FILE).read_text().strip() == str(holder.pid)
        proc = subprocess.run(
            [sys.executable, "-m", "icai.cli", "run", str(orthogonal_csv), "--out", str(out), *FAKE, "--seed", "1"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and f"in use by another icai run (pid {holder.pid})" in proc.stderr
        assert json.loads((out / "config.json").read_text())["dataset_hash"] == "held"  # the holder's run, untouched
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    # once released, the directory can be taken (here: refused only because it holds another dataset)
    with pytest.raises(DataError, match="another dataset"):
        RunStore(out).begin(dataset_hash="other", config={}, version="test")


def test_the_lock_is_released_after_a_run(orthogonal_csv, tmp_path):
    out = tmp_path / "run"
    assert icai_run(orthogonal_csv, out) == 0
    store = RunStore(out)
    assert store.lock() is True
    store.release()


def test_the_python_api_owns_a_run_directory_as_the_cli_does(orthogonal_csv, tmp_path):
    """icai.run_to_directory: lock, cache, log and report as `icai run` makes them; everything released after."""
    import logging

    import icai
    from icai.embed import HashingEmbedder
    from icai.llm import LLM
    from icai.llm.fake import fake_provider

    comparisons = icai.load_comparisons(orthogonal_csv)
    config = icai.RunConfig(model="fake/keyword", embedder="hash/256", bootstrap=0, test_size=0.3)
    handlers = list(logging.getLogger().handlers)
    level = logging.getLogger("icai").level

    def api_run(out: Path) -> icai.DirectoryRun:
        llm = LLM(fake_provider("keyword"))
        done = icai.run_to_directory(out, comparisons, llm=llm, embedder=HashingEmbedder(), config=config)
        assert llm.cache is None  # the run's cache was closed and taken off the model
        return done

    done = api_run(tmp_path / "api")
    assert icai_run(orthogonal_csv, tmp_path / "cli", "--test-size", "0.3") == 0
    for name in ("constitution.json", "votes.csv", "report.html", "run.log", "cache.sqlite", "checkpoints.json"):
        assert (tmp_path / "api" / name).is_file(), name
    assert done.path == tmp_path / "api" and done.analysis is None
    assert [p.text for p in done.result.constitution.principles] == [
        p.text for p in icai.Constitution.load(tmp_path / "cli" / "constitution.json").principles
    ]
    assert "INFO icai.cluster: cluster:" in (tmp_path / "api" / "run.log").read_text(encoding="utf-8")
    assert logging.getLogger().handlers == handlers and logging.getLogger("icai").level == level
    # released: a second run can take the directory; it resumes, answering every call from the run's cache
    again = api_run(tmp_path / "api")
    assert again.result.usage["calls"] == 0 and again.result.usage["cache_hits"] > 0
    store = RunStore(tmp_path / "api")
    assert store.lock()
    try:
        with pytest.raises(DataError, match="in use by another icai run"):
            api_run(tmp_path / "api")
    finally:
        store.release()
