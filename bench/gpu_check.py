"""The local model and the embedder on a GPU: do the CUDA paths agree with themselves, and how fast are they?

Meant for a lent GPU machine that has torch, transformers and sentence-transformers but no
network and no room for the packaged weights (the SmolLM2 GGUF and MiniLM are 94 and 88 MB,
over what travels). So both models are rebuilt there **with random weights in the shipped
architectures**, from their config and tokenizer files: speed does not depend on weight
values, and the checks compare icai's code paths with each other, not with the real
model's answers. Checks, on each device:

- branched log-prob calls (a pair's rules in one request) against one call per rule;
- KV prefix reuse against encoding every prompt afresh, and generation with prefix reuse
  against generation without;
- log-prob voting throughput (`icai.vote.vote`, both orders, all rules as branches) in
  pairs x principles per second;
- embedding and clustering time for 10k and 50k principle texts (bench/cluster_scale.py's texts).

    python bench/gpu_check.py --smollm2 DIR --minilm DIR --data CSV --out gpu_check.json

DIR holds config and tokenizer files only; docs/benchmarks.md ("On a GPU") says how they were collected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from cluster_scale import Precomputed, principle_texts  # noqa: E402

from icai.cluster import cluster  # noqa: E402
from icai.embed import get_embedder  # noqa: E402
from icai.io import load_comparisons  # noqa: E402
from icai.llm import LLM  # noqa: E402
from icai.llm.local import LocalProvider  # noqa: E402
from icai.prompts import vote_branches_request, vote_one_request  # noqa: E402
from icai.types import Principle  # noqa: E402
from icai.vote import vote  # noqa: E402

RULES = [
    "Select the response that is about a cat rather than a dog.",
    "Select the response that recommends lemon ice cream.",
    "Select the response that suggests a blue t-shirt.",
    "Select the response that is shorter.",
    "Select the response that uses more formal language.",
    "Select the response that tells a funnier story.",
]


def random_causal_lm(files: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(files))
    model.save_pretrained(out)
    for f in files.iterdir():
        if f.is_file() and not (out / f.name).exists():
            shutil.copy(f, out / f.name)
    return out


def random_sentence_transformer(files: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    shutil.copytree(files, out)
    AutoModel.from_config(AutoConfig.from_pretrained(files)).save_pretrained(out)
    return out


def max_diff(a: list[dict[str, float] | None], b: list[dict[str, float] | None]) -> float:
    return max(abs(x[k] - y[k]) for x, y in zip(a, b, strict=True) if x and y for k in ("A", "B"))


def check_llm(folder: Path, device: str, pairs: list[Any], n_pairs: int, n_principles: int) -> dict[str, Any]:
    import torch

    provider = LocalProvider(str(folder), device=device)
    provider.load()
    out: dict[str, Any] = {"device": device, "dtype": str(next(provider._model.parameters()).dtype)}
    pair = pairs[0]
    # branched vs one call per rule, without prefix reuse for the single calls
    provider.prefix_cache = False
    single = [provider.complete(vote_one_request(pair.prompt, pair.text_a, pair.text_b, r)) for r in RULES]
    provider.prefix_cache = True
    provider.forget_prefix()
    branched = provider.complete(vote_branches_request(pair.prompt, pair.text_a, pair.text_b, RULES))
    out["branched_vs_single_max_abs_logprob_diff"] = max_diff(list(branched.branch_logprobs or ()), [c.choice_logprobs for c in single])  # type: ignore[misc]
    reused = [provider.complete(vote_one_request(pair.prompt, pair.text_a, pair.text_b, r)) for r in RULES]
    out["prefix_reuse_vs_fresh_max_abs_logprob_diff"] = max_diff([c.choice_logprobs for c in reused], [c.choice_logprobs for c in single])  # type: ignore[misc]
    out["prefix_reused_tokens"] = [c.cached_input_tokens for c in reused]
    provider.prefix_cache = False
    fresh_generation = provider.complete(_generation(pair))
    provider.prefix_cache = True
    provider.complete(_generation(pair))
    again = provider.complete(_generation(pair))
    out["generation_same_text_with_reuse"] = again.text == fresh_generation.text
    out["generation_reused_tokens"] = again.cached_input_tokens

    principles = [Principle.from_text(f"{RULES[i % len(RULES)][:-1]} (variant {i}).") for i in range(n_principles)]
    llm = LLM(provider, progress=False)
    subset = pairs[:n_pairs]
    vote(subset[:1], principles[:2], llm, mode="logprob")  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    calls_before = llm.usage.calls
    started = time.perf_counter()
    votes = vote(subset, principles, llm, mode="logprob")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    out["vote"] = {
        "pairs": len(subset), "principles": n_principles, "seconds": round(seconds, 2),
        "calls": llm.usage.calls - calls_before, "pairs_principles_per_s": round(len(votes) / seconds, 1),
        "invalid": sum(v.value == "invalid" for v in votes),
    }  # fmt: skip
    return out


def _generation(pair: Any) -> Any:
    return dataclasses.replace(vote_one_request(pair.prompt, pair.text_a, pair.text_b, RULES[0]), choices=(), max_tokens=16)


def check_embedder(folder: Path, device: str, sizes: list[int]) -> dict[str, Any]:
    import torch

    embedder = get_embedder(f"st/{folder}", device=device)
    embedder.encode(["warm up"])
    rows = []
    for n in sizes:
        texts = principle_texts(n)
        started = time.perf_counter()
        vectors = embedder.encode(texts)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        encode_s = time.perf_counter() - started
        principles = [Principle.from_text(t) for t in texts]
        started = time.perf_counter()
        cluster(principles, Precomputed(texts, vectors), n_clusters=40, seed=0)
        rows.append({"n": n, "encode_s": round(encode_s, 2), "cluster_s": round(time.perf_counter() - started, 2)})
    return {"device": device, "rows": rows}


def main() -> int:
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smollm2", type=Path, required=True)
    parser.add_argument("--minilm", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--cpu-pairs", type=int, default=6)
    parser.add_argument("--principles", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000], help="texts to embed (CPU: the first only)")
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    args = parser.parse_args()
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "weights": "random, in the shipped architectures (see module docstring)",
    }  # fmt: skip
    pairs = load_comparisons(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        lm = random_causal_lm(args.smollm2, Path(tmp) / "lm")
        st = random_sentence_transformer(args.minilm, Path(tmp) / "st")
        report["llm"], report["embed"] = [], []
        for device in args.devices:
            gpu = device.startswith("cuda")
            report["llm"].append(check_llm(lm, device, pairs, args.pairs if gpu else args.cpu_pairs, args.principles))
            print(json.dumps(report["llm"][-1]), flush=True)
            report["embed"].append(check_embedder(st, device, args.sizes if gpu else args.sizes[:1]))
            print(json.dumps(report["embed"][-1]), flush=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
