"""The workbench's labelling page (icai app on an `icai label` run): its API through the app's guards, and the
page itself in headless Chromium (Selenium), answering by button and by key while the constitution updates."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
from labelrun import prepared_label_run  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from icai.app.server import create_app  # noqa: E402
from icai.labelling import LabelSession  # noqa: E402

TOKEN = "label-test-token"
WRITE = {"X-ICAI-Token": TOKEN}


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[LabelSession, dict[str, str], Any]]:
    out, fake, truth, _ = prepared_label_run(tmp_path)
    s = LabelSession(out, who="app-test")
    try:
        yield s, truth, fake
    finally:
        s.close()


def test_label_api_answers_undoes_and_refuses_bad_requests(session: tuple[LabelSession, dict[str, str], Any]) -> None:
    s, truth, fake = session
    calls = len(fake.requests)
    client = TestClient(create_app(None, token=TOKEN, labeller=s), base_url="http://127.0.0.1:8765")
    assert client.get("/api/state").status_code == 404  # no workbench routes on a labelling run
    assert client.get("/", follow_redirects=False).status_code == 303
    page = client.get("/label")
    assert page.status_code == 200 and "Constitution from your labels" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    state = client.get("/api/label/state").json()
    pair = state["pair"]
    assert pair and state["summary"]["n_labelled"] == 0

    # the write guard: no token, another site's Origin, no JSON, a wrong body
    assert client.post("/api/label/answer", json={"id": pair["id"], "label": "a"}).status_code == 403
    hostile = {**WRITE, "Origin": "http://evil.example"}
    assert client.post("/api/label/answer", headers=hostile, json={"id": pair["id"], "label": "a"}).status_code == 403
    assert client.post("/api/label/answer", headers=WRITE, content=b"a", ).status_code == 403
    for bad in ({"id": pair["id"], "label": "maybe"}, {"id": pair["id"]}, {"id": 3, "label": "a"},
                {"id": pair["id"], "label": "a", "extra": 1}, {"id": "x" * 600, "label": "a"}, {"id": "nope", "label": "a"}):
        r = client.post("/api/label/answer", headers=WRITE, json=bad)
        assert r.status_code in (400, 404) and r.json()["error"], bad
    assert client.get("/api/label/state", headers={"Host": "evil.example"}).status_code == 403
    assert s.records == []

    got = client.post("/api/label/answer", headers=WRITE, json={"id": pair["id"], "label": truth[pair["id"]]}).json()
    assert got["summary"]["n_labelled"] == 1 and got["pair"]["id"] != pair["id"]
    saved = json.loads((s.store.path / "labels.json").read_text())["labels"]
    assert saved == [{"id": pair["id"], "label": truth[pair["id"]], "who": "app-test", "when": saved[0]["when"]}]
    undone = client.post("/api/label/undo", headers=WRITE, json={}).json()
    assert undone["undone"]["id"] == pair["id"] and undone["summary"]["n_labelled"] == 0
    assert undone["pair"]["id"] == pair["id"]  # the same pair is asked again
    assert client.post("/api/label/undo", headers=WRITE, json={"x": 1}).status_code == 400
    assert len(fake.requests) == calls  # the page made no model call


def _chromium() -> Any:
    from test_app_browser import _chromium as chromium

    return chromium()


def test_label_page_in_headless_chromium(session: tuple[LabelSession, dict[str, str], Any], tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from icai.app.server import bound_port, make_server

    s, truth, fake = session
    calls = len(fake.requests)
    server = make_server(None, port=0, labeller=s)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    driver = _chromium()
    try:
        driver.get(f"http://127.0.0.1:{bound_port(server)}/")
        wait = WebDriverWait(driver, 30)
        wait.until(ec.text_to_be_present_in_element((By.ID, "label-counts"), "0 labelled"))
        assert driver.current_url.endswith("/label")

        def shown_id() -> str:
            meta = driver.find_element(By.ID, "label-meta").text
            return meta.split("(id ", 1)[1].split(",", 1)[0]

        first = shown_id()
        assert driver.find_element(By.ID, "label-a").text and driver.find_element(By.ID, "label-b").text
        # answer with the buttons and the keys, as the hidden labels say
        for n in range(1, 9):
            pid = shown_id()
            if n % 2:
                driver.find_element(By.ID, "answer-a" if truth[pid] == "a" else "answer-b").click()
            else:
                driver.find_element(By.TAG_NAME, "body").send_keys(truth[pid])
            wait.until(ec.text_to_be_present_in_element((By.ID, "label-counts"), f"{n} labelled"))
            assert f"Saved: pair {pid}" in driver.find_element(By.ID, "label-message").text
        rows = driver.find_elements(By.CSS_SELECTOR, "#label-constitution tbody tr")
        assert rows and "Select the response that" in rows[0].text
        agreement = rows[0].find_element(By.CSS_SELECTOR, "td.agreement").text
        assert agreement[:1].isdigit() and "[" in agreement, agreement  # the interval is shown
        # undo by key: the count goes down and the last pair is asked again
        last = json.loads((s.store.path / "labels.json").read_text())["labels"][-1]["id"]
        driver.find_element(By.TAG_NAME, "body").send_keys("u")
        wait.until(ec.text_to_be_present_in_element((By.ID, "label-counts"), "7 labelled"))
        assert shown_id() == last and "Took back" in driver.find_element(By.ID, "label-message").text
        driver.find_element(By.ID, "answer-skip").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "label-counts"), "1 skipped"))
        driver.save_screenshot(str(tmp_path / "label.png"))
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)
    records = json.loads((s.store.path / "labels.json").read_text())["labels"]
    assert records[0]["id"] == first and [r["label"] for r in records][-1] == "skip" and len(records) == 8
    assert all(r["who"] == "app-test" for r in records)
    assert len(fake.requests) == calls


def test_icai_app_serves_the_labelling_page_of_a_label_run(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys
    import urllib.request

    pytest.importorskip("uvicorn")
    out, _, _, _ = prepared_label_run(tmp_path)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "icai", "app", str(out), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"(http://\S+/)label", line)
        assert found, line
        page = urllib.request.urlopen(found.group(1) + "label", timeout=30).read().decode()
        assert "Constitution from your labels" in page
        state = json.loads(urllib.request.urlopen(found.group(1) + "api/label/state", timeout=30).read())
        assert state["pair"] and state["summary"]["n_pairs"] == 30
    finally:
        proc.terminate()
        proc.wait(timeout=30)
