"""Bad input through the real CLI: exit code 2, one line naming the problem, no traceback, no output file."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fault_server import FaultServer

from icai.cli import main
from icai.errors import EXIT_BUDGET, EXIT_USAGE

GOOD_ROWS = [
    ("1", "Write about a pet.", "A cat sat on the mat.", "A dog sat on the mat.", "text_a"),
    ("2", "Write about a pet.", "My bird sings.", "My dog barks at the cat.", "text_b"),
    ("3", "Write about a pet.", "The cat naps all day.", "The dog runs all day.", "text_a"),
]


def icai_csv(
    rows: list[tuple[str, ...]], header: tuple[str, ...] = ("id", "prompt", "text_a", "text_b", "preferred_text")
) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@dataclass
class Case:
    data: str | bytes | None
    """The input file's content; None: no file."""
    expect: str
    """A part of the one-line message that names the problem."""
    name: str = "data.csv"
    args: list[str] = field(default_factory=list)
    out: Callable[[Path], Path] = lambda tmp: tmp / "run"
    run_dir_allowed: bool = False
    """Whether the run directory may exist afterwards (only once the run has started)."""
    names_file: bool = True
    """Whether the message names the input file (problems in the data do)."""
    code: int = EXIT_USAGE
    """The exit code: bad input or option (2); a spent budget has its own (3)."""

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        if self.data is not None:
            path.write_bytes(self.data if isinstance(self.data, bytes) else self.data.encode())
        return path


GOOD = icai_csv(GOOD_ROWS)

CASES: dict[str, Case] = {
    "empty file": Case("", "file is empty"),
    "missing columns": Case("text_a,preferred_text\nhello,text_a\n", "missing required column(s) 'text_b'"),
    "ties only": Case(icai_csv([(*r[:4], "tie") for r in GOOD_ROWS]), "no usable comparisons in 3 rows (3 ties"),
    "duplicate ids": Case(icai_csv([GOOD_ROWS[0], GOOD_ROWS[1], ("1", *GOOD_ROWS[2][1:])]), "duplicate id '1'"),
    "empty text": Case(
        icai_csv([GOOD_ROWS[0], ("2", "Write.", "", "Some text.", "text_a")]), "row 2, column 'text_a': text is empty"
    ),
    "NaN text": Case(
        '{"chosen": NaN, "rejected": "A dog."}\n', "line 1, column 'chosen': text is missing", name="data.jsonl"
    ),
    "preferred not a/b": Case(icai_csv([GOOD_ROWS[0], (*GOOD_ROWS[1][:4], "c")]), "preferred value 'c' is not one of"),
    "non-UTF-8 bytes": Case(GOOD.encode() + b"4,Write.,caf\xe9,the dog,text_a\n", "not valid UTF-8"),
    "malformed AnnotatedPairs JSON": Case(
        '{"metadata": {"default_annotator": "x"}, "comparisons": [{"id": "1", "response_a": ',
        "malformed JSON",
        name="pairs.json",
    ),
    "AnnotatedPairs without annotator": Case(
        json.dumps({"metadata": {}, "comparisons": []}), "missing key 'metadata.default_annotator'", name="pairs.json"
    ),
    "missing file": Case(None, "file not found"),
    "unknown format": Case(GOOD, "unknown format 'xml'", args=["--format", "xml"]),
    "unknown model provider": Case(
        GOOD, "unknown model provider 'nosuch'", args=["--model", "nosuch/model"], names_file=False
    ),
    "missing API key": Case(
        GOOD, "needs an API key: set OPENAI_API_KEY", args=["--model", "openai/gpt-4o-mini"], names_file=False
    ),
    "unknown embedder": Case(GOOD, "unknown embedder 'word2vec'", args=["--embedder", "word2vec"], names_file=False),
    "test size out of range": Case(
        GOOD, "--test-size must lie in [0, 1)", args=["--test-size", "1.5"], names_file=False
    ),
    "cost budget for an unpriced model": Case(
        GOOD,
        "no price is known for openai/my-local-llama",
        args=["--model", "openai/my-local-llama", "--base-url", "http://127.0.0.1:9/v1", "--max-cost", "1"],
        names_file=False,
    ),
    "unwritable output directory": Case(
        GOOD, "output directory is not writable", out=lambda tmp: tmp / "data.csv" / "run", names_file=False
    ),
    "call budget exceeded": Case(
        GOOD, "call budget of 2 calls is spent", args=["--max-calls", "2"], run_dir_allowed=True, names_file=False,
        code=EXIT_BUDGET,
    ),
}


def assert_clean_refusal(rc: int, out: str, err: str, expect: str, tmp_path: Path, code: int = EXIT_USAGE) -> None:
    assert rc == code, err
    assert "Traceback" not in out + err
    messages = [line for line in err.splitlines() if line.startswith("icai:")]
    assert len(messages) == 1 and messages[0] == err.strip().splitlines()[-1], err
    prefix = "icai: budget reached: " if code == EXIT_BUDGET else "icai: error: "
    assert messages[0].startswith(prefix) and expect in messages[0]
    assert not list(tmp_path.rglob("constitution.json"))


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_refused_in_one_line(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    data = case.write(tmp_path)
    out = case.out(tmp_path)
    argv = ["run", str(data), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash", *case.args]
    rc = main(argv)
    captured = capsys.readouterr()
    assert_clean_refusal(rc, captured.out, captured.err, case.expect, tmp_path, case.code)
    if not case.run_dir_allowed:
        assert not out.exists(), "a refused run left a run directory behind"
    if case.names_file:
        assert f"icai: error: {data}" in captured.err


@pytest.mark.parametrize("case", ["non-UTF-8 bytes", "call budget exceeded"])
def test_bad_input_in_a_real_process_has_no_traceback(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    data = spec.write(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "icai.cli", "run", str(data), "--out", str(tmp_path / "run")]
        + ["--model", "fake/keyword", "--embedder", "hash", *spec.args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_refusal(done.returncode, done.stdout, done.stderr, spec.expect, tmp_path, spec.code)


def test_a_5_mb_response_is_cut_with_a_warning_and_the_run_works(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy")
    huge = "A cat " + "sat on a very long mat " * 220_000  # 5 MB in one response
    assert len(huge) > 5_000_000
    data = tmp_path / "data.csv"
    data.write_text(icai_csv([("1", "Write about a pet.", huge, "A dog sat.", "text_a"), *GOOD_ROWS[1:]]))
    out = tmp_path / "run"
    with FaultServer() as server:
        rc = main(
            [
                "run",
                str(data),
                "--out",
                str(out),
                "--model",
                "openai/fake",
                "--base-url",
                server.base_url,
                "--embedder",
                "hash",
            ]
        )
        sizes = [e.size for e in server.entries()]
    assert rc == 0, capsys.readouterr().err
    assert "1 comparisons have a response longer than 6000 characters" in caplog.text
    assert sizes and max(sizes) < 50_000  # the prompt holds the response's head and tail only
    assert json.loads((out / "constitution.json").read_text())["n_train"] == 3
