"""Fewer annotator calls for the same constitution (issue 7): calls, tokens, time and held-out agreement.

A simulated annotator (`SimulatedAnnotator`, a Provider) answers icai's own
propose / vote / judge prompts from a hidden world: a pool of latent principles,
each with a known relevance r and agreement a, and for every (pair, principle) a
seeded direction: relevant with probability r, and then picking the human-preferred
side with probability a. Proposals name latent principles that pick the preferred
side of the pair (as paraphrases, so clustering has work to do). Votes report each
rule's direction, read correctly with probability

    q(b) = READ_ACCURACY - BATCH_DROP * log2(b)      (b = rules in the call)

and otherwise one of the two wrong answers at random; with probability
POSITION_BIAS the answer is "A" whatever the rule says. The batch-size drop is an
assumption, not a measurement: longer rule lists are commonly reported to make
models skip or confuse rules; the log form says doubling the list costs the same
accuracy at any size. Judges sum the noisy directions of the constitution's
principles (ties: a default judge that is right with probability DEFAULT_JUDGE).

Settings compared on the same splits and worlds:
- reference: all cluster representatives x all pairs, 40 rules per call. The reference
  implementation makes 3 calls per pair per batch, so calls are reported as
  n_pairs x (1 + ceil(P/40) x 3) and its voting tokens as 3/2 of the measured
  two-order tokens; its votes (accuracy) are icai's two-order votes at batch 40.
- default: icai's RunConfig defaults (exhaustive voting).
- adaptive: top-k identification by confidence bounds (icai.adaptive), optionally
  with proposals from a sample of pairs (RunConfig.propose_sample) and with each
  pair asked once in a random order (RunConfig.adaptive_one_order).
- batch=b: exhaustive voting with b rules per call (the batch-size trade-off).

Calls and tokens are those of learning a constitution (propose + vote) per training
pair; held-out agreement is the constitution-following judge on the test split.
"Modelled API time" charges each request 0.4 s + 4 ms per input token / 1000 +
15 ms per output token, with CONCURRENCY parallel requests per `LLM.map` (adaptive
voting waits for each round). Measured wall time covers icai's own work only
(the simulator answers instantly).

    .venv/bin/python bench/calls.py            # writes bench/results/calls.json
    .venv/bin/python bench/calls.py --annotator local --datasets synthetic_orthogonal \
        --propose-sample 7 --min-pairs 8 --seeds 3   # SmolLM2; writes bench/results/calls_local.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import re
import sys
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icai import datasets
from icai.config import RunConfig
from icai.embed import Embedder, get_embedder
from icai.evaluate import agreement_scores, judge
from icai.files import write_json_atomic
from icai.io import load_comparisons
from icai.llm.base import Completion, Request
from icai.llm.client import LLM
from icai.pipeline import run
from icai.prompts import sanitize
from icai.split import train_test_split
from icai.stats import bootstrap_ci, paired_bootstrap_diff
from icai.types import Comparison, Vote

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "synthetic_orthogonal": datasets.path("synthetic-orthogonal"),
    "synthetic_aligned": datasets.path("synthetic-aligned"),
    "llmbar_adversarial": datasets.path("llmbar-adversarial"),
}

READ_ACCURACY = 0.97
BATCH_DROP = 0.02
POSITION_BIAS = 0.05
DEFAULT_JUDGE = 0.55
CONCURRENCY = 8
REFERENCE_BATCH = 40
REFERENCE_CALLS_PER_BATCH = 3

TRAITS = [
    "follows every explicit instruction in the prompt", "answers the question that was actually asked",
    "keeps to the requested length", "uses the requested output format", "states facts that are correct",
    "avoids adding unrequested content", "gives a concrete worked example", "explains the reasoning step by step",
    "uses a polite and friendly tone", "keeps the answer short and direct", "covers every part of the question",
    "avoids repeating the same point", "uses correct grammar and spelling", "cites a source for its claims",
    "admits uncertainty where it exists", "stays on the topic of the prompt", "uses simple everyday words",
    "gives the final answer first", "organises the answer under headings", "uses a numbered list of steps",
    "includes runnable code when code is asked", "mentions safety risks and caveats", "uses precise numbers and units",
    "avoids moralising at the reader", "keeps the original meaning when rewriting", "writes in the requested style",
    "uses vivid descriptive language", "adds humour to the answer", "addresses the reader directly as you",
    "ends with a clear conclusion", "offers several alternative options", "compares the options side by side",
    "defines technical terms it uses", "gives historical background", "asks a clarifying question back",
    "uses a formal academic register", "includes a short summary at the end", "mentions the user's constraints",
    "avoids speculation about unknown facts", "quotes the prompt text exactly", "uses British spelling",
    "uses bullet points instead of prose", "is written in the first person", "recommends a specific product",
    "mentions a famous person", "uses emojis in the text", "includes a rhetorical question",
    "gives a longer answer overall", "uses more technical jargon", "restates the question before answering",
    "mentions the weather or seasons", "talks about money and prices", "uses passive voice throughout",
    "contains a list of exactly three items", "mentions a specific country", "uses exclamation marks",
    "mentions animals or pets", "refers to a scientific study", "uses a metaphor or analogy",
    "describes emotions and feelings",
]  # fmt: skip
PARAPHRASES = ("Select the response that {t}.", "Select the response that clearly {t}.", "Select the response that {t} throughout.")


def _unit(*parts: Any) -> float:
    """A seeded uniform number in [0, 1) from the parts' text."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


