"""icai as a terminal program: a live progress bar and tables that fit the width in a pseudo-terminal, plain lines
and no escape codes in a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FAKE = ["--model", "fake/keyword", "--embedder", "hash"]


def _in_pty(args: list[str], *, columns: int, cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run `python -m icai ARGS` with stdin, stdout and stderr on a pseudo-terminal `columns` wide."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal program
        os.chdir(cwd)
        os.environ["COLUMNS"] = str(columns)
        os.environ["LINES"] = "40"
        os.environ.pop("NO_COLOR", None)
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-m", "icai", *args])
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def test_a_run_on_a_terminal_draws_a_live_bar(orthogonal_csv, tmp_path):
    code, text = _in_pty(["run", str(orthogonal_csv), "--out", "r", "--test-size", "0.3", *FAKE], columns=100, cwd=tmp_path)
    assert code == 0, text
    assert "\x1b[" in text and "━" in text  # drawn and redrawn in place
    plain = ANSI.sub("", text)
    for stage in ("stage 1/5 propose", "stage 3/5 vote", "stage 5/5 evaluate"):
        assert stage in plain
    assert re.search(r"\d+/\d+ calls", plain) and "ETA stage" in plain
    assert "INFO icai.progress" not in plain  # the bar replaces the log lines on screen ...
    assert "stage 3/5 vote: 42/42 calls" in (tmp_path / "r" / "run.log").read_text()  # ... run.log keeps them
    assert "Held-out agreement" in plain


def test_a_run_in_a_pipe_logs_plain_lines(orthogonal_csv, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "icai", "run", str(orthogonal_csv), "--out", str(tmp_path / "r"), *FAKE],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr + done.stdout and "━" not in done.stderr
    assert re.search(r"^INFO icai.progress: stage 1/5 propose: 0/30 calls$", done.stderr, re.MULTILINE)
    assert re.search(r"^INFO icai.progress: stage 3/5 vote: 60/60 calls", done.stderr, re.MULTILINE)


@pytest.mark.parametrize("columns", [60, 100])
def test_a_table_fits_the_terminal(tmp_path, columns):
    data = tmp_path / "pairs.csv"
    long = "a response that goes on " * 12
    rows = ["id,prompt,text_a,text_b,preferred_text"]
    rows += [f"{i},Say something.,{long}{i},{'short' if i % 3 else ''},text_a" for i in range(8)]
    rows += ["8,Say something.,same,same,text_a", "8,Say something.,x,y,maybe"]
    data.write_text("\n".join(rows) + "\n")
    code, text = _in_pty(["validate", str(data)], columns=columns, cwd=tmp_path)
    assert code == 2, text
    lines = ANSI.sub("", text).replace("\r", "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("severity"))
    end = next(i for i, line in enumerate(lines) if re.match(r"\d+ errors, \d+ warnings", line))
    table = lines[start:end]
    assert len(table) > 4 and max(len(line) for line in table) <= columns  # cells wrapped inside the width
    assert any("empty text" in line for line in table) and any("bad label" in line for line in table)


@pytest.fixture
def small_run(orthogonal_csv, tmp_path) -> Path:
    """A finished fake run (its constitution) made for the test; its progress is not what these tests read."""
    done = subprocess.run(
        [sys.executable, "-m", "icai", "run", str(orthogonal_csv), "--out", str(tmp_path / "r"), "--test-size", "0.3", *FAKE],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return tmp_path / "r"


COMMANDS = {
    "annotate": (["annotate", "{data}", "--constitution", "{run}", "--out", "{tmp}/a.csv"], "annotate: judge"),
    "evaluate": (["evaluate", "{data}", "--constitution", "{run}"], "judge: constitution"),
}


def _command(name: str, data: Path, run: Path, tmp: Path) -> tuple[list[str], str]:
    args, first = COMMANDS[name]
    return [a.format(data=data, run=run, tmp=tmp) for a in args] + ["--model", "fake/keyword"], first


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_annotate_and_evaluate_on_a_terminal_draw_the_live_bar(name, orthogonal_csv, small_run, tmp_path):
    args, first = _command(name, orthogonal_csv, small_run, tmp_path)
    code, text = _in_pty(args, columns=100, cwd=tmp_path)
    assert code == 0, text
    assert "\x1b[" in text and "━" in text  # the same rich bar as icai run, redrawn in place
    plain = ANSI.sub("", text)
    assert re.search(re.escape(first) + r" .*━.* 60/60 calls", plain), plain
    assert "INFO icai.progress" not in plain  # the bar, not log lines, on a terminal


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_annotate_and_evaluate_in_a_pipe_log_plain_lines(name, orthogonal_csv, small_run, tmp_path):
    args, first = _command(name, orthogonal_csv, small_run, tmp_path)
    done = subprocess.run([sys.executable, "-m", "icai", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr + done.stdout and "\x1b[" not in done.stderr + done.stdout and "━" not in done.stderr
    assert re.search(rf"^INFO icai.progress: {re.escape(first)}: 0/60 calls$", done.stderr, re.MULTILINE), done.stderr
    assert re.search(rf"^INFO icai.progress: {re.escape(first)}: 60/60 calls$", done.stderr, re.MULTILINE)
    assert "icai.progress" not in done.stdout  # progress on stderr, results on stdout
