"""Benchmark local voting: generated JSON vs log-prob scoring, with and without KV prefix reuse and batching.

Run: .venv/bin/python bench/local_vote.py [--pairs N] [--principles 5|40] [--modes 0,1,2,3]

Prints a markdown table and writes bench/results/local_vote.json. Every mode
votes the same pairs and principles with the packaged SmolLM2 on a fresh LLM
without a response cache, after the model is loaded, so the timings are
model work only. The modes take turns pair by pair, so a change in machine
load during the run affects all of them alike.
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

import torch
import transformers

from icai import datasets
from icai.config import RunConfig
from icai.files import write_json_atomic
from icai.io import load_comparisons
from icai.llm.base import Capabilities, Completion, Request
from icai.llm.client import LLM
from icai.llm.local import LocalProvider
from icai.prompts import vote_one_request
from icai.types import Comparison, Principle, Vote
from icai.vote import VoteMode, debiased_margin, order_margin, vote

ROOT = Path(__file__).resolve().parents[1]
DATA = datasets.path("synthetic-orthogonal")

# (principle, keyword of the prompts it is relevant to, or None for a distractor)
PRINCIPLES: tuple[tuple[str, str | None], ...] = (
    ("Select the response that is about a cat rather than a dog.", "pet"),
    ("Select the response that recommends the blue t-shirt rather than the green one.", "t-shirt"),
    ("Select the response that recommends lemon ice cream.", "ice cream"),
    ("Select the response that uses more exclamation marks.", None),
    ("Select the response that is written in a more formal tone.", None),
)

# More distractors, of the kinds proposers write, for runs at the pipeline's default of 40
# clustered principles (RunConfig.n_clusters); `--principles 40` uses PRINCIPLES + these.
DISTRACTORS: tuple[str, ...] = (
    "Select the response that is shorter.",
    "Select the response that is longer and more detailed.",
    "Select the response that gives a concrete example.",
    "Select the response that asks the user a follow-up question.",
    "Select the response that uses a list or bullet points.",
    "Select the response that mentions a price.",
    "Select the response that mentions a specific place.",
    "Select the response that uses simpler words.",
    "Select the response that sounds more enthusiastic.",
    "Select the response that apologises.",
    "Select the response that refers to the user by name.",
    "Select the response that includes a number.",
    "Select the response that gives a reason for its choice.",
    "Select the response that is more polite.",
    "Select the response that uses the first person.",
    "Select the response that tells a personal story.",
    "Select the response that mentions the weather.",
    "Select the response that mentions food.",
    "Select the response that mentions a colour.",
    "Select the response that mentions an animal.",
    "Select the response that is more humorous.",
    "Select the response that is more cautious.",
    "Select the response that avoids repeating the prompt.",
    "Select the response that ends with a question mark.",
    "Select the response that mentions a family member.",
    "Select the response that uses past tense.",
    "Select the response that makes a recommendation.",
    "Select the response that expresses a strong opinion.",
    "Select the response that mentions time or a date.",
    "Select the response that sounds more confident.",
    "Select the response that uses fewer adjectives.",
    "Select the response that mentions clothing.",
    "Select the response that mentions a dessert.",
    "Select the response that mentions a pet.",
    "Select the response that is easier to read.",
)

# (label, vote mode, prefix reuse, batched scoring through complete_many)
MODES: tuple[tuple[str, VoteMode, bool, bool], ...] = (
    ("generate", "generate", False, False),
    ("logprob, no prefix reuse", "logprob", False, False),
    ("logprob, prefix reuse", "logprob", True, False),
    ("logprob, prefix reuse, batched", "logprob", True, True),
)


class Recorder:
    """A provider wrapper that keeps every completion by request cache key."""

    def __init__(self, provider: LocalProvider) -> None:
        self.provider = provider
        self.model = provider.model
        # log-probs only: no branches, no complete_many (BatchRecorder adds it)
        self.capabilities = Capabilities(choice_logprobs=True, logprob_votes=True)
        self.completions: dict[str, Completion] = {}

    def complete(self, request: Request) -> Completion:
        completion = self.provider.complete(request)
        self.completions[request.cache_key(self.model)] = completion
        return completion


class BatchRecorder(Recorder):
    """A Recorder that also passes the provider's complete_many on, so LLM.map batches."""

    def __init__(self, provider: LocalProvider) -> None:
        super().__init__(provider)
        self.capabilities = Capabilities(choice_logprobs=True, logprob_votes=True, batching=True)

    def complete_many(self, requests: Sequence[Request]) -> list[Completion]:
        completions = self.provider.complete_many(requests)
        for request, completion in zip(requests, completions, strict=True):
            self.completions[request.cache_key(self.model)] = completion
        return completions


