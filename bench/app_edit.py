"""Time from an edit in `icai app` to its new statistics, for one principle (issue 19).

Measured through the app's HTTP layer (Starlette's TestClient: POST /api/vote, then polling the job
as the page does) until the job reports the new statistics:

- `local`: the demo run (`make demo`: 21 training pairs) with its own model, the packaged SmolLM2
  (local/smollm2, log-prob votes); the model is loaded before the clock starts (its load time is
  recorded apart). The run directory is copied first, so the demo's own stays as it was.
- `fake`: a run on 300 LLMBar pairs (icai/data/llmbar: natural, then adversarial) made here with
  the keyword fake annotator and the hashing embedder, all 300 as training pairs; `--repeats` edits.

    .venv/bin/python bench/app_edit.py --run runs/demo      # writes bench/results/app_edit.json
    .venv/bin/python bench/app_edit.py --skip-local         # the fake part only (seconds)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recovery import git_commit  # noqa: E402

from icai import datasets  # noqa: E402
from icai.files import write_json_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "app_edit.json"
LOCAL_EDIT = "Select the response that tells a story about a cat."
FAKE_EDITS = [f"Select the response that mentions '{w}' in its text." for w in ("list", "code", "python", "step", "example", "number", "answer")]


def _timed_edit(client: Any, token: str, text: str, replaces: str | None) -> dict[str, Any]:
    headers = {"X-ICAI-Token": token, "Content-Type": "application/json"}
    estimate = client.post("/api/estimate", headers=headers, json={"text": text}).json()
    start = time.perf_counter()
    job = client.post("/api/vote", headers=headers, json={"text": text, "replaces": replaces}).json()
    while True:
        state = client.get(f"/api/jobs/{job['id']}").json()
        if state["state"] != "running":
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if state["state"] != "done":
        raise SystemExit(f"the edit failed: {state['error']}")
    new = state["result"]["new"]
    return {
        "text": text,
        "seconds_edit_to_statistics": round(seconds, 3),
        "expected_calls": estimate["calls"],
        "calls_made": state["result"]["calls_made"],
        "new_agreement": new["agreement"],
        "new_relevance": new["relevance"],
    }


def _client(workbench: Any) -> tuple[Any, str, float]:
    """A client of the app, after loading its page once as a browser would (that counts the run's statistics)."""
    from starlette.testclient import TestClient

    from icai.app.server import create_app

    token = "bench"
    client = TestClient(create_app(workbench, token=token), base_url="http://127.0.0.1:8765")
    start = time.perf_counter()
    assert client.get("/").status_code == 200
    return client, token, round(time.perf_counter() - start, 3)


def local_part(run_dir: Path, model: str | None = None) -> dict[str, Any]:
    from icai.app import Workbench
    from icai.llm import get_llm

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / run_dir.name
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("run.lock"))
        model = model or _run_model(copy)
        bench = Workbench(copy, llm_factory=lambda: get_llm(model, progress=False))
        try:
            start = time.perf_counter()
            bench.load_model()
            load = time.perf_counter() - start
            client, token, page = _client(bench)
            top = bench.original.principles[0] if bench.original.principles else None
            edit = _timed_edit(client, token, LOCAL_EDIT, top.id if top else None)
            return {
                "model": model, "run": str(run_dir), "run_model": _run_model(copy), "n_train": len(bench.train),
                "model_load_s": round(load, 2),
                "page_load_s": page, **edit,
            }
        finally:
            bench.close()


def _run_model(run_dir: Path) -> str:
    from icai.store import RunStore

    identity = RunStore.existing(run_dir).read_identity() or {}
    return str((identity.get("config") or {}).get("model"))


def fake_part(n_pairs: int, repeats: int) -> dict[str, Any]:
    import pandas as pd

    from icai.app import Workbench
    from icai.config import RunConfig
    from icai.embed import HashingEmbedder
    from icai.io import load_comparisons
    from icai.llm import LLM, ResponseCache
    from icai.llm.fake import fake_provider
    from icai.pipeline import run
    from icai.store import RunStore

    frames = [pd.read_csv(datasets.path(name)) for name in ("llmbar-natural", "llmbar-adversarial")]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "llmbar.csv"
        pd.concat(frames, ignore_index=True).head(n_pairs).to_csv(data, index=False)
        pairs = load_comparisons(data)
        store = RunStore(Path(tmp) / "run")
        llm = LLM(fake_provider("keyword"), progress=False, cache=ResponseCache(store.cache_path))
        run(pairs, llm=llm, embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", embedder="hash", bootstrap=0), store=store)
        assert llm.cache is not None
        llm.cache.close()
        bench = Workbench(store.path, llm=LLM(fake_provider("keyword"), progress=False))
        try:
            client, token, page = _client(bench)
            edits = [_timed_edit(client, token, text, None) for text in FAKE_EDITS[:repeats]]
        finally:
            bench.close()
    seconds = [e["seconds_edit_to_statistics"] for e in edits]
    return {
        "model": "fake/keyword",
        "data": f"icai/data/llmbar/natural.csv + adversarial.csv, first {n_pairs} rows",
        "n_train": len(pairs),
        "page_load_s": page,
        "median_s": round(statistics.median(seconds), 3),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "edits": edits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo", help="the demo run directory (make demo)")
    parser.add_argument("--model", help="annotator for the local part (default: the run's own model)")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-local", action="store_true", help="the fake part only; a local part already in --out is kept")
    parser.add_argument("--skip-fake", action="store_true", help="the local part only; a fake part already in --out is kept")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import json

    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result["what"] = "seconds from POST /api/vote (a reworded or new principle) to the job reporting its new statistics"

    def provenance() -> dict[str, Any]:
        return {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "commit": git_commit(),
            "command": " ".join(["bench/app_edit.py", *sys.argv[1:]]),
        }

    if not args.skip_fake:
        result["fake"] = {**provenance(), **fake_part(args.pairs, args.repeats)}
        print(f"fake, {result['fake']['n_train']} pairs: median {result['fake']['median_s']} s")
    if not args.skip_local:
        result["local"] = {**provenance(), **local_part(args.run, args.model)}
        print(f"local ({result['local']['model']}), {result['local']['n_train']} pairs: {result['local']['seconds_edit_to_statistics']} s")
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
