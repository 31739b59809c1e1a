"""The 10k / 100k / 1M-pair projection of docs/scaling.md, computed from committed results files.

    .venv/bin/python bench/scaling.py     # prints the table, writes bench/results/scaling.json

Every rate comes from a results file (named in each row): measured pairs·principles/s for the local
model (this CPU, one GPU, Ray workers' scaling) and the llama.cpp server; for an API, the tokens per
pair from `icai run --dry-run`'s estimate (`icai.cost.estimate_run`) on LLMBar adversarial and the
provider's rate limits (`API_LIMITS`, published numbers written down without network access) and
prices (`icai.llm.prices`). Work = pairs x 40 principles, both orders, votes only (proposals on a
sample of pairs and the held-out evaluation come on top; `--propose-sample` keeps proposals fixed).
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icai import datasets  # noqa: E402
from icai.config import RunConfig  # noqa: E402
from icai.cost import estimate_run  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.io import load_comparisons  # noqa: E402
from icai.llm.prices import PRICES_AS_OF, price_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = (10_000, 100_000, 1_000_000)
PRINCIPLES = 40
WORKERS = (10, 100)

API_LIMITS = {
    "openai/gpt-4o-mini": {
        "tier 1": {"rpm": 500, "tpm": 200_000},
        "tier 5": {"rpm": 30_000, "tpm": 150_000_000},
    },
}
"""OpenAI's published per-model limits for gpt-4o-mini (requests and tokens per minute) as written
down on 2026-12-01 without network access; check the limits page of your organisation."""


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / name).read_text(encoding="utf-8")))


def days(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365 * 86400):.1f} years"


def main() -> int:
    rows: list[dict[str, Any]] = []

    def add(setting: str, rate: float, source: str, formula: str, *, usd_per_pair: float = 0.0, note: str = "") -> None:
        for n in SIZES:
            seconds = n * PRINCIPLES / rate
            rows.append({
                "setting": setting, "pairs": n, "principles": PRINCIPLES, "pairs_principles_per_s": round(rate, 2),
                "seconds": round(seconds), "shown": days(seconds), "usd": round(n * usd_per_pair, 2),
                "source": source, "formula": formula, "note": note,
            })  # fmt: skip

    cpu = load("batch_pairs_cpu.json")
    batched = max(cpu["votes"], key=lambda r: r["pairs_principles_per_s"])
    one = cpu["votes"][0]
    load_avg = cpu["machine"]["load_average_at_start"][0]
    add(
        "(a) this 2-core CPU shared (load average 7-10), SmolLM2-135M, one pair per pass", one["pairs_principles_per_s"],
        f"bench/results/batch_pairs_cpu.json#votes.0 ({cpu['date'][:10]}, load average {load_avg:.1f} at start)",
        "pairs x 40 / rate", note="the machine was shared with other jobs",
    )  # fmt: skip
    add(
        f"(a) the same, batched pairs (token_budget={batched['token_budget']})", batched["pairs_principles_per_s"],
        f"bench/results/batch_pairs_cpu.json#votes.{cpu['votes'].index(batched)} (same run, interleaved)", "pairs x 40 / rate",
        note="the machine was shared with other jobs",
    )  # fmt: skip
    alone = load("batch_pairs_cpu_quiet.json")
    for k, row in enumerate(alone["votes"]):
        label = "one pair per pass (previous code, d8343e9)" if row["token_budget"] == 1 else f"batched pairs (token_budget={row['token_budget']})"
        add(
            f"(a) this 2-core CPU to itself (load average {alone['machine']['load_average_at_start'][0]:.1f}), {label}",
            row["pairs_principles_per_s"], f"bench/results/batch_pairs_cpu_quiet.json#votes.{k} ({alone['date'][:10]})",
            "pairs x 40 / rate",
        )  # fmt: skip
    bound = load("vote_bound_cpu.json")
    current = next(k for k, r in enumerate(bound["votes"]) if r["setting"].startswith("current"))
    bound_load = bound["machine"]["load_average_at_start"][0]
    add(
        f"(a) this 2-core CPU to itself (load average {bound_load:.1f}), one pair per pass, sorted branch chunks (the CPU default now)",
        bound["votes"][current]["pairs_principles_per_s"],
        f"bench/results/vote_bound_cpu.json#votes.{current} ({bound['date'][:10]})", "pairs x 40 / rate",
    )  # fmt: skip
    bf16 = bound["bfloat16"]
    add(
        "(a) the same in bfloat16 (--model local/smollm2@bfloat16; different votes)", bf16["pairs_principles_per_s"],
        f"bench/results/vote_bound_cpu.json#bfloat16 ({bound['date'][:10]})", "pairs x 40 / rate",
        note=f"{bf16['votes_equal_to_float32']} of {bf16['votes']} votes equal to float32's",
    )  # fmt: skip
    quiet = load("local_vote_40.json")
    quiet_row = next(r for r in quiet["results"] if r["mode"] == "logprob, prefix reuse, batched")
    add(
        "(a) this 2-core CPU, an earlier measure (load average 2.0), one pair per pass", quiet_row["pairs_principles_per_s"],
        f"bench/results/local_vote_40.json#results.{quiet['results'].index(quiet_row)} ({quiet['date']})", "pairs x 40 / rate",
        note="measured before batched pairs existed; their gain on a quiet machine was not measured",
    )  # fmt: skip
    gpu = load("gpu_check.json")
    cuda = next(r for r in gpu["llm"] if r["device"] == "cuda")
    add(
        f"(b) one GPU ({gpu['gpu']}), one pair per pass, random weights in the shipped architecture",
        cuda["vote"]["pairs_principles_per_s"], "bench/results/gpu_check.json#llm.0.vote (2026-11-27, a lent machine)", "pairs x 40 / rate",
        note="batched pairs were not measured on a GPU (no GPU lent to this task)",
    )  # fmt: skip
    scale = load("executor_scale.json")
    fake = {r["workers"]: r["pairs_principles_per_s"] for r in scale["rows"] if r["model"] == "fake/keyword" and r["executor"] == "ray"}
    efficiency = fake[2] / (2 * fake[1])
    for w in WORKERS:
        add(
            f"(c) {w} Ray workers, one GPU each (rate of (b))", w * efficiency * cuda["vote"]["pairs_principles_per_s"],
            f"bench/results/gpu_check.json#llm.0.vote x {w} workers x {efficiency:.2f} (bench/results/executor_scale.json: 2 Ray workers gave "
            f"{fake[2]:.0f} vs 1 worker {fake[1]:.0f} pairs·principles/s)",
            "pairs x 40 / (workers x efficiency x GPU rate)",
            note="scaling measured to 2 workers on one machine only; more is an assumption",
        )  # fmt: skip
    for name, when in (("server_rate.json", "shared machine"), ("server_rate_quiet.json", "machine to itself")):
        if not (RESULTS / name).exists():
            continue
        server = load(name)
        add(
            f"llama.cpp server (llama-cpp-python, SmolLM2 GGUF) on this CPU, {when}", server["pairs_principles_per_s"],
            f"bench/results/{name} ({server['date'][:10]}, load average {server['machine']['load_average_at_start'][0]:.1f})",
            "pairs x 40 / rate", note="one request per principle, back to back",
        )  # fmt: skip

    # (d) an API: tokens per pair from the dry-run estimate, then the tighter of the two limits
    data = datasets.path("llmbar-adversarial")
    api: dict[str, Any] = {}
    if data.exists():
        comparisons = load_comparisons(data)
        model = "openai/gpt-4o-mini"
        config = RunConfig(model=model, test_size=0.0, n_clusters=PRINCIPLES)
        estimate = estimate_run(comparisons, config)
        vote = next(s for s in estimate.stages if s.stage == "vote")
        pairs = estimate.n_train
        per_pair = {"calls": vote.calls / pairs, "input_tokens": vote.input_tokens / pairs, "output_tokens": vote.output_tokens / pairs}
        price = price_for(model)
        assert price is not None
        usd = price.cost(round(per_pair["input_tokens"] * 1e6), round(per_pair["output_tokens"] * 1e6)) / 1e6
        api = {"model": model, "data": datasets.repo_path(data), "pairs": pairs, "vote_per_pair": per_pair, "usd_per_pair": usd, "prices_as_of": PRICES_AS_OF}
        for tier, limit in API_LIMITS[model].items():
            tokens = per_pair["input_tokens"] + per_pair["output_tokens"]
            pairs_per_s = min(limit["rpm"] / per_pair["calls"], limit["tpm"] / tokens) / 60
            bound = "tokens" if limit["tpm"] / tokens < limit["rpm"] / per_pair["calls"] else "requests"
            add(
                f"(d) {model} API, {tier} ({limit['rpm']:,} RPM, {limit['tpm']:,} TPM), generated votes, 40 per call, both orders",
                pairs_per_s * PRINCIPLES,
                f"dry-run estimate on LLMBar adversarial: {per_pair['calls']:.0f} calls, {per_pair['input_tokens']:,.0f} input + "
                f"{per_pair['output_tokens']:,.0f} output tokens per pair (bench/results/scaling.json#api.vote_per_pair); limits: API_LIMITS in bench/scaling.py",
                "pairs / min(RPM / calls per pair, TPM / tokens per pair) x 60",
                usd_per_pair=usd, note=f"bound by {bound} per minute; prices as of {PRICES_AS_OF}",
            )  # fmt: skip
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python bench/scaling.py",
        "principles": PRINCIPLES,
        "what": "votes only: pairs x 40 principles, both orders",
        "ray_scaling_efficiency": efficiency,
        "api": api,
        "rows": rows,
    }
    write_json_atomic(RESULTS / "scaling.json", report)
    print("| setting | pairs·principles/s | 10k pairs | 100k pairs | 1M pairs | USD for 1M | source |")
    print("|---|---|---|---|---|---|---|")
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    for s in settings:
        mine = [r for r in rows if r["setting"] == s]
        print(
            f"| {s} | {mine[0]['pairs_principles_per_s']:,} | " + " | ".join(r["shown"] for r in mine)
            + f" | {mine[-1]['usd']:,.0f} | {mine[0]['source']} |"
        )
    print(f"wrote {RESULTS / 'scaling.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
