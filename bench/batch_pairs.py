"""Batched pairs vs one pair per forward pass: log-prob voting and proposal decoding with the local model.

    .venv/bin/python bench/batch_pairs.py --pairs 8 --block 4 --budgets 65536 --out bench/results/batch_pairs_cpu.json
    # on a GPU machine (random weights in the shipped architecture, from a folder of config and tokenizer files):
    python bench/batch_pairs.py --device cuda --model DIR --random-weights --pairs 64 --block 32 \
        --budgets 262144 1048576 --out batch_pairs_gpu.json

Every setting votes the same pairs with the same 40 principles (the pipeline's default count, both
orders, all principles of a pair as branches of one request per order) on its own provider without a
response cache. The one-pair baseline is `token_budget=1` (each pair-order its own passes, as before
batching); each batched setting packs pairs up to its budget. Settings take turns block by block of
`--block` pairs, in ABBA order, so a change in machine load (other users of a shared machine) hits
all of them alike; the load average is recorded at the start and after every block. Votes of each
batched setting are compared with the baseline's. Then the same for proposal generation (the small
style's first, greedy request of each pair, decoded one prompt at a time vs together).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from local_vote import workload  # noqa: E402

from icai import datasets  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.llm import LLM  # noqa: E402
from icai.llm.local import LocalProvider  # noqa: E402
from icai.prompts import propose_small_request  # noqa: E402
from icai.types import Comparison, Principle, Vote  # noqa: E402
from icai.vote import vote  # noqa: E402


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def random_weights(model: str, out: Path) -> str:
    """The model's architecture with random weights (seed 0), saved in `out`; its config and tokenizer from `model`."""
    from gpu_check import random_causal_lm

    return str(random_causal_lm(Path(model), out))


def margins(votes: Sequence[Vote]) -> list[float | None]:
    return [float(v.raw.removeprefix("margin=")) if v.raw.startswith("margin=") else None for v in votes]


def order(n_settings: int, block: int) -> list[int]:
    """ABBA...: the settings' turn order for one block (reversed on odd blocks)."""
    turns = list(range(n_settings))
    return turns if block % 2 == 0 else turns[::-1]


def run_votes(
    providers: list[LocalProvider], pairs: list[Comparison], principles: list[Principle], block: int, device: str
) -> tuple[list[float], list[list[Vote]], list[list[float]], list[int]]:
    seconds = [0.0] * len(providers)
    computed = [0] * len(providers)
    votes: list[list[Vote]] = [[] for _ in providers]
    loads: list[list[float]] = [list(os.getloadavg())]
    blocks = [pairs[i : i + block] for i in range(0, len(pairs), block)]
    for b, chunk in enumerate(blocks):
        for k in order(len(providers), b):
            llm = LLM(providers[k], progress=False)
            sync(device)
            started = time.perf_counter()
            got = vote(chunk, principles, llm, mode="logprob")
            sync(device)
            seconds[k] += time.perf_counter() - started
            votes[k] += got
            computed[k] += llm.usage.input_tokens - llm.usage.cached_input_tokens
        loads.append(list(os.getloadavg()))
        print(f"block {b + 1}/{len(blocks)}: " + ", ".join(f"{s:.1f}s" for s in seconds), flush=True)
    return seconds, votes, loads, computed


def run_proposals(
    providers: list[LocalProvider], pairs: list[Comparison], block: int, device: str
) -> tuple[list[float], list[list[str]], list[int]]:
    seconds = [0.0] * len(providers)
    texts: list[list[str]] = [[] for _ in providers]
    tokens = [0] * len(providers)
    blocks = [pairs[i : i + block] for i in range(0, len(pairs), block)]
    for b, chunk in enumerate(blocks):
        requests = [
            propose_small_request(c.prompt, [], preferred_excerpt=(c.text_a if c.preferred == "a" else c.text_b)[:300])
            for c in chunk
        ]
        for k in order(len(providers), b):
            llm = LLM(providers[k], progress=False)
            sync(device)
            started = time.perf_counter()
            got = llm.map(requests)
            sync(device)
            seconds[k] += time.perf_counter() - started
            texts[k] += [c.text for c in got]
            tokens[k] += sum(c.output_tokens for c in got)
    return seconds, texts, tokens


