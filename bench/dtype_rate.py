"""Forward-pass rate of the packaged SmolLM2 on this CPU in float32 and bfloat16 (issue 20's CPU question).

    .venv/bin/python bench/dtype_rate.py --out bench/results/dtype_rate_cpu.json

One sequence of `--tokens` random token ids, `--reps` forward passes per setting after a warm-up, the
two dtypes alternated (`--rounds` times) so both see the same load. The rate is prompt tokens computed
per second: what voting is bound by on a CPU (bench/results/batch_pairs_cpu_quiet.json computes
414 tokens/s in float32 through the whole vote path). bfloat16 changes the log-probs, so its votes
are not the float32 ones; this measures the arithmetic only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icai.files import write_json_atomic  # noqa: E402


def main() -> int:
    import torch

    from icai.llm.loading import load_model
    from icai.llm.packaged import resolve_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dtype_rate_cpu.json")
    args = parser.parse_args()

    folder, gguf = resolve_weights("smollm2")
    ids = torch.randint(100, 40_000, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    models = {dt: load_model(folder, gguf, label="local/smollm2", device="cpu", dtype=dt).model for dt in ("float32", "bfloat16")}
    seconds: dict[str, list[float]] = {dt: [] for dt in models}
    load = [os.getloadavg()]
    with torch.no_grad():
        for model in models.values():
            model(ids[:, :200])  # warm-up
        for _ in range(args.rounds):
            for dt, model in models.items():
                start = time.perf_counter()
                for _ in range(args.reps):
                    model(ids)
                seconds[dt].append((time.perf_counter() - start) / args.reps)
            load.append(os.getloadavg())
    rates = {dt: args.tokens / (sum(s) / len(s)) for dt, s in seconds.items()}
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python bench/dtype_rate.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_averages": load},
        "versions": {"torch": torch.__version__},
        "model": "smollm2 (packaged SmolLM2-135M)",
        "tokens": args.tokens,
        "seconds_per_pass": seconds,
        "tokens_per_s": {dt: round(r, 1) for dt, r in rates.items()},
        "bfloat16_speedup": round(rates["bfloat16"] / rates["float32"], 2),
    }
    write_json_atomic(args.out, report)
    print(f"float32 {rates['float32']:.0f} tokens/s, bfloat16 {rates['bfloat16']:.0f} tokens/s "
          f"({report['bfloat16_speedup']}x); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
