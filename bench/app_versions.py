"""Time of the workbench's index page (GET /) with 1 and with 401 saved constitution versions (issue 27).

A run on icai/data/icai_synthetic/synthetic_data_orthogonal_adcbg.csv is made with the keyword fake
annotator and the hashing embedder; the page is fetched through the app's HTTP layer (Starlette's
TestClient) `--repeats` times with version 1 only, then again after 400 versions have been saved
through the workbench (each a reordering of the run's constitution). The first fetch after opening
the run is reported apart (cold), the others as a median.

    .venv/bin/python bench/app_versions.py                      # writes bench/results/app_versions.json
    PYTHONPATH=<checkout of the code before> .venv/bin/python bench/app_versions.py --label before
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "app_versions.json"
DATA = "synthetic-orthogonal"


def _commit() -> str:
    """The commit of the icai package measured (PYTHONPATH may point at another checkout than this script's)."""
    import icai

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(icai.__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _make_run(out: Path) -> Path:
    from icai.datasets import load
    from icai.embed import HashingEmbedder
    from icai.llm import LLM, ResponseCache
    from icai.llm.fake import fake_provider
    from icai.pipeline import RunConfig, run
    from icai.store import RunStore

    store = RunStore(out)
    llm = LLM(fake_provider("keyword"), progress=False)
    llm.cache = ResponseCache(store.cache_path)
    try:
        run(load(DATA), llm=llm, embedder=HashingEmbedder(),
            config=RunConfig(model="fake/keyword", embedder="hash", test_size=0.3, bootstrap=20), store=store)
    finally:
        llm.cache.close()
    return out


def _fetch(run_dir: Path, repeats: int) -> dict[str, Any]:
    """Open the run in a fresh workbench and fetch / `repeats` times: the first (cold) and the median of the rest."""
    from starlette.testclient import TestClient

    from icai.app import Workbench
    from icai.app.server import create_app
    from icai.llm import LLM
    from icai.llm.fake import fake_provider

    wb = Workbench(run_dir, llm=LLM(fake_provider("keyword"), progress=False), author="bench")
    try:
        client = TestClient(create_app(wb, token="bench"), base_url="http://127.0.0.1:8765")
        times = []
        size = 0
        for _ in range(repeats):
            start = time.perf_counter()
            page = client.get("/")
            times.append(time.perf_counter() - start)
            assert page.status_code == 200, page.text[:200]
            size = len(page.content)
        return {
            "versions": len(wb.store.constitution_versions()),
            "cold_s": round(times[0], 3),
            "median_warm_s": round(statistics.median(times[1:]), 3) if len(times) > 1 else None,
            "page_bytes": size,
        }
    finally:
        wb.close()


def _save_versions(run_dir: Path, n: int) -> float:
    from icai.app import Workbench
    from icai.llm import LLM
    from icai.llm.fake import fake_provider

    wb = Workbench(run_dir, llm=LLM(fake_provider("keyword"), progress=False), author="bench")
    try:
        ids = [p.id for p in wb.original.principles]
        start = time.perf_counter()
        for i in range(n):
            shift = i % len(ids)
            wb.save_version(ids[shift:] + ids[:shift], note=f"bench version {i + 2}")
        return time.perf_counter() - start
    finally:
        wb.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=400, help="versions saved after the first (default 400)")
    parser.add_argument("--repeats", type=int, default=5, help="fetches of the page per point (default 5)")
    parser.add_argument("--label", default="after", help="key of this measurement in the results file")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = _make_run(Path(tmp) / "run")
        one = _fetch(run_dir, args.repeats)
        save_s = _save_versions(run_dir, args.versions)
        many = _fetch(run_dir, args.repeats)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": "bench/app_versions.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "load_average_at_start": [round(v, 2) for v in load_start],
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "data": f"icai/data/{__import__('icai.datasets', fromlist=['info']).info(DATA).file}",
        "model": "fake/keyword",
        "one_version": one,
        "many_versions": many,
        "saving_versions_s": round(save_s, 2),
    }
    data: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data["what"] = "seconds to serve the workbench's index page (GET /) with 1 and with 401 constitution versions"
    data[args.label] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
