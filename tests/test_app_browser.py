"""icai app in a real browser: headless Chromium (Debian packages chromium + chromium-driver) driven by Selenium.

Opens the app on a fake run, checks the constitution is shown, rewords a principle, waits for the new
statistics, and saves a screenshot (checked to be non-blank) under the test's tmp dir; with
ICAI_APP_SCREENSHOT=PATH it is also copied there (docs/app.png is made this way). Under CI=true a
missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from apprun import keyword_llm, make_run, with_group
from testdata import data_file
from testdata import missing as not_installed

from icai.io import load_comparisons

if TYPE_CHECKING:
    from icai.app import Workbench

CHROMIUM = ("/usr/bin/chromium", "chromium")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
REWORDED = "Select the response that mentions 'cat' or 'cats' in its text."


def _find(names: tuple[str, ...]) -> str | None:
    return next((p for p in (shutil.which(n) or (n if os.path.isfile(n) else None) for n in names) if p), None)


def _require_browser() -> tuple[str, str]:
    browser, driver = _find(CHROMIUM), _find(CHROMEDRIVER)
    missing = [name for name, found in (("chromium", browser), ("chromium-driver", driver)) if not found]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the dev extra)")
    if missing:
        not_installed(f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver; pip install selenium)")
    assert browser is not None and driver is not None
    return browser, driver


@pytest.fixture
def app_url(served: tuple[str, Workbench]) -> str:
    return served[0]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Workbench]]:
    """The app on a fake run, served by uvicorn on 127.0.0.1: its URL and its workbench."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from icai.app import Workbench
    from icai.app.server import bound_port, make_server

    run_dir = make_run(with_group(load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))), tmp_path / "demo")
    bench = Workbench(run_dir, llm=keyword_llm(), author="browser-test")
    server = make_server(bench, port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the app did not start"
    try:
        yield f"http://127.0.0.1:{bound_port(server)}/", bench
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        bench.close()


def _non_blank(png: Path) -> None:
    from PIL import Image

    with Image.open(png) as image:
        gray = image.convert("L")
        width, height = gray.size
        dark = sum(1 for v in gray.getdata() if v < 200)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert width >= 800 and height >= 600
    assert dark / (width * height) > 0.01, "the screenshot is almost all white"
    assert colours is None or len(colours) > 16, "the screenshot has almost no colours"


def _chromium() -> Any:
    browser, driver_path = _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def test_reword_a_principle_in_headless_chromium(app_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chromium()
    try:
        driver.get(app_url)
        wait = WebDriverWait(driver, 30)
        draft = wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#draft li")))
        texts = [li.find_element(By.CSS_SELECTOR, ".text").text for li in draft]
        assert texts and all(t.startswith("Select the response that") for t in texts)
        target = next(i for i, t in enumerate(texts) if "mentions '" in t)  # a keyword rule of the fake annotator
        draft[target].find_element(By.CSS_SELECTOR, "button.edit").click()
        box = driver.find_element(By.ID, "principle-text")
        assert box.get_attribute("value") == texts[target]
        box.clear()
        box.send_keys(REWORDED)
        driver.find_element(By.ID, "estimate").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "estimate-result"), "asks the model"))
        assert driver.find_element(By.ID, "estimate-result").get_attribute("class") == "ok"
        wait.until(ec.element_to_be_clickable((By.ID, "run-vote"))).click()
        table = wait.until(ec.presence_of_element_located((By.ID, "new-stats")))
        rows = table.find_elements(By.CSS_SELECTOR, "tr")
        assert any(REWORDED in r.text for r in rows) and any("before:" in r.text for r in rows)
        new_row = next(r for r in rows if REWORDED in r.text)
        agreement = new_row.find_element(By.CSS_SELECTOR, "td.agreement").text
        assert agreement[:1].isdigit(), agreement  # a number, not a dash: the new votes were counted
        assert "model calls made" in driver.find_element(By.ID, "vote-progress-text").text
        driver.find_element(By.ID, "use-new").click()
        assert REWORDED in driver.find_element(By.ID, "draft").text
        shot = tmp_path / "app.png"
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    _non_blank(shot)
    if target_path := os.environ.get("ICAI_APP_SCREENSHOT"):
        Path(target_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target_path)


HOSTILE_PRINCIPLE = "Select the response that says <!--<script> and </script><img src=x onerror=alert(1)> first."


def test_a_principle_that_comments_out_the_script_leaves_save_working_in_chromium(served: tuple[str, Workbench]) -> None:
    """Issue 27: a principle holding "<!--<script>" made the parser swallow the page's script, Save included."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, bench = served
    job = bench.start_vote(HOSTILE_PRINCIPLE, wait=True)
    assert job.state == "done" and job.result is not None, job.error
    new_id = job.result["principle"]["id"]
    driver = _chromium()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#draft li")))  # the script ran
        texts = driver.execute_script("return Object.values(JSON.parse(document.getElementById('state').textContent).principles).map((p) => p.text)")
        assert HOSTILE_PRINCIPLE in texts
        assert driver.execute_script("return document.querySelectorAll('img').length") == 0
        driver.find_element(By.CSS_SELECTOR, f'#candidates tr[data-id="{new_id}"] button.add').click()
        assert HOSTILE_PRINCIPLE in driver.find_element(By.ID, "draft").text
        driver.find_element(By.ID, "save-note").send_keys("<!--<script>")
        driver.find_element(By.ID, "save").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "save-result"), "saved"))
    finally:
        driver.quit()
    saved = bench.versions()[-1]
    assert new_id in saved["ids"] and saved["note"] == "<!--<script>"
