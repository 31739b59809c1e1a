"""How fast log-prob voting could be on this CPU: the vote path's arithmetic against the machine's own
matrix-product rate (issue 20's CPU target).

    .venv/bin/python bench/vote_bound.py --pairs 6 --out bench/results/vote_bound_cpu.json

1. **Matrix-product rate** of this CPU in float32 and bfloat16, on the packaged SmolLM2-135M's own
   shapes (a pass of ~1,000 token rows through its 576 x 1536 MLP and 576 x 576 attention
   projections), best of `--reps`.
2. **Votes, one pair per pass**, the pipeline's 40 principles, both orders, in float32: the previous
   one-pair path (branches in request order, 32 then 8 rows; the output head on every position
   some row ends at) and the current one (sorted by length, two passes of 20; the head on one
   position per row), pair by pair in alternating order so both see the same load; their votes are
   compared.
3. **Where the current path's time goes** (torch profiler over one more pass of the same pairs):
   matrix products vs the rest, and the FLOPs of every linear layer counted by forward hooks
   (padding included) against the tokens the votes need (padding excluded).
   - The **bound**: no implementation that computes those tokens in float32 can take less than their
     linear-layer FLOPs divided by the machine's float32 matrix-product rate, even with zero
     padding, zero attention and zero overhead. Measured time over that is the most any batching
     or kernel work could gain in float32.
4. **bfloat16**: the same votes with the model in bfloat16 (what the machine's bfloat16 units would
   allow), their rate and how many of them equal the float32 votes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from batch_pairs import margins  # noqa: E402
from local_vote import workload  # noqa: E402

from icai import datasets  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.llm import LLM  # noqa: E402
from icai.llm.base import Completion  # noqa: E402
from icai.llm.local import MAX_BATCH, LocalProvider, _Branches, _joined  # noqa: E402
from icai.types import Principle, Vote  # noqa: E402
from icai.vote import vote  # noqa: E402


class Previous(LocalProvider):
    """The one-pair path before this script (commit d8343e9): branches chunked in request order
    (MAX_BATCH rows, then the rest), and the output head run on every position some row ends at."""

    def _branched_encoded(self, item: _Branches) -> Completion:
        scored: list[Completion] = []
        for lo in range(0, len(item.subs), MAX_BATCH):
            scored += self._score_group(item.encoded[lo : lo + MAX_BATCH], item.shared, item.subs[lo : lo + MAX_BATCH])
        return _joined(scored)

    def _rows_logits(self, last: list[int], **inputs: Any) -> Any:
        import torch

        index_of = torch.tensor(last, device=self._device)
        kwargs: dict[str, Any] = {}
        keep_keyword = next(iter(self._forward_kwargs), None)
        if keep_keyword is not None:
            kept, index_of = torch.unique(index_of, return_inverse=True)
            kwargs[keep_keyword] = kept
        out = self._forward(**inputs, **kwargs)
        return out.logits[torch.arange(len(last), device=self._device), index_of]


def matmul_rates(dtypes: Sequence[str], rows: int, reps: int) -> dict[str, dict[str, float]]:
    """GFLOP/s of one pass's matrix products at the model's shapes, best of `reps`, per dtype."""
    import torch

    shapes = {
        "mlp up (rows x 576 x 1536)": (576, 1536),
        "mlp down (rows x 1536 x 576)": (1536, 576),
        "attention (rows x 576 x 576)": (576, 576),
    }
    out: dict[str, dict[str, float]] = {}
    gen = torch.Generator().manual_seed(0)
    for name in dtypes:
        dtype = getattr(torch, name)
        out[name] = {}
        for label, (k, n) in shapes.items():
            a = torch.randn(rows, k, generator=gen).to(dtype)
            b = torch.randn(k, n, generator=gen).to(dtype)
            best = float("inf")
            for _ in range(reps + 2):
                start = time.perf_counter()
                for _ in range(10):
                    a @ b
                best = min(best, (time.perf_counter() - start) / 10)
            out[name][label] = round(2 * rows * k * n / best / 1e9, 1)
    return out


def timed_votes(
    provider: LocalProvider, pairs: list[Any], principles: list[Principle]
) -> tuple[float, list[Vote], int]:
    llm = LLM(provider, progress=False)
    provider.forget_prefix()
    start = time.perf_counter()
    got = vote(pairs, principles, llm, mode="logprob")
    return time.perf_counter() - start, got, llm.usage.input_tokens - llm.usage.cached_input_tokens


def linear_flops(model: Any) -> tuple[list[float], Any]:
    """A counter of every linear layer's FLOPs (2 x in x out per input row), and its hooks' handles."""
    import torch

    total = [0.0]

    def hook(module: Any, inputs: Any, _output: Any) -> None:
        x = inputs[0]
        total[0] += 2.0 * module.in_features * module.out_features * (x.numel() / x.shape[-1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return total, handles


def decoder_linear_params(model: Any) -> tuple[int, int]:
    """Weights of the decoder layers' linear layers (computed for every token) and of the output head."""
    import torch

    head = model.get_output_embeddings()
    layers = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    return layers, head.weight.numel()