def spread(comparisons: Sequence[Comparison], n: int) -> list[Comparison]:
    """n pairs taken round-robin over the prompts, so every hidden rule is covered."""
    groups: dict[str, list[Comparison]] = {}
    for c in comparisons:
        groups.setdefault(c.prompt, []).append(c)
    picked: list[Comparison] = []
    queues = [list(g) for g in groups.values()]
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def workload(n_pairs: int, n_principles: int) -> tuple[Path, list[Comparison], list[Principle]] | None:
    """The throughput benchmarks' work: `n_pairs` spread over the synthetic orthogonal set, and the
    first `n_principles` of PRINCIPLES then DISTRACTORS; None when the data file is missing."""
    data = DATA
    if not data.exists():
        return None
    texts = [t for t, _ in PRINCIPLES] + list(DISTRACTORS)
    return data, spread(load_comparisons(data), n_pairs), [Principle.from_text(t) for t in texts[:n_principles]]


def rate(num: int, den: int) -> float | None:
    return num / den if den else None


def per_order_slot_a(
    mode: VoteMode, votes: Sequence[Vote], recorder: Recorder, by_id: dict[str, Comparison], texts: dict[str, str]
) -> tuple[int, int, int, int, float | None]:
    """(slot-A picks, decisive per-order picks, side-a final votes, decisive final votes, mean order margin)."""
    slot_a = shown = side_a = final = 0
    margins: list[float] = []
    for v in votes:
        c = by_id[v.comparison_id]
        if mode == "generate":
            # picks are translated to sides: order 1 shows a first, order 2 shows b first.
            for pick, first in zip(v.picks, ("a", "b"), strict=False):
                if pick in ("a", "b"):
                    shown += 1
                    slot_a += pick == first
            side = {"for": c.preferred, "against": "b" if c.preferred == "a" else "a"}.get(v.value)
            if side is not None:
                final += 1
                side_a += side == "a"
            continue
        text = texts[v.principle_id]
        orders = (
            vote_one_request(c.prompt, c.text_a, c.text_b, text),
            vote_one_request(c.prompt, c.text_b, c.text_a, text),
        )
        as_shown, swapped = (recorder.completions[r.cache_key(recorder.model)].choice_logprobs for r in orders)
        for lp in (as_shown, swapped):
            m = order_margin(lp)
            if m is not None:
                margins.append(m)
                shown += 1
                slot_a += m > 0
        debiased = debiased_margin(as_shown, swapped)
        if debiased is not None:
            final += 1
            side_a += debiased > 0
    mean_margin = sum(margins) / len(margins) if margins else None
    return slot_a, shown, side_a, final, mean_margin