def main(argv: Sequence[str] | None = None) -> int:
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="a local model: smollm2, or a folder (with --random-weights: config and tokenizer files)")
    parser.add_argument("--random-weights", action="store_true", help="rebuild the model's architecture with random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--block", type=int, default=4, help="pairs per turn of each setting")
    parser.add_argument("--principles", type=int, default=40)
    parser.add_argument("--budgets", type=int, nargs="+", default=[65536], help="token budgets of the batched settings")
    parser.add_argument("--proposals", type=int, default=None, help="pairs for the proposal timing (default: --pairs; 0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch_pairs_cpu.json")
    args = parser.parse_args(argv)

    work = workload(args.pairs, args.principles)
    if work is None:
        parser.error("synthetic_data_orthogonal_adcbg.csv not found")
    data, pairs, principles = work
    budgets = [1, *args.budgets]
    load_at_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        model = random_weights(args.model, Path(tmp) / "lm") if args.random_weights else args.model
        providers = [LocalProvider(model, device=args.device, token_budget=b) for b in budgets]
        for p in providers:
            p.load()
        vote(pairs[:1], principles[:2], LLM(providers[0], progress=False), mode="logprob")  # warm-up
        seconds, votes, loads, computed = run_votes(providers, pairs, principles, args.block, args.device)
        n_proposals = args.pairs if args.proposals is None else args.proposals
        proposal_rows: list[dict[str, Any]] = []
        if n_proposals:
            p_seconds, p_texts, p_tokens = run_proposals(providers, pairs[:n_proposals], args.block, args.device)
            proposal_rows = [
                {
                    "token_budget": b,
                    "seconds": round(p_seconds[k], 2),
                    "prompts": n_proposals,
                    "seconds_per_prompt": round(p_seconds[k] / n_proposals, 3),
                    "output_tokens": p_tokens[k],
                    "output_tokens_per_s": round(p_tokens[k] / p_seconds[k], 1),
                    "speedup": round(p_seconds[0] / p_seconds[k], 2),
                    "same_text_as_one_at_a_time": sum(a == t for a, t in zip(p_texts[k], p_texts[0], strict=True)),
                }
                for k, b in enumerate(budgets)
            ]
        forward_passes = [p.forward_passes for p in providers]
    units = len(pairs) * len(principles)
    base = margins(votes[0])
    rows = []
    for k, b in enumerate(budgets):
        mine = margins(votes[k])
        diffs = [abs(x - y) for x, y in zip(mine, base, strict=True) if x is not None and y is not None]
        rows.append({
            "token_budget": b,
            "setting": "one pair per pass" if b == 1 else f"batched pairs, token_budget={b}",
            "seconds": round(seconds[k], 2),
            "pairs_principles_per_s": round(units / seconds[k], 2),
            "speedup": round(seconds[0] / seconds[k], 2),
            "forward_passes": forward_passes[k],
            "computed_prompt_tokens": computed[k],
            "computed_prompt_tokens_per_s": round(computed[k] / seconds[k], 1),
            "votes_identical_to_one_pair_per_pass": [v.value for v in votes[k]] == [v.value for v in votes[0]],
            "max_abs_margin_diff": max(diffs) if diffs else None,
        })  # fmt: skip
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/batch_pairs.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": load_at_start, "load_average_after_each_block": loads,
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "model": args.model, "weights": "random, in the shipped architecture" if args.random_weights else "real",
        "device": args.device, "data": datasets.repo_path(data), "pairs": len(pairs), "principles": len(principles),
        "block": args.block, "votes": rows, "proposals": proposal_rows,
    }  # fmt: skip
    write_json_atomic(args.out, report)
    for r in rows:
        print(f"{r['setting']}: {r['pairs_principles_per_s']} pairs·principles/s ({r['speedup']}x), identical votes: {r['votes_identical_to_one_pair_per_pass']}")
    for r in proposal_rows:
        print(f"proposals, token_budget={r['token_budget']}: {r['seconds']} s ({r['speedup']}x), same text: {r['same_text_as_one_at_a_time']}/{r['prompts']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
