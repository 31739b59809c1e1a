"""A hostile dataset through every consumer (issue 27): `icai run` (fake annotator), `icai report`, `icai app`
and every export format.

Texts, prompts, ids, metadata values, a metadata column name and the user's principles carry script,
`<img onerror>`, `"><svg onload>`, `javascript:` links, `<!--<script>`, `<iframe>`, `<style>`, RTL
overrides and a 200 KB response. Every HTML page is parsed with html5lib and must hold no element,
attribute or script a payload introduced (`htmlcheck.check_page`), and the workbench's JSON state must
parse; every export must load in its own format (JSON, YAML, Python).
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apprun import keyword_llm
from htmlcheck import MARKER, check_page
from testdata import data_file

from icai.io import load_comparisons, save_comparisons_csv
from icai.types import Comparison

pytest.importorskip("html5lib")

PAYLOADS = [
    f"<script>{MARKER}('script')</script>",
    f"<img src=x onerror={MARKER}('img')>",
    f"\"><svg onload={MARKER}('svg')>",
    f"'><svg/onload={MARKER}('svg2')>",
    f"<a href=\"javascript:{MARKER}('link')\">click</a>",
    f"<iframe src=\"javascript:{MARKER}('iframe')\"></iframe>",
    "<!--<script>",
    "</script><script>",
    f"<style>body{{background:url(javascript:{MARKER}('css'))}}</style>",
    f"<math><mtext></p><img src=x onerror={MARKER}('mxss')>",
    "\u202eexe.txt\u202c and \u2066isolated\u2069",
    "{{7*7}} ${7*7} {% raw %}",
]
HOSTILE = " ".join(PAYLOADS)
COLUMN = f"\"><svg onload={MARKER}('column')>=x"
PRINCIPLES = [
    f"Select the response that mentions <script>{MARKER}('principle')</script> cats.",
    "Select the response that says <!--<script> first.",
    f"Select the response that is \"><img src=x onerror={MARKER}('principle2')> long.",
]


def hostile_pairs() -> list[Comparison]:
    """The synthetic orthogonal pairs, every field laced with the payloads; one response is 200 KB long."""
    pairs = []
    for i, c in enumerate(load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv"))):
        big = " lorem" * 34_000 if i == 0 else ""  # about 200 KB
        pairs.append(
            dataclasses.replace(
                c,
                id=f"{i}{PAYLOADS[i % len(PAYLOADS)]}",
                prompt=f"{c.prompt} {HOSTILE}",
                text_a=f"{c.text_a} {PAYLOADS[i % len(PAYLOADS)]}{big}",
                text_b=f"{c.text_b} {PAYLOADS[(i + 3) % len(PAYLOADS)]}",
                metadata={"source": PAYLOADS[i % 2], COLUMN: PAYLOADS[2 + i % 2]},
            )
        )
    return pairs


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from icai.cli import main

    tmp = tmp_path_factory.mktemp("hostile")
    data = save_comparisons_csv(hostile_pairs(), tmp / "hostile.csv")
    assert len(data.read_bytes()) > 200_000
    principles = tmp / "principles.json"
    principles.write_text(json.dumps(PRINCIPLES))
    out = tmp / "run"
    code = main(["run", str(data), "--out", str(out), "--model", "fake/keyword", "--embedder", "hash",
                 "--test-size", "0.3", "--principles", str(principles)])
    assert code == 0
    assert main(["report", str(out)]) == 0
    return out


def test_the_hostile_data_reached_the_run(hostile_run: Path) -> None:
    """Not a vacuous test: the payloads are in the run's files, so every page below was given them."""
    comparisons = (hostile_run / "comparisons.csv").read_text(encoding="utf-8")
    for payload in PAYLOADS[:6]:
        assert payload.replace('"', '""') in comparisons
    constitution = json.loads((hostile_run / "constitution.json").read_text(encoding="utf-8"))
    texts = [p["text"] for p in constitution["principles"]] + [p["text"] for p in constitution.get("user_principles", [])]
    assert any(MARKER in t for t in texts) or any("<!--<script>" in t for t in texts), texts


def test_report_html_holds_no_payload_markup(hostile_run: Path) -> None:
    page = (hostile_run / "report.html").read_text(encoding="utf-8")
    assert MARKER in page  # shown, as text
    check_page(page)


