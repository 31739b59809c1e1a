"""icai app against hostile input and hostile networks (issue 27): one test per reproduction of the issue."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apprun import keyword_llm, make_run, with_group
from testdata import data_file

pytest.importorskip("starlette")
pytest.importorskip("httpx")
html5lib = pytest.importorskip("html5lib")

from starlette.testclient import TestClient  # noqa: E402

from icai.app import Workbench  # noqa: E402
from icai.app.server import JS, TOKEN_HEADER, create_app  # noqa: E402
from icai.io import load_comparisons  # noqa: E402

TOKEN = "test-token"
WRITE = {TOKEN_HEADER: TOKEN, "Content-Type": "application/json"}
COMMENT_OUT = "Select the response that says <!--<script> first."


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pairs = with_group(load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv")))
    return make_run(pairs, tmp_path_factory.mktemp("app-security") / "run")


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


@pytest.fixture
def bench(run_dir: Path) -> Iterator[Workbench]:
    wb = Workbench(run_dir, llm=keyword_llm(), author="tester")
    try:
        yield wb
    finally:
        wb.close()


@pytest.fixture
def client(bench: Workbench) -> TestClient:
    return TestClient(create_app(bench, token=TOKEN), base_url="http://127.0.0.1:8765")


def _wait(client: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.get(f"/api/jobs/{job['id']}").json()
        if state["state"] != "running":
            return state
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def page_state(page: str) -> dict[str, Any]:
    """The page's JSON state as a browser's HTML parser sees it; the page's own script must follow it intact."""
    scripts = html5lib.parse(page, namespaceHTMLElements=False).findall(".//script")
    data = [s for s in scripts if s.get("type") == "application/json"]
    assert len(data) == 1 and data[0].get("id") == "state"
    assert scripts[-1].get("type") is None and scripts[-1].text == JS  # not swallowed by the data block
    state: dict[str, Any] = json.loads(data[0].text or "")
    return state


# 1. one principle cannot switch the workbench off ------------------------------------------------------------
def test_a_principle_that_opens_a_comment_and_a_script_leaves_the_page_working(client: TestClient, bench: Workbench) -> None:
    job = client.post("/api/vote", headers=WRITE, json={"text": COMMENT_OUT})
    assert job.status_code == 202
    done = _wait(client, job.json())
    assert done["state"] == "done", done["error"]
    state = page_state(client.get("/").text)
    assert COMMENT_OUT in [p["text"] for p in state["principles"].values()]
    # after a restart, from app_principles.json
    bench.close()
    again = Workbench(bench.store.path, llm=keyword_llm())
    try:
        state = page_state(TestClient(create_app(again, token=TOKEN), base_url="http://127.0.0.1:8765").get("/").text)
        assert COMMENT_OUT in [p["text"] for p in state["principles"].values()]
    finally:
        again.close()


def test_a_principle_from_icai_run_principles_leaves_the_page_working(tmp_path: Path, orthogonal_csv: Path) -> None:
    from icai.cli import main

    principles = tmp_path / "principles.txt"
    principles.write_text(f"{COMMENT_OUT}\nSelect the response that ends with </script><script>alert(1)</script>\n")
    out = tmp_path / "run"
    code = main(["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash",
                 "--principles", str(principles), "--test-size", "0.3"])
    assert code == 0
    wb = Workbench(out, llm=keyword_llm())
    try:
        state = page_state(TestClient(create_app(wb, token=TOKEN), base_url="http://127.0.0.1:8765").get("/").text)
    finally:
        wb.close()
    texts = [p["text"] for p in state["principles"].values()]
    assert COMMENT_OUT in texts and any("</script><script>" in t for t in texts)
