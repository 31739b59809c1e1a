"""Hidden-rule recovery on the ICAI synthetic sets, with the direction checked (issue 14).

A constitution that names the dog, the green t-shirt or raspberry ice cream as the thing to
select has learnt a rule backwards; that counts as WRONG, never as recovered. Directions are
judged two ways (`bench/rules.py` documents both): (a) from the principle's text (favoured and
disfavoured terms, with negation such as "avoids", "does not mention", "instead of"), and (b)
from the principle's own training votes against the oracle side (the response that holds the
favoured item) on the pairs the rule applies to.

Per run: constitution size, rules recovered in the right direction, wrong-direction principles,
duplicates (more than one principle on the same hidden rule), significance verdicts, and
held-out agreement with a 95% bootstrap CI (`RunConfig(test_size=0.3)`), against the same
annotator without a constitution.

Annotators:
- fake: the packaged scripted annotator `fake/keyword` with the hashing embedder (machinery only);
- oracle: `RuleOracle`, a simulated annotator that knows the dataset's real hidden rules and reads
  the texts: it proposes paraphrases of the true rule of the pair it is shown (in the direction it
  reads, right with probability READ_ACCURACY), wrong-direction paraphrases and distractors, and
  votes a rule by reading which response holds its favoured item, with read accuracy, a batch-size
  drop and position bias as in `bench/calls.py`; MiniLM embeddings;
- local: `local/smollm2` + `minilm` with SmolLM2's log-prob votes (the offline default before issue 28), about
  2.5 min a run on 2 cores;
- local-embedding: the same with `vote_mode="embedding"` (MiniLM votes, SmolLM2 proposes and judges).

Every arm runs without the style principles of issue 28 (`style_principles=False`), as the recorded rows were
made; bench/offline_default.py measures them.

    .venv/bin/python bench/recovery.py                                   # fake and oracle, both sets, 3 seeds
    .venv/bin/python bench/recovery.py --annotators local --datasets synthetic_orthogonal --merge
        # adds the offline default's runs to bench/results/recovery.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calls import DATASETS, PARAPHRASES, TRAITS, SimulatedAnnotator, _block  # noqa: E402
from rules import ORTHOGONAL, RULES, HiddenRule, check_oracle, text_direction, vote_direction  # noqa: E402

from icai.config import RunConfig  # noqa: E402
from icai.embed import get_embedder  # noqa: E402
from icai.evaluate import agreement_scores, judge  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402
from icai.io import load_comparisons  # noqa: E402
from icai.llm.base import Completion, Request  # noqa: E402
from icai.llm.cache import ResponseCache  # noqa: E402
from icai.llm.client import LLM  # noqa: E402
from icai.pipeline import run  # noqa: E402
from icai.prompts import JUDGE_SYSTEM, PROPOSE_SYSTEM, VOTE_SYSTEM  # noqa: E402
from icai.stats import bootstrap_ci, paired_bootstrap_diff  # noqa: E402
from icai.store import RunStore  # noqa: E402
from icai.types import Comparison, Constitution  # noqa: E402
from icai.vote import resolve_vote_mode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "recovery.json"
ALPHA = 0.05
ANNOTATORS = ("fake", "oracle", "local", "local-embedding")

READ_ACCURACY = 0.92
"""RuleOracle: probability of reading which response holds a rule's favoured item correctly (one rule in the call)."""
P_RULE = 0.75
"""RuleOracle: probability that a proposal call names the pair's true rule (as read) at all."""
P_WRONG = 0.1
"""RuleOracle: probability that each further proposal is a wrong-direction paraphrase of the pair's rule."""
DISTRACTOR_RELEVANCE = 0.3
"""RuleOracle: a distractor picks a side on this share of pairs, at random (independent of the labels)."""