def test_every_export_format_loads_in_its_own_format(hostile_run: Path, tmp_path: Path) -> None:
    import shutil

    import yaml

    from icai.app import Workbench
    from icai.cli import main
    from icai.export import EXPORT_FORMATS

    # a constitution of the hostile principles too: version 2, saved by the workbench
    run = tmp_path / "run"
    shutil.copytree(hostile_run, run)
    wb = Workbench(run, llm=keyword_llm())
    try:
        users = [p.id for p in wb.tested if p.origin == "user"]
        assert len(users) == len(PRINCIPLES)
        version = wb.save_version([*users, *(p.id for p in wb.original.principles if p.id not in users)], note=HOSTILE)
    finally:
        wb.close()
    for fmt, spec in EXPORT_FORMATS.items():
        out = tmp_path / spec.file_name
        assert main(["export", str(run / version["file"]), "--format", fmt, "--out", str(out)]) == 0, fmt
        text = out.read_text(encoding="utf-8")
        if out.suffix == ".json":
            json.loads(text)
        elif out.suffix == ".yaml":
            yaml.safe_load(text)
        elif out.suffix == ".py":
            tree = ast.parse(text)
            # the payloads are string constants, never code: no name the payloads call is referenced
            assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and MARKER in n.id], fmt
        assert "<!--<script>" in text or MARKER in text or fmt.startswith("pairwise-"), fmt


@pytest.fixture
def app(hostile_run: Path, tmp_path: Path) -> Iterator[Any]:
    import shutil

    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from icai.app import Workbench
    from icai.app.server import create_app

    copy = tmp_path / "run"
    shutil.copytree(hostile_run, copy)
    wb = Workbench(copy, llm=keyword_llm())
    try:
        yield TestClient(create_app(wb, token="t"), base_url="http://127.0.0.1:8765"), wb
    finally:
        wb.close()


def test_every_workbench_page_holds_no_payload_markup_and_its_state_parses(app: Any) -> None:
    import html5lib

    from icai.app.server import JS
    from icai.export import EXPORT_FORMATS

    client, wb = app
    write = {"X-ICAI-Token": "t", "Content-Type": "application/json"}
    job = client.post("/api/vote", headers=write, json={"text": f"Select the response that is <b>{MARKER}</b> <!--<script>."}).json()
    while client.get(f"/api/jobs/{job['id']}").json()["state"] == "running":
        pass
    ids = [p.id for p in wb.original.principles] + [p.id for p in wb.user_principles()]
    saved = client.post("/api/versions", headers=write, json={"ids": ids, "note": HOSTILE})
    assert saved.status_code == 201
    index = client.get("/")
    state = check_page(index.text, own_script=JS)
    assert state is not None and any(MARKER in p["text"] for p in state["principles"].values())
    options = html5lib.parse(index.text, namespaceHTMLElements=False).findall(".//select[@id='filter-subset']/option")
    subsets = [o.get("value") for o in options if o.get("value")]
    assert any(COLUMN in (o.text or "") for o in options)  # the hostile column is offered, as text
    pages = [f"/principle/{pid}" for pid in ids] + ["/versions", "/versions/1", "/versions/2"]
    for path in pages:
        got = client.get(path)
        assert got.status_code == 200, (path, got.text[:200])
        check_page(got.text, own_script=JS)
    for where in subsets:
        got = client.get("/", params={"where": where})
        assert got.status_code == 200 and 'id="subset-note"' in got.text, where
        assert check_page(got.text, own_script=JS) is not None
    for fmt in EXPORT_FORMATS:
        got = client.get(f"/versions/2/export/{fmt}")
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain"), fmt
        assert got.headers["x-content-type-options"] == "nosniff"


def test_compare_html_holds_no_payload_markup() -> None:
    """compare.html (`icai compare`) from a compare.json whose names, principles and summary carry the payloads."""
    from icai.compare_report import render_compare

    side = {"strength": 0.4, "strength_ci": [0.1, 0.7], "n_for": 7, "n_against": 3}
    rows = [
        {"text": payload, "matched_text": PAYLOADS[-1 - i % len(PAYLOADS)], "similarity": 0.9, "found_in": PAYLOADS[i % 3],
         "a": side, "b": side, "difference": 0.0, "difference_ci": [-0.2, 0.2], "q_value": 0.5,
         "significant": False, "other_side": payload}
        for i, payload in enumerate([*PAYLOADS, *PRINCIPLES])
    ]
    data = {"a": PAYLOADS[0], "b": PAYLOADS[2], "n_pairs": {PAYLOADS[0]: 3, PAYLOADS[2]: 4}, "model": PAYLOADS[1],
            "embedder": PAYLOADS[3], "summary": PAYLOADS, "rows": rows, "min_similarity": PAYLOADS[4]}
    page = render_compare(data)
    assert MARKER in page
    check_page(page)