def run_modes(
    modes: Sequence[tuple[str, VoteMode, bool, bool]],
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    relevant: dict[str, str | None],
    cache_dir: str,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Vote with every mode, pair by pair in turn, so a change in machine load hits all modes alike."""
    setups = []
    for _, _, prefix_cache, batched in modes:
        provider = LocalProvider("smollm2", prefix_cache=prefix_cache, cache_dir=cache_dir)
        provider.complete(Request.chat("Hi", max_tokens=1))  # load outside the timing
        recorder = BatchRecorder(provider) if batched else Recorder(provider)
        setups.append((recorder, LLM(recorder, cache=None, progress=False)))
    votes: list[list[Vote]] = [[] for _ in modes]
    seconds = [0.0 for _ in modes]
    for c in comparisons:
        for k, ((_, mode, _, _), (_, llm)) in enumerate(zip(modes, setups, strict=True)):
            start = time.perf_counter()
            votes[k] += vote([c], principles, llm, mode=mode, batch_size=batch_size)
            seconds[k] += time.perf_counter() - start
    return [
        summarize(
            f"{label} (batch {batch_size})" if mode == "generate" else label,
            mode, prefix_cache, votes[k], seconds[k], *setups[k], comparisons, principles, relevant,
        )
        for k, (label, mode, prefix_cache, _) in enumerate(modes)
    ]


def summarize(
    label: str,
    mode: VoteMode,
    prefix_cache: bool,
    votes: Sequence[Vote],
    seconds: float,
    recorder: Recorder,
    llm: LLM,
    comparisons: Sequence[Comparison],
    principles: Sequence[Principle],
    relevant: dict[str, str | None],
) -> dict[str, Any]:
    by_id = {c.id: c for c in comparisons}
    texts = {p.id: p.text for p in principles}
    per_principle: dict[str, dict[str, Any]] = {}
    for p in principles:
        keyword = relevant[p.id]
        mine = [v for v in votes if v.principle_id == p.id]
        if keyword is not None:
            mine = [v for v in mine if keyword in by_id[v.comparison_id].prompt.lower()]
        counts = {value: sum(v.value == value for v in mine) for value in ("for", "against", "abstain", "invalid")}
        per_principle[p.text] = {
            "relevant_to": keyword,
            "pairs": len(mine),
            **counts,
            # Abstentions and invalid votes count as misses: the rule decides every relevant pair.
            "accuracy": rate(counts["for"], len(mine)),
            "agreement": rate(counts["for"], counts["for"] + counts["against"]),
        }
    hidden = [s for s in per_principle.values() if s["relevant_to"] is not None]
    slot_a, shown, side_a, final, mean_margin = per_order_slot_a(mode, votes, recorder, by_id, texts)
    n_units = len(comparisons) * len(principles)
    return {
        "mode": label,
        "vote_mode": mode,
        "prefix_cache": prefix_cache,
        "seconds": seconds,
        "pairs_principles_per_s": n_units / seconds,
        "calls": llm.usage.calls,
        "input_tokens": llm.usage.input_tokens,
        "reused_input_tokens": llm.usage.cached_input_tokens,
        "output_tokens": llm.usage.output_tokens,
        "invalid_rate": sum(v.value == "invalid" for v in votes) / len(votes),
        "hidden_rule_accuracy": rate(sum(s["for"] for s in hidden), sum(s["pairs"] for s in hidden)),
        "hidden_rule_agreement": rate(sum(s["for"] for s in hidden), sum(s["for"] + s["against"] for s in hidden)),
        "slot_a_before": rate(slot_a, shown),
        "slot_a_after": rate(side_a, final),
        "mean_order_margin": mean_margin,
        "per_principle": per_principle,
    }


def measure_load(cache_dir: str) -> dict[str, float]:
    """Seconds to load the model from the GGUF (and save the converted copy), then from that copy."""
    times = {}
    for key in ("load_cold_s", "load_warm_s"):
        provider = LocalProvider("smollm2", cache_dir=cache_dir)
        start = time.perf_counter()
        provider.complete(Request.chat("Hi", max_tokens=1))
        times[key] = time.perf_counter() - start
    return times


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table(results: Sequence[dict[str, Any]], base: float) -> str:
    rows = [
        "| mode | pairs·principles/s | speedup | wall s | hidden-rule accuracy | agreement (decisive) "
        "| invalid | slot A before | side a after | mean order margin |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['mode']} | {r['pairs_principles_per_s']:.3f} | {r['pairs_principles_per_s'] / base:.1f}x "
            f"| {r['seconds']:.0f} | {fmt(r['hidden_rule_accuracy'])} | {fmt(r['hidden_rule_agreement'])} "
            f"| {fmt(r['invalid_rate'])} | {fmt(r['slot_a_before'])} | {fmt(r['slot_a_after'])} "
            f"| {fmt(r['mean_order_margin'], '+.2f')} |"
        )
    rows += [
        "",
        "| mode | principle | relevant pairs | for | against | abstain | invalid |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for text, s in r["per_principle"].items():
            rows.append(
                f"| {r['mode']} | {text} | {s['pairs']} | {s['for']} | {s['against']} | {s['abstain']} | {s['invalid']} |"
            )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30, help="pairs to vote on, spread over the hidden rules")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "local_vote.json")
    parser.add_argument(
        "--principles", type=int, choices=(5, 40), default=5,
        help="5: the hidden rules and two distractors; 40: the pipeline's default count (RunConfig.n_clusters)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=RunConfig.vote_batch_size,
        help="principles per generated voting call (default: the pipeline's)",
    )
    parser.add_argument(
        "--modes", default="0,1,2,3", help="indices of the modes to run (0 generate, 1-3 logprob; 3 batched)"
    )
    args = parser.parse_args(argv)

    data = DATA
    if not data.exists():
        parser.error("synthetic_data_orthogonal_adcbg.csv not found")
    comparisons = spread(load_comparisons(data), args.pairs)
    chosen = list(PRINCIPLES) + [(text, None) for text in DISTRACTORS[: args.principles - len(PRINCIPLES)]]
    principles = [Principle.from_text(text) for text, _ in chosen]
    relevant = {p.id: keyword for p, (_, keyword) in zip(principles, chosen, strict=True)}

    with tempfile.TemporaryDirectory() as cache_dir:
        load = measure_load(cache_dir)
        modes = [m for i, m in enumerate(MODES) if str(i) in args.modes.split(",")]
        results = run_modes(modes, comparisons, principles, relevant, cache_dir, args.batch_size)
    base = results[0]["pairs_principles_per_s"]
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/local_vote.py", *(argv or sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_end": os.getloadavg(),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "data": datasets.repo_path(data),
        "pairs": len(comparisons),
        "principles": [p.text for p in principles],
        "generate_batch_size": args.batch_size,
        **load,
        "results": results,
    }
    write_json_atomic(args.out, report)
    print(f"load: cold {load['load_cold_s']:.1f} s (GGUF + save), warm {load['load_warm_s']:.1f} s (converted copy)")
    print(f"{len(comparisons)} pairs x {len(principles)} principles; speedup relative to the first mode\n")
    print(table(results, base))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