class SimulatedAnnotator:
    """A Provider that answers icai's prompts from a hidden world of latent principles (see module docstring)."""

    supports_choice_logprobs = False

    def __init__(
        self,
        comparisons: Sequence[Comparison],
        *,
        seed: int = 0,
        read_accuracy: float = READ_ACCURACY,
        batch_drop: float = BATCH_DROP,
        position_bias: float = POSITION_BIAS,
        default_judge: float = DEFAULT_JUDGE,
    ) -> None:
        self.model = f"sim/annotator-{seed}"
        self.seed = seed
        self.read_accuracy, self.batch_drop = read_accuracy, batch_drop
        self.position_bias, self.default_judge = position_bias, default_judge
        rng = np.random.default_rng(seed)
        n = len(TRAITS)
        # 4 strong, 8 middling and the rest weak or harmful latent principles, in random trait order
        tier = np.array([0] * 4 + [1] * 8 + [2] * (n - 12))
        rng.shuffle(tier)
        lo_r, hi_r = np.array([0.45, 0.25, 0.05])[tier], np.array([0.8, 0.6, 0.5])[tier]
        lo_a, hi_a = np.array([0.8, 0.62, 0.35])[tier], np.array([0.95, 0.78, 0.62])[tier]
        self.relevance = rng.uniform(lo_r, hi_r)
        self.agreement = rng.uniform(lo_a, hi_a)
        self.comparisons = list(comparisons)
        self.row = {c.id: i for i, c in enumerate(self.comparisons)}
        m = len(self.comparisons)
        relevant = rng.random((m, n)) < self.relevance
        agrees = rng.random((m, n)) < self.agreement
        self.truth = np.where(relevant, np.where(agrees, 1, -1), 0)
        """+1: latent j picks pair i's preferred side; -1 the other; 0 neither."""
        self.latent_of = {tpl.format(t=t): j for j, t in enumerate(TRAITS) for tpl in PARAPHRASES}
        self.shown: dict[tuple[str, str], tuple[int, bool]] = {}
        for i, c in enumerate(self.comparisons):
            a, b = sanitize(c.text_a), sanitize(c.text_b)
            self.shown[(a, b)] = (i, False)
            self.shown[(b, a)] = (i, True)
        self._prefixes: set[bytes] = set()

    # -- the hidden world ------------------------------------------------------
    def score(self, j: int) -> float:
        """Expected vote score r x (2a - 1) of latent j."""
        return float(self.relevance[j] * (2 * self.agreement[j] - 1))

    def side(self, i: int, j: int | None) -> str | None:
        """The side ("a"/"b") latent j picks on pair i, or None."""
        if j is None or self.truth[i, j] == 0:
            return None
        c = self.comparisons[i]
        return c.preferred if self.truth[i, j] > 0 else c.rejected

    def true_value(self, comparison_id: str, principle_text: str) -> str:
        i = self.row[comparison_id]
        d = self.truth[i, self.latent_of[principle_text]] if principle_text in self.latent_of else 0
        return "for" if d > 0 else "against" if d < 0 else "abstain"

    def read_prob(self, n_rules: int) -> float:
        return self.read_accuracy - self.batch_drop * math.log2(max(1, n_rules))

    # -- the provider ------------------------------------------------------------
    def complete(self, request: Request) -> Completion:
        prompt = request.prompt_text
        rng = random.Random(hashlib.blake2b(f"{self.seed}\n{prompt}".encode(), digest_size=8).digest())
        if "[PREFERRED]" in prompt:
            text = self._propose(prompt, rng)
        elif "which response the rule selects" in prompt:
            text = self._vote(prompt, rng)
        else:
            text = self._judge(prompt, rng)
        return Completion(
            text,
            input_tokens=-(-len(prompt) // 4),
            output_tokens=-(-len(text) // 4),
            cached_input_tokens=self._cached_tokens(prompt),
        )

    def forget_prefixes(self) -> None:
        """Empty the simulated provider prefix cache (between settings)."""
        self._prefixes.clear()

    def _cached_tokens(self, prompt: str) -> int:
        """An OpenAI-style prefix cache: prefixes of 1024+ tokens, in 128-token steps (4 characters a token)."""
        cached = 0
        for end in range(4096, len(prompt) + 1, 512):
            key = hashlib.blake2b(prompt[:end].encode(), digest_size=16).digest()
            if key in self._prefixes:
                cached = end // 4
            self._prefixes.add(key)
        return cached

    def _pair(self, prompt: str) -> tuple[int, bool]:
        a = _block(prompt, "RESPONSE A")
        b = _block(prompt, "RESPONSE B")
        return self.shown[(a, b)]

    def _noisy(self, truth: str, n_rules: int, rng: random.Random) -> str:
        if rng.random() < self.position_bias:
            return "A"
        if rng.random() < self.read_prob(n_rules):
            return truth
        return rng.choice([x for x in ("A", "B", "neither") if x != truth])

    def _shown_side(self, side: str | None, swapped: bool) -> str:
        if side is None:
            return "neither"
        return "A" if (side == "a") != swapped else "B"

    def _vote(self, prompt: str, rng: random.Random) -> str:
        i, swapped = self._pair(prompt)
        rules = _rules(prompt, after="Rules:")
        answer = {
            str(n): self._noisy(self._shown_side(self.side(i, self.latent_of.get(rule)), swapped), len(rules), rng)
            for n, rule in enumerate(rules, start=1)
        }
        return json.dumps(answer)

    def _judge(self, prompt: str, rng: random.Random) -> str:
        i, swapped = self._pair(prompt)
        rules = _rules(prompt, after="in order of importance?") if "in order of importance?" in prompt else []
        total = 0
        for rule in rules:
            pick = self._noisy(self._shown_side(self.side(i, self.latent_of.get(rule)), swapped), len(rules), rng)
            total += 1 if pick == "A" else -1 if pick == "B" else 0
        if total == 0:
            c = self.comparisons[i]
            right = rng.random() < self.default_judge
            pick = self._shown_side(c.preferred if right else c.rejected, swapped)
        else:
            pick = "A" if total > 0 else "B"
        if rng.random() < self.position_bias:
            pick = "A"
        return json.dumps({"preferred": pick})

    def _propose(self, prompt: str, rng: random.Random) -> str:
        preferred, other = _block(prompt, "PREFERRED"), _block(prompt, "OTHER")
        i, _ = self.shown.get((preferred, other)) or self.shown[(other, preferred)]
        m = re.search(r"Write (\d+) short rules", prompt)
        n = int(m.group(1)) if m else 3
        firing = [j for j in range(len(TRAITS)) if self.truth[i, j] > 0]
        chosen = rng.sample(firing, min(n, len(firing)))
        if chosen and rng.random() < 0.2:  # proposals are not always faithful
            chosen[-1] = rng.randrange(len(TRAITS))
        texts = [rng.choice(PARAPHRASES).format(t=TRAITS[j]) for j in dict.fromkeys(chosen)]
        return json.dumps({"principles": texts})


def _block(prompt: str, name: str) -> str:
    found = re.findall(rf"\[{name}\]\n(.*?)\n\[/{name}\]", prompt, re.DOTALL)
    return found[-1] if found else ""


def _rules(prompt: str, *, after: str) -> list[str]:
    tail = prompt.rsplit(after, 1)[-1]
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", tail, re.MULTILINE)]


class MeteredLLM(LLM):
    """An LLM that also models API latency: each `map` takes ceil(n / CONCURRENCY) waves of its mean request time."""

    def __init__(self, provider: SimulatedAnnotator) -> None:
        super().__init__(provider, progress=False)
        self.api_seconds = 0.0
        self.tokens_by_stage: dict[str, int] = {}

    def map(
        self, requests: Sequence[Request], *, desc: str | None = None, keys: Sequence[Hashable] | None = None
    ) -> list[Completion]:
        out = super().map(requests, desc=desc, keys=keys)
        stage = desc or ""
        self.tokens_by_stage[stage] = self.tokens_by_stage.get(stage, 0) + sum(c.input_tokens + c.output_tokens for c in out)
        if out:
            per = [0.4 + 0.004 * c.input_tokens / 1000 + 0.015 * c.output_tokens for c in out]
            self.api_seconds += math.ceil(len(out) / CONCURRENCY) * float(np.mean(per))
        return out


def run_setting(
    name: str,
    config: RunConfig,
    train: list[Comparison],
    test: list[Comparison],
    sim: SimulatedAnnotator,
    embedder: Embedder,
) -> dict[str, Any]:
    llm = MeteredLLM(sim)
    sim.forget_prefixes()
    started = time.perf_counter()
    result = run(train, llm=llm, embedder=embedder, config=config)
    wall = time.perf_counter() - started
    usage = llm.usage.as_dict()
    n_tested = len(result.tested)
    calls, tokens = usage["calls"], usage["input_tokens"] + usage["output_tokens"]
    if name == "reference":
        n_batches = math.ceil(n_tested / REFERENCE_BATCH)
        vote_tokens = llm.tokens_by_stage.get("vote", 0)
        calls = len(train) * (1 + n_batches * REFERENCE_CALLS_PER_BATCH)
        tokens = round(tokens - vote_tokens + vote_tokens * REFERENCE_CALLS_PER_BATCH / 2)
    judged = judge(test, LLM(sim, progress=False), principles=result.constitution.texts)
    scores = agreement_scores(judged, test)
    vote_acc = float(np.mean([sim.true_value(v.comparison_id, _text(result, v)) == v.value for v in result.votes]))
    latent = [sim.latent_of.get(t) for t in result.constitution.texts]
    return {
        "setting": name,
        "calls": calls,
        "simulated_calls": usage["calls"],
        "tokens": tokens,
        "input_tokens": usage["input_tokens"],
        "cached_input_tokens": usage["cached_input_tokens"],
        "calls_per_pair": calls / len(train),
        "tokens_per_pair": tokens / len(train),
        "votes": len(result.votes),
        "exhaustive_votes": len(train) * n_tested,
        "n_tested": n_tested,
        "wall_s": round(wall, 2),
        "modelled_api_s": round(llm.api_seconds, 1),
        "vote_accuracy": vote_acc,
        "constitution": result.constitution.texts,
        "constitution_true_scores": [round(sim.score(j), 3) if j is not None else None for j in latent],
        "held_out": scores.tolist(),
        "agreement": float(scores.mean()),
    }


def _text(result: Any, v: Vote) -> str:
    return next(p.text for p in result.tested if p.id == v.principle_id)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds; the agreement CI bootstraps the pooled held-out pairs of all seeds."""
    pooled = np.concatenate([np.asarray(r["held_out"]) for r in rows])
    lo, hi = bootstrap_ci(pooled)
    return {
        "calls_per_pair": float(np.mean([r["calls_per_pair"] for r in rows])),
        "tokens_per_pair": float(np.mean([r["tokens_per_pair"] for r in rows])),
        "cached_input_share": float(np.sum([r["cached_input_tokens"] for r in rows]) / max(1, np.sum([r["input_tokens"] for r in rows]))),
        "vote_share": float(np.mean([r["votes"] / r["exhaustive_votes"] for r in rows])),
        "vote_accuracy": float(np.mean([r["vote_accuracy"] for r in rows])),
        "wall_s": float(np.mean([r["wall_s"] for r in rows])),
        "modelled_api_s": float(np.mean([r["modelled_api_s"] for r in rows])),
        "agreement": float(pooled.mean()),
        "agreement_ci": [lo, hi],
        "n_held_out": int(pooled.size),
    }


def paired(rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, Any]:
    x = np.concatenate([np.asarray(r["held_out"]) for r in rows])
    y = np.concatenate([np.asarray(r["held_out"]) for r in base])
    mean, (lo, hi) = paired_bootstrap_diff(x, y)
    return {"mean": mean, "ci": [lo, hi]}


def load_dataset(name: str) -> list[Comparison]:
    """A file from DATASETS, or "generated_<n>": n placeholder pairs (the simulator reads only its own world)."""
    if name.startswith("generated_"):
        n = int(name.split("_", 1)[1])
        return [
            Comparison(f"g{i}", f"First answer to question {i}.", f"Second answer to question {i}.", "ab"[i % 2], prompt=f"Question {i}?")  # type: ignore[arg-type]
            for i in range(n)
        ]
    return load_comparisons(DATASETS[name])


def run_local_arm(
    dataset: str, seeds: int, min_pairs: int, propose_sample: int, out: str, reference_proposals: str = "small"
) -> dict[str, Any]:
    """The same comparison with the packaged SmolLM2 as the annotator (slow on a CPU: a few seeds).

    reference: generated votes with 40 rules per call in both orders (calls charged as the
    reference's 3 calls per batch; tokens as measured, which favours it), after the same
    small-model proposals as default (`--reference-proposals standard`: one proposal call per
    pair as the reference does; with SmolLM2 that proposes nothing usable);
    default: icai's defaults for a local model (small-model proposals, log-prob votes with
    every principle of a pair and order as branches of one call, KV reuse);
    adaptive+propose_sample: adaptive testing from `min_pairs` pairs, proposals from
    `propose_sample` pairs; +one_order: each pair asked once, in a random order, the
    log-prob margins calibrated for position bias (icai.vote.calibrated_margins).
    Held-out agreement: the same log-prob judge (SmolLM2) follows each constitution on the
    test split; pooled over seeds. "Computed tokens" leave out prompt tokens served from
    the model's KV prefix cache (the work the model does); "tokens" count every prompt in full.
    """
    from icai.llm import get_llm

    comparisons = load_dataset(dataset)
    embedder = get_embedder("minilm")
    base = RunConfig(model="local/smollm2", test_size=0.0)
    sampled = dataclasses.replace(base, adaptive=True, min_pairs=min_pairs, propose_sample=propose_sample)
    settings = {
        "reference": dataclasses.replace(
            base, vote_mode="generate", vote_batch_size=REFERENCE_BATCH, propose_style=reference_proposals  # type: ignore[arg-type]
        ),
        "default": base,
        "adaptive+propose_sample": sampled,
        "adaptive+propose_sample+one_order": dataclasses.replace(sampled, adaptive_one_order=True),
    }
    settings["reference"] = settings.pop("reference")  # slowest last, so a failure elsewhere shows early
    judge_llm = get_llm("local/smollm2", progress=False)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    for seed in range(seeds):
        train, test = train_test_split(comparisons, test_size=0.3, seed=seed)
        for name, config in settings.items():
            llm = get_llm("local/smollm2", progress=False)
            llm.provider.load()  # type: ignore[attr-defined]
            started = time.perf_counter()
            result = run(train, llm=llm, embedder=embedder, config=dataclasses.replace(config, seed=seed))
            wall = time.perf_counter() - started
            u = llm.usage
            calls, tokens = u.calls, u.input_tokens + u.output_tokens
            if name == "reference":
                n_batches = math.ceil(len(result.tested) / REFERENCE_BATCH)
                calls = u.calls - len(train) * n_batches * 2 + len(train) * n_batches * REFERENCE_CALLS_PER_BATCH
            judged = judge(test, judge_llm, principles=result.constitution.texts, mode="logprob")
            scores = agreement_scores(judged, test)
            runs[name].append({
                "seed": seed, "calls": calls, "measured_calls": u.calls, "tokens": tokens,
                "computed_tokens": tokens - u.cached_input_tokens, "n_train": len(train), "wall_s": round(wall, 1),
                "n_tested": len(result.tested), "votes": len(result.votes),
                "invalid_votes": sum(v.value == "invalid" for v in result.votes),
                "constitution": result.constitution.texts, "held_out": scores.tolist(),
            })  # fmt: skip
            print(f"local seed={seed} {name}: {calls / len(train):.2f} calls/pair, {wall:.0f} s, agreement {scores.mean():.3f}", file=sys.stderr, flush=True)
    rows = {name: _local_summary(runs[name]) for name in ("reference", *(n for n in settings if n != "reference"))}
    for name, row in rows.items():
        row["vs_reference"] = paired(runs[name], runs["reference"])
        row["vs_default"] = paired(runs[name], runs["default"])
    report = {"annotator": "local/smollm2", "dataset": dataset, "seeds": seeds, "min_pairs": min_pairs,
              "propose_sample": propose_sample, "reference_proposals": reference_proposals,
              "settings": rows, "runs": runs}  # fmt: skip
    write_json_atomic(out, report)
    ref = rows["reference"]
    print("| setting | calls/pair | tokens/pair | computed tokens/pair | wall s | invalid votes | held-out agreement [95% CI] | vs reference | vs default |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        share = f" ({r['calls_per_pair'] / ref['calls_per_pair']:.0%}, {r['computed_tokens_per_pair'] / ref['computed_tokens_per_pair']:.0%})"
        d, e = r["vs_reference"], r["vs_default"]
        print(
            f"| {name}{share if name != 'reference' else ''} | {r['calls_per_pair']:.2f} | {r['tokens_per_pair']:,.0f} "
            f"| {r['computed_tokens_per_pair']:,.0f} | {r['wall_s']:.0f} | {r['invalid_votes']}/{r['votes']} "
            f"| {r['agreement']:.3f} [{r['agreement_ci'][0]:.3f}, {r['agreement_ci'][1]:.3f}] "
            f"| {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] | {e['mean']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}] |"
        )
    return report


def _local_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-pair means over seeds (every seed has the same number of training pairs); agreement pooled."""
    n = sum(r["n_train"] for r in runs)
    pooled = np.concatenate([np.asarray(r["held_out"]) for r in runs])
    lo, hi = bootstrap_ci(pooled)
    return {
        "calls_per_pair": sum(r["calls"] for r in runs) / n,
        "tokens_per_pair": sum(r["tokens"] for r in runs) / n,
        "computed_tokens_per_pair": sum(r["computed_tokens"] for r in runs) / n,
        "wall_s": float(np.mean([r["wall_s"] for r in runs])),
        "votes": sum(r["votes"] for r in runs),
        "invalid_votes": sum(r["invalid_votes"] for r in runs),
        "agreement": float(pooled.mean()),
        "agreement_ci": [lo, hi],
        "n_held_out": int(pooled.size),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotator", choices=["sim", "local"], default="sim", help="local: the packaged SmolLM2, one seed")
    parser.add_argument("--min-pairs", type=int, default=8, help="local arm, adaptive: pairs before any principle stops")
    parser.add_argument("--reference-proposals", choices=["small", "standard"], default="small", help="local arm")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help=f"{', '.join(DATASETS)} or generated_<n>")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 5, 10, 20, 40])
    parser.add_argument("--propose-sample", type=int, default=48)
    parser.add_argument("--adaptive-batch", type=int, default=40)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--settings", nargs="+", help="run only these settings")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "calls.json"))
    args = parser.parse_args(argv)
    if args.annotator == "local":
        out = args.out if args.out != parser.get_default("out") else str(ROOT / "bench" / "results" / "calls_local.json")
        run_local_arm(args.datasets[0], args.seeds, args.min_pairs, args.propose_sample, out, args.reference_proposals)
        return 0

    embedder = get_embedder(args.embedder)
    base = RunConfig(model="sim/annotator", embedder=args.embedder, vote_mode="generate", test_size=0.0)
    # Each adaptive setting adds one lever to the one before it.
    adaptive = dataclasses.replace(base, adaptive=True, confidence=args.confidence, vote_batch_size=args.adaptive_batch)
    sampled = dataclasses.replace(adaptive, propose_sample=args.propose_sample)
    settings: dict[str, RunConfig] = {
        "reference": dataclasses.replace(base, vote_batch_size=REFERENCE_BATCH),
        "default": base,
        "adaptive": adaptive,
        "adaptive+propose_sample": sampled,
        "adaptive+propose_sample+one_order": dataclasses.replace(sampled, adaptive_one_order=True),
    }
    for b in args.batch_sizes:
        settings[f"batch={b}"] = dataclasses.replace(base, vote_batch_size=b)
    report: dict[str, Any] = {"assumptions": {
        "read_accuracy": READ_ACCURACY, "batch_drop_per_doubling": BATCH_DROP, "position_bias": POSITION_BIAS,
        "default_judge": DEFAULT_JUDGE, "concurrency": CONCURRENCY, "seeds": args.seeds, "embedder": args.embedder,
        "reference_calls_per_batch": REFERENCE_CALLS_PER_BATCH, "reference_batch": REFERENCE_BATCH,
    }, "datasets": {}}  # fmt: skip
    if args.settings:
        settings = {s: c for s, c in settings.items() if s in args.settings}
    for name in args.datasets:
        comparisons = load_dataset(name)
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in settings}
        for seed in range(args.seeds):
            train, test = train_test_split(comparisons, test_size=0.3, seed=seed)
            sim = SimulatedAnnotator(comparisons, seed=seed)
            for setting, config in settings.items():
                row = run_setting(setting, dataclasses.replace(config, seed=seed), train, test, sim, embedder)
                rows[setting].append(row)
                print(
                    f"{name} seed={seed} {setting:24s} calls/pair={row['calls_per_pair']:.2f} "
                    f"tokens/pair={row['tokens_per_pair']:.0f} votes={row['votes']}/{row['exhaustive_votes']} "
                    f"vote_acc={row['vote_accuracy']:.3f} agreement={row['agreement']:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
        summary = {s: summarize(r) for s, r in rows.items()}
        for s in settings:
            summary[s]["vs_reference"] = paired(rows[s], rows["reference"])
        report["datasets"][name] = {
            "n_pairs": len(comparisons),
            "n_train": len(train),
            "summary": summary,
            "runs": {s: [{k: v for k, v in r.items() if k != "held_out"} for r in rs] for s, rs in rows.items()},
        }
    write_json_atomic(args.out, report)
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for name, data in report["datasets"].items():
        lines.append(f"\n**{name}** ({data['n_pairs']} pairs, {data['n_train']} train)\n")
        lines.append(
            "| setting | calls/pair | tokens/pair | votes asked | vote accuracy | held-out agreement [95% CI] "
            "| vs reference [95% CI] | wall s | modelled API s |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for s, v in data["summary"].items():
            lo, hi = v["agreement_ci"]
            d = v["vs_reference"]
            lines.append(
                f"| {s} | {v['calls_per_pair']:.2f} | {v['tokens_per_pair']:.0f} | {100 * v['vote_share']:.0f}% "
                f"| {v['vote_accuracy']:.3f} | {v['agreement']:.3f} [{lo:.3f}, {hi:.3f}] "
                f"| {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] | {v['wall_s']:.1f} | {v['modelled_api_s']:.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