def main(argv: Sequence[str] | None = None) -> int:
    import torch
    import transformers
    from torch.profiler import ProfilerActivity, profile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--principles", type=int, default=40)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vote_bound_cpu.json")
    args = parser.parse_args(argv)

    work = workload(args.pairs, args.principles)
    if work is None:
        parser.error("synthetic_data_orthogonal_adcbg.csv not found")
    data, pairs, principles = work
    load_at_start = list(os.getloadavg())

    rates = matmul_rates(["float32", "bfloat16"], rows=1000, reps=args.reps)
    print("matrix products, GFLOP/s:", rates, flush=True)

    settings = {
        "previous (d8343e9): in order, 32 + 8 rows, head at every end position": Previous("smollm2", token_budget=1),
        "current: sorted, 20 + 20 rows, head at one position per row": LocalProvider("smollm2", token_budget=1),
    }
    for p in settings.values():
        p.load()
        vote(pairs[:1], principles[:2], LLM(p, progress=False), mode="logprob")  # warm-up
    seconds = dict.fromkeys(settings, 0.0)
    votes: dict[str, list[Vote]] = {k: [] for k in settings}
    computed = dict.fromkeys(settings, 0)
    for n, pair in enumerate(pairs):
        for name in list(settings) if n % 2 == 0 else list(settings)[::-1]:
            s, got, tokens = timed_votes(settings[name], [pair], principles)
            seconds[name] += s
            votes[name] += got
            computed[name] += tokens
        print(f"pair {n + 1}/{len(pairs)}: " + ", ".join(f"{s:.1f}s" for s in seconds.values()), flush=True)
    units = len(pairs) * len(principles)
    previous, current = list(settings)
    base = margins(votes[previous])
    vote_rows = [
        {
            "setting": name,
            "seconds": round(seconds[name], 2),
            "pairs_principles_per_s": round(units / seconds[name], 2),
            "speedup_vs_previous": round(seconds[previous] / seconds[name], 2),
            "computed_prompt_tokens": computed[name],
            "votes_identical_to_previous": [v.value for v in votes[name]] == [v.value for v in votes[previous]],
            "max_abs_margin_diff": max(abs(a - b) for a, b in zip(margins(votes[name]), base, strict=True) if a is not None and b is not None),
        }
        for name in settings
    ]  # fmt: skip

    provider = settings[current]
    model = provider._model
    flops, handles = linear_flops(model)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled_s, _, needed_tokens = timed_votes(provider, pairs, principles)
    for h in handles:
        h.remove()
    events = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    matmul_s = events.get("aten::mm", 0.0) + events.get("aten::addmm", 0.0) + events.get("aten::bmm", 0.0)
    layer_params, head_params = decoder_linear_params(model)
    votes_asked = units * 2  # each principle, in both orders: one scored position each
    needed_flops = 2.0 * layer_params * needed_tokens + 2.0 * head_params * votes_asked
    fp32_rate = max(rates["float32"].values()) * 1e9
    bound_s = needed_flops / fp32_rate
    profile_row = {
        "seconds_with_profiler": round(profiled_s, 2),
        "profiled_cpu_seconds": round(sum(events.values()), 2),
        "matrix_product_seconds": round(matmul_s, 2),
        "matrix_product_share": round(matmul_s / sum(events.values()), 3),
        "top_ops_seconds": {k: round(v, 3) for k, v in sorted(events.items(), key=lambda kv: -kv[1])[:8]},
        "linear_gflop_computed": round(flops[0] / 1e9, 1),
        "linear_gflop_needed": round(needed_flops / 1e9, 1),
        "padding_share_of_linear_flops": round(1 - needed_flops / flops[0], 3),
        "matrix_product_gflop_per_s_achieved": round(flops[0] / matmul_s / 1e9, 1),
        "decoder_linear_params": layer_params,
        "output_head_params": head_params,
        "needed_prompt_tokens": needed_tokens,
    }
    current_s = seconds[current] / len(pairs)
    bound = {
        "float32_matrix_product_gflop_per_s": round(fp32_rate / 1e9, 1),
        "seconds_per_pair_measured": round(current_s, 2),
        "seconds_per_pair_float32_floor": round(bound_s / len(pairs), 2),
        "most_speedup_in_float32_over_current": round(current_s / (bound_s / len(pairs)), 2),
        "most_speedup_in_float32_over_previous": round(seconds[previous] / bound_s, 2),
        "formula": "floor = (2 x decoder linear params x needed prompt tokens + 2 x head params x votes asked) / float32 matrix-product rate",
    }
    print("bound:", bound, flush=True)

    bf16 = LocalProvider("smollm2", token_budget=1, dtype="bfloat16")
    bf16.load()
    vote(pairs[:1], principles[:2], LLM(bf16, progress=False), mode="logprob")
    bf16_s, bf16_votes, _ = timed_votes(bf16, pairs, principles)
    same = sum(a.value == b.value for a, b in zip(bf16_votes, votes[current], strict=True))
    diffs = [
        abs(a - b)
        for a, b in zip(margins(bf16_votes), margins(votes[current]), strict=True)
        if a is not None and b is not None
    ]
    bf16_row = {
        "seconds": round(bf16_s, 2),
        "pairs_principles_per_s": round(units / bf16_s, 2),
        "speedup_vs_float32_current": round(seconds[current] / bf16_s, 2),
        "votes": len(bf16_votes),
        "votes_equal_to_float32": same,
        "max_abs_margin_diff": round(max(diffs), 4),
        "mean_abs_margin_diff": round(sum(diffs) / len(diffs), 4),
        "float32_median_abs_margin": round(
            statistics.median(abs(m) for m in margins(votes[current]) if m is not None), 4
        ),
    }

    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/vote_bound.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "load_average_at_start": load_at_start, "load_average_at_end": list(os.getloadavg()),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "model": "smollm2 (packaged SmolLM2-135M), float32 unless said", "data": datasets.repo_path(data),
        "pairs": len(pairs), "principles": len(principles),
        "matrix_product_gflop_per_s": rates, "votes": vote_rows, "profile_current": profile_row,
        "float32_bound": bound, "bfloat16": bf16_row,
    }  # fmt: skip
    write_json_atomic(args.out, report)
    for r in vote_rows:
        print(
            f"{r['setting']}: {r['pairs_principles_per_s']} pairs·principles/s ({r['speedup_vs_previous']}x), identical votes: {r['votes_identical_to_previous']}"
        )
    print(f"float32 floor: at most {bound['most_speedup_in_float32_over_previous']}x the previous one-pair rate")
    print(
        f"bfloat16: {bf16_row['pairs_principles_per_s']} pairs·principles/s, {same}/{len(bf16_votes)} votes equal to float32"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