class RuleOracle(SimulatedAnnotator):
    """A Provider whose hidden world is the dataset's real rules, read from the texts (see module docstring).

    Reuses `SimulatedAnnotator`'s vote and judge answers (read accuracy, batch-size drop, position
    bias, default judge); only the world differs: latent j is one rule in one direction (all its
    paraphrases) or one distractor trait, and `side` reads the texts instead of a random table.
    """

    def __init__(
        self,
        comparisons: Sequence[Comparison],
        rules: Sequence[HiddenRule],
        *,
        seed: int = 0,
        read_accuracy: float = READ_ACCURACY,
        p_rule: float = P_RULE,
        p_wrong: float = P_WRONG,
        distractor_relevance: float = DISTRACTOR_RELEVANCE,
    ) -> None:
        super().__init__(comparisons, seed=seed, read_accuracy=read_accuracy)
        self.model = f"sim/rule-oracle-{seed}"
        self.rules = tuple(rules)
        self.p_rule, self.p_wrong = p_rule, p_wrong
        self.kind: list[tuple[int | None, int]] = []
        """latent j -> (rule index, +1 right / -1 wrong direction), or (None, 0) for a distractor."""
        self.latent_of = {}
        self.texts: dict[tuple[int, int], tuple[str, ...]] = {}
        for k, r in enumerate(self.rules):
            for sign, texts in ((1, r.right), (-1, r.wrong)):
                self.texts[(k, sign)] = texts
                self.latent_of.update({t: len(self.kind) for t in texts})
                self.kind.append((k, sign))
        self.distractors = list(range(len(self.kind), len(self.kind) + len(TRAITS)))
        for t in TRAITS:
            self.latent_of.update({tpl.format(t=t): len(self.kind) for tpl in PARAPHRASES})
            self.kind.append((None, 0))
        rng = np.random.default_rng(seed + 7919)
        m = len(self.comparisons)
        self.distractor_side = np.where(
            rng.random((m, len(TRAITS))) < distractor_relevance, np.where(rng.random((m, len(TRAITS))) < 0.5, 1, 2), 0
        )
        self.rule_of = [next((k for k, r in enumerate(self.rules) if r.applies(c)), None) for c in self.comparisons]

    def side(self, i: int, j: int | None) -> str | None:
        if j is None:
            return None
        k, sign = self.kind[j]
        if k is None:
            d = int(self.distractor_side[i, j - self.distractors[0]])
            return None if d == 0 else "a" if d == 1 else "b"
        oracle = self.rules[k].oracle_side(self.comparisons[i])
        if oracle is None:
            return None
        return oracle if sign > 0 else ("b" if oracle == "a" else "a")

    def complete(self, request: Request) -> Completion:
        system = request.messages[0].content if request.messages and request.messages[0].role == "system" else ""
        if system not in (PROPOSE_SYSTEM, VOTE_SYSTEM, JUDGE_SYSTEM):
            raise ValueError(f"RuleOracle answers icai's generated propose, vote and judge prompts only; got system {system[:60]!r}")
        prompt = request.prompt_text
        rng = random.Random(f"{self.seed}\n{prompt}")
        text = self._propose(prompt, rng) if system == PROPOSE_SYSTEM else self._vote(prompt, rng) if system == VOTE_SYSTEM else self._judge(prompt, rng)
        return Completion(text, input_tokens=-(-len(prompt) // 4), output_tokens=-(-len(text) // 4))

    def _propose(self, prompt: str, rng: random.Random) -> str:
        preferred, other = _block(prompt, "PREFERRED"), _block(prompt, "OTHER")
        i, _ = self.shown.get((preferred, other)) or self.shown[(other, preferred)]
        m = re.search(r"Write (\d+) short rules", prompt)
        n = int(m.group(1)) if m else 3
        k = self.rule_of[i]
        out: list[str] = []
        if k is not None:
            holds = self.rules[k].holds(preferred)
            if rng.random() > self.read_accuracy:
                holds = not holds
            if rng.random() < self.p_rule:
                out.append(rng.choice(self.texts[(k, 1 if holds else -1)]))
        while len(out) < n:
            if k is not None and rng.random() < self.p_wrong:
                out.append(rng.choice(self.texts[(k, -1)]))
            else:
                out.append(rng.choice(PARAPHRASES).format(t=rng.choice(TRAITS)))
        return json.dumps({"principles": list(dict.fromkeys(out))})


# -- scoring ------------------------------------------------------------------------------------


def verdict_of(row: dict[str, Any]) -> tuple[str | None, str]:
    """A constitution row's significance verdict and where it came from (icai's own, or q < ALPHA before icai had one)."""
    stats = row.get("stats") or {}
    for source in (row, stats):
        if source.get("verdict") is not None:
            return str(source["verdict"]), "icai"
    q = stats.get("q_value")
    if q is None:
        return None, "none"
    return ("significant" if q < ALPHA else "exploratory"), f"q<{ALPHA} (computed by the bench)"


def score_constitution(
    constitution: Constitution, votes: Sequence[Any], train: Sequence[Comparison], rules: Sequence[HiddenRule]
) -> dict[str, Any]:
    """Direction-checked recovery of one constitution (both judgements), from its rows and training votes."""
    rows = constitution.to_dict()["principles"]
    frequency = (constitution.metadata.get("stability") or {}).get("frequency", {})
    principles = []
    for row in rows:
        pv = [v for v in votes if v.principle_id == row["id"]]
        tj = text_direction(row["text"], rules)
        vj = vote_direction(pv, train, rules, rule=tj.rule)
        verdict, source = verdict_of(row)
        s = row.get("stats") or {}
        principles.append({
            "rank": row["rank"], "text": row["text"], "origin": row.get("origin"),
            "n_for": s.get("n_for"), "n_against": s.get("n_against"), "agreement": s.get("agreement"),
            "q_value": s.get("q_value"), "verdict": verdict, "verdict_source": source,
            "resample_frequency": frequency.get(row["id"]),
            "text_rule": tj.rule, "text_direction": tj.direction,
            "vote_rule": vj.rule, "vote_direction": vj.direction if vj.rule else None,
            "vote_agreement": vj.agreement, "vote_decisive": vj.n_decisive, "decisive_total": vj.n_decisive_total,
        })  # fmt: skip
    out: dict[str, Any] = {"size": len(rows), "principles": principles}
    for how in ("text", "vote"):
        matched = [p for p in principles if p[f"{how}_rule"] is not None]
        right = sorted({p[f"{how}_rule"] for p in matched if p[f"{how}_direction"] == 1})
        per_rule = {r.name: sum(p[f"{how}_rule"] == r.name for p in matched) for r in rules}
        out[f"recovered_{how}"] = right
        out[f"n_recovered_{how}"] = len(right)
        out[f"wrong_{how}"] = sum(p[f"{how}_direction"] == -1 for p in matched)
        out[f"ambiguous_{how}"] = sum(p[f"{how}_direction"] == 0 for p in matched)
        out[f"duplicates_{how}"] = sum(max(0, n - 1) for n in per_rule.values())
        out[f"unmatched_{how}"] = len(principles) - len(matched)
        out[f"recovered_significant_{how}"] = sorted(
            {p[f"{how}_rule"] for p in matched if p[f"{how}_direction"] == 1 and p["verdict"] == "significant"}
        )
    out["n_significant"] = sum(p["verdict"] == "significant" for p in principles)
    out["n_exploratory"] = sum(p["verdict"] == "exploratory" for p in principles)
    out["wrong_significant_text"] = sum(p["text_direction"] == -1 and p["verdict"] == "significant" for p in principles)
    return out


def selection_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """What the run recorded about selection: method, merges, greedy steps, stability, notes (compact)."""
    sel = metadata.get("selection") or {}
    stab = metadata.get("stability") or {}
    cfg = metadata.get("config", {})
    return {
        "method": sel.get("method", cfg.get("selection")),
        "alpha": sel.get("alpha", cfg.get("alpha")),
        "n_qualified": len(sel.get("qualified", [])),
        "n_merges": len(sel.get("merges", [])),
        "steps": sel.get("steps", []),
        "stability": {k: stab.get(k) for k in ("n_resamples", "expected_overlap", "mean_size")} if stab else None,
        "notes": metadata.get("notes", []),
    }


# -- runs ---------------------------------------------------------------------------------------


def make_annotator(name: str, comparisons: Sequence[Comparison], rules: Sequence[HiddenRule], seed: int, cache: Path) -> tuple[LLM, Any, RunConfig]:
    from icai.llm import get_llm

    if name == "fake":
        llm = get_llm("fake/keyword", cache_path=cache, progress=False)
        return llm, get_embedder("hash"), RunConfig(model="fake/keyword", embedder="hash", test_size=0.3, seed=seed, style_principles=False)
    if name == "oracle":
        provider = RuleOracle(comparisons, rules, seed=seed)
        llm = LLM(provider, cache=ResponseCache(cache), progress=False)
        return llm, get_embedder("minilm"), RunConfig(model=provider.model, embedder="minilm", vote_mode="generate", test_size=0.3, seed=seed, style_principles=False)
    if name in ("local", "local-embedding"):
        llm = get_llm("local/smollm2", cache_path=cache, progress=False)
        mode = "embedding" if name == "local-embedding" else "logprob"
        return llm, get_embedder("minilm"), RunConfig(test_size=0.3, seed=seed, vote_mode=mode, style_principles=False)
    raise ValueError(f"unknown annotator {name!r}; use {', '.join(ANNOTATORS)}")


def run_one(annotator: str, dataset: str, seed: int, *, cache_dir: Path) -> dict[str, Any]:
    """One pipeline run, scored. Runs of one model on one dataset and seed share a response cache
    (local and local-embedding make the same proposals), so later arms reuse earlier calls."""
    comparisons = load_comparisons(DATASETS[dataset])
    rules = RULES[dataset]
    family = "local" if annotator.startswith("local") else annotator
    with tempfile.TemporaryDirectory(prefix="icai-recovery-") as tmp:
        store = RunStore(tmp)
        llm, embedder, config = make_annotator(annotator, comparisons, rules, seed, cache_dir / f"{family}-{dataset}-{seed}.sqlite")
        started = time.perf_counter()
        result = run(comparisons, llm=llm, embedder=embedder, config=config, store=store)
        wall = time.perf_counter() - started
        usage = llm.usage.as_dict()
        saved = json.loads((Path(tmp) / "constitution.json").read_text())
        # per-item held-out scores, for CIs pooled over seeds: the same requests again, served from the run's cache
        mode = resolve_vote_mode("auto" if config.vote_mode == "embedding" else config.vote_mode, llm)
        test = list(result.test)
        with_c = agreement_scores(judge(test, llm, principles=result.constitution.texts, mode=mode), test)
        without = agreement_scores(judge(test, llm, mode=mode), test)
    constitution = Constitution.from_dict(saved)
    row = {"annotator": annotator, "dataset": dataset, "seed": seed, "model": llm.model, "embedder": embedder.name,
           "n_train": len(result.train), "n_test": len(test), "n_candidates": len(result.candidates), "n_tested": len(result.tested)}  # fmt: skip
    row.update(score_constitution(constitution, result.votes, result.train, rules))
    tested = [text_direction(p.text, rules) for p in result.tested]
    row["tested_by_text"] = {"right": sum(t.direction == 1 for t in tested), "wrong": sum(t.direction == -1 for t in tested),
                             "ambiguous": sum(t.rule is not None and t.direction == 0 for t in tested), "no_rule": sum(t.rule is None for t in tested)}  # fmt: skip
    ev = result.evaluation
    assert ev is not None
    c, d = ev.score_for("constitution"), ev.score_for("default")
    diff = ev.differences.get("constitution")
    row["held_out"] = {
        "constitution": {"agreement": c.agreement, "ci": list(c.ci)} if c else None,
        "default": {"agreement": d.agreement, "ci": list(d.ci)} if d else None,
        "difference": {"mean": diff[0], "ci": list(diff[1])} if diff else None,
    }
    row["held_out_items"] = {"constitution": with_c.tolist(), "default": without.tolist()}
    row["selection"] = selection_metadata(dict(constitution.metadata))
    row["calls"] = usage["calls"]
    row["usage"] = usage
    row["wall_s"] = round(wall, 1)
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds; held-out CIs bootstrap the pooled held-out pairs of all seeds."""
    x = np.concatenate([np.asarray(r["held_out_items"]["constitution"]) for r in rows])
    y = np.concatenate([np.asarray(r["held_out_items"]["default"]) for r in rows])
    mean_diff, diff_ci = paired_bootstrap_diff(x, y)
    keys = ("size", "n_recovered_text", "n_recovered_vote", "wrong_text", "wrong_vote", "duplicates_text", "duplicates_vote",
            "unmatched_text", "n_significant", "n_exploratory", "wrong_significant_text", "wall_s", "calls")  # fmt: skip
    out: dict[str, Any] = {"seeds": [r["seed"] for r in rows], "n_rules": None}
    out.update({k: float(np.mean([r[k] for r in rows])) for k in keys})
    overlaps = [r["selection"]["stability"]["expected_overlap"] for r in rows if (r["selection"].get("stability") or {}).get("expected_overlap") is not None]
    out["stability_expected_overlap"] = float(np.mean(overlaps)) if overlaps else None
    out["n_merges"] = float(np.mean([r["selection"].get("n_merges", 0) for r in rows]))
    out["tested_wrong_text"] = float(np.mean([r["tested_by_text"]["wrong"] for r in rows]))
    out["tested_right_text"] = float(np.mean([r["tested_by_text"]["right"] for r in rows]))
    out["n_recovered_significant_text"] = float(np.mean([len(r["recovered_significant_text"]) for r in rows]))
    out["all_rules_recovered_text"] = sum(r["n_recovered_text"] == len(RULES[r["dataset"]]) for r in rows)
    out["n_rules"] = len(RULES[rows[0]["dataset"]])
    out["held_out"] = {
        "constitution": {"agreement": float(x.mean()), "ci": list(bootstrap_ci(x))},
        "default": {"agreement": float(y.mean()), "ci": list(bootstrap_ci(y))},
        "difference": {"mean": mean_diff, "ci": list(diff_ci)},
        "n": int(x.size),
    }
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| annotator | dataset | seeds | size | recovered (text) | recovered (votes) | wrong dir. (text / votes) "
        "| duplicates (text / votes) | significant | stability | wrong dir. tested | held-out agreement [95% CI] | no constitution | difference [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in report["summary"].items():
        annotator, dataset = key.split(" x ")
        h = s["held_out"]
        c, d, diff = h["constitution"], h["default"], h["difference"]
        lines.append(
            f"| {annotator} | {dataset} | {len(s['seeds'])} | {s['size']:.1f} | {s['n_recovered_text']:.2f}/{s['n_rules']} "
            f"| {s['n_recovered_vote']:.2f}/{s['n_rules']} | {s['wrong_text']:.2f} / {s['wrong_vote']:.2f} "
            f"| {s['duplicates_text']:.2f} / {s['duplicates_vote']:.2f} | {s['n_significant']:.1f} of {s['size']:.1f} "
            f"| {_fmt(s.get('stability_expected_overlap'))} | {s.get('tested_wrong_text', 0):.1f} "
            f"| {c['agreement']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}] | {d['agreement']:.3f} "
            f"| {diff['mean']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}] |"
        )
    return "\n".join(lines)


def rescore_offline_rules(path: Path) -> dict[str, Any]:
    """The direction-checked text judgement of bench/offline_rules.py's saved constitutions (issue 5, no held-out split)."""
    data = json.loads(path.read_text())
    tiers = {}
    for tier, v in data["tiers"].items():
        rows = []
        for p in v["constitution"]:
            tj = text_direction(p["text"], ORTHOGONAL)
            rows.append({"text": p["text"], "agreement": p.get("agreement"), "rule": tj.rule, "direction": tj.direction})
        per_rule = {r.name: sum(x["rule"] == r.name for x in rows) for r in ORTHOGONAL}
        tiers[tier] = {
            "old_keyword_recovered": v.get("n_recovered"),
            "recovered_text": sorted({x["rule"] for x in rows if x["direction"] == 1}),
            "wrong_text": sum(x["direction"] == -1 for x in rows),
            "duplicates_text": sum(max(0, n - 1) for n in per_rule.values()),
            "unmatched_text": sum(x["rule"] is None for x in rows),
            "principles": rows,
        }
    return {"source": str(path.relative_to(ROOT)), "source_date": data.get("date"), "source_command": data.get("command"),
            "note": "scored on the pairs the principles were selected on (no held-out split); one seed", "tiers": tiers}  # fmt: skip


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", nargs="+", default=["fake", "oracle"], choices=ANNOTATORS)
    parser.add_argument("--datasets", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for the local model")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep response caches here (default: a fresh temporary folder)")
    parser.add_argument("--merge", action="store_true", help="keep the other annotator x dataset entries already in --out")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--rescore-offline", action="store_true",
        help="only judge bench/results/offline_rules.json's constitutions by text; writes bench/results/offline_rules_directions.json",
    )
    args = parser.parse_args(argv)
    if args.rescore_offline:
        rescored = rescore_offline_rules(ROOT / "bench" / "results" / "offline_rules.json")
        write_json_atomic(ROOT / "bench" / "results" / "offline_rules_directions.json", rescored)
        for tier, v in rescored["tiers"].items():
            print(f"{tier}: recovered by text {v['recovered_text']}, wrong {v['wrong_text']}, duplicates {v['duplicates_text']}, "
                  f"no rule {v['unmatched_text']} (old keyword check: {v['old_keyword_recovered']}/3)")  # fmt: skip
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"runs": [], "summary": {}, "sessions": []}
    if args.merge and args.out.exists():
        report = json.loads(args.out.read_text())
    new_keys = {f"{a} x {d}" for a in args.annotators for d in args.datasets}
    report["runs"] = [r for r in report["runs"] if f"{r['annotator']} x {r['dataset']}" not in new_keys]
    report["oracle_check"] = {d: check_oracle(load_comparisons(DATASETS[d]), RULES[d]) for d in RULES}
    report["rules"] = {d: [r.name for r in rs] for d, rs in RULES.items()}
    report["oracle_assumptions"] = {"read_accuracy": READ_ACCURACY, "p_rule": P_RULE, "p_wrong": P_WRONG,
                                    "distractor_relevance": DISTRACTOR_RELEVANCE, "alpha_fallback": ALPHA}  # fmt: skip
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="icai-recovery-cache-"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    for annotator in args.annotators:
        for dataset in args.datasets:
            for seed in range(args.seeds):
                row = run_one(annotator, dataset, seed, cache_dir=cache_dir)
                report["runs"].append(row)
                print(
                    f"{annotator} {dataset} seed={seed}: size {row['size']}, recovered text {row['recovered_text']} "
                    f"votes {row['recovered_vote']}, wrong {row['wrong_text']}/{row['wrong_vote']}, dup {row['duplicates_text']}, "
                    f"significant {row['n_significant']}, held-out {row['held_out']['constitution']['agreement']:.3f}, {row['wall_s']} s",
                    file=sys.stderr,
                    flush=True,
                )
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in report["runs"]:
        groups.setdefault(f"{r['annotator']} x {r['dataset']}", []).append(r)
    report["summary"] = {k: summarize(v) for k, v in sorted(groups.items())}
    report["sessions"] = [*report.get("sessions", []), {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores, {platform.platform()}",
        "command": "bench/recovery.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(),
        "added": sorted(new_keys),
        "response_cache": "warm (--cache-dir)" if args.cache_dir else "cold",
    }]  # fmt: skip
    write_json_atomic(args.out, report)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
