"""icai app under generated requests (Hypothesis, seeded): no 5xx, and the run directory changes only as a
successful request means it to.

Every route of the workbench gets random JSON bodies (any nesting, numbers, lone surrogates), raw bytes,
random path segments and query values, and random or hostile headers (Host, Origin, token, content
type), in-process through Starlette's TestClient at http://127.0.0.1 (nothing leaves the machine).
After each request the background job it started (if any) is waited for, and a sha256 listing of the run
directory is compared with the one before: only a 202 vote may change the app's principles, votes and
the cache, only a 201 save may add its version file, only a 202 evaluation may add its evaluation file.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
from apprun import keyword_llm, make_run, with_group
from testdata import data_file

pytest.importorskip("starlette")
pytest.importorskip("httpx")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from icai.app import Workbench  # noqa: E402
from icai.app.server import TOKEN_HEADER, create_app  # noqa: E402
from icai.export import EXPORT_FORMATS  # noqa: E402
from icai.io import load_comparisons  # noqa: E402

TOKEN = "fuzz-token"
BASE = "http://127.0.0.1:8765"
FUZZ = settings(
    max_examples=int(__import__('os').environ.get('ICAI_FUZZ_EXAMPLES', 1000)),
    derandomize=True,  # the same requests on every run: a failure is reproducible, CI is not flaky
    database=None,
    deadline=30_000,  # ms per request; a loaded 2-core machine, and a vote job runs the fake annotator
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@dataclass
class App:
    client: TestClient
    bench: Workbench
    run_dir: Path
    principle_ids: list[str]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    pairs = with_group(load_comparisons(data_file("synthetic_data_orthogonal_adcbg.csv")))
    run_dir = make_run(pairs, tmp_path_factory.mktemp("fuzz") / "run")
    wb = Workbench(run_dir, llm=keyword_llm(), author="fuzz")
    try:
        ids = [p.id for p in wb.tested]
        yield App(TestClient(create_app(wb, token=TOKEN), base_url=BASE), wb, run_dir, ids)
    finally:
        wb.close()


def listing(run_dir: Path) -> dict[str, str]:
    """sha256 of every file under the run directory, by relative path."""
    return {
        p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _wait_for_jobs(bench: Workbench) -> None:
    deadline = time.monotonic() + 120
    while any(j.state == "running" for j in list(bench.jobs.values())):
        assert time.monotonic() < deadline, "a job did not finish"
        time.sleep(0.01)


CACHE = ("cache.sqlite",)
APP_FILES = ("app_votes", "app_principles.json", *CACHE)


LABEL_FILES = ("labels.json", "labelled.csv", "constitution.json")


def _may_change(method: str, path: str, status: int, response: Any) -> tuple[str, ...]:
    """Prefixes of the run files a request with this outcome is meant to write."""
    if method == "POST" and path in ("/api/label/answer", "/api/label/undo") and status == 200:
        return LABEL_FILES
    if method == "POST" and path == "/api/vote" and status == 202:
        return APP_FILES
    if method == "POST" and path == "/api/versions" and status == 201:
        return (str(response.json()["file"]),)
    if method == "POST" and path.startswith("/api/versions/") and path.endswith("/evaluate") and status == 202:
        return ("evaluation.v", *CACHE)
    return ()


statuses: list[tuple[str, str, int]] = []
"""(method, path, status) of every request sent, to check the generated requests reach success paths too."""


def send(app: App, method: str, path: str, *, body: bytes | None = None, headers: dict[str, Any] | None = None,
         params: dict[str, str] | None = None) -> Any:
    before = listing(app.run_dir)
    response = app.client.request(method, path, content=body, headers=headers, params=params)
    statuses.append((method, path, response.status_code))
    assert response.status_code < 500, (method, path, body[:200] if body else body, headers, response.text[:300])
    _wait_for_jobs(app.bench)
    after = listing(app.run_dir)
    allowed = _may_change(method, path, response.status_code, response)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    unexpected = sorted(name for name in changed if not name.startswith(allowed))
    assert not unexpected, (method, path, response.status_code, unexpected)
    return response


# strategies ------------------------------------------------------------------------------------------------
VALID_TEXTS = [
    "Select the response that mentions 'cat' in its text.",
    "Select the response that is shorter.",
    "Select the response that uses a list.",
]

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=60)  # any code point, lone surrogates included
    | st.sampled_from([*VALID_TEXTS, "", " ", "<!--<script>", "\u202e", "\ud800", "x" * 5000])
)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


@st.composite
def json_body(draw: Any, keys: tuple[str, ...]) -> bytes:
    """A request body: mostly a JSON object over the route's own keys and strangers, sometimes anything at all."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "object", "object", "object", "value", "bytes", "deep"]))
    if kind == "valid":  # the route's own keys with plausible values: these reach the workbench
        plausible = {
            "text": st.sampled_from(VALID_TEXTS).flatmap(lambda t: st.sampled_from(["", " ", " \u200b", " <!--<script>"]).map(lambda x: t + x))
            | st.text(max_size=40),
            "replaces": st.none() | st.sampled_from(app_ids),
            "ids": st.lists(st.sampled_from(app_ids), min_size=1, max_size=5, unique=True),
            "note": st.none() | st.text(max_size=60),
            "id": st.sampled_from(app_ids),
            "label": st.sampled_from(["a", "b", "tie", "skip"]),
        }
        value = {k: draw(plausible[k]) for k in keys}
        return json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return bytes(draw(st.binary(max_size=200)))
    if kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=30_000))
        return (draw(st.sampled_from(["[", "{\"a\":"])) * depth).encode()
    if kind == "value":
        value = draw(json_value)
    else:
        names = draw(st.lists(st.sampled_from([*keys, "text", "ids", "note", "replaces", "__proto__", ""]), max_size=4, unique=True))
        value = {name: draw(json_value) for name in names}
        if "ids" in value and draw(st.booleans()):
            value["ids"] = draw(st.lists(st.sampled_from(app_ids) | st.text(max_size=20), max_size=6))
        if "text" in value and draw(st.booleans()):
            value["text"] = draw(st.sampled_from(VALID_TEXTS)) + draw(st.text(max_size=20))
    return json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


app_ids: list[str] = []  # filled by the first test's fixture use (the run's principle ids)

header_value = st.binary(max_size=40).filter(lambda b: not set(b) & {0, 10, 13}) | st.sampled_from(
    [b"", b"127.0.0.1:8765", b"evil.example", b"localhost", b"[::1]:1", b"\xff\xfe", b"http://127.0.0.1:8765", b"null"]
)


@st.composite
def write_headers(draw: Any) -> dict[str, Any]:
    """Mostly the page's own headers, each sometimes missing or replaced by something odd."""
    headers: dict[str, Any] = {}
    if draw(st.booleans()):
        return {TOKEN_HEADER: TOKEN, "Content-Type": "application/json"}
    if draw(st.integers(0, 9)):
        headers[TOKEN_HEADER] = TOKEN if draw(st.integers(0, 5)) else draw(header_value)
    if draw(st.integers(0, 9)):
        headers["Content-Type"] = "application/json" if draw(st.integers(0, 5)) else draw(header_value)
    if draw(st.integers(0, 3)) == 0:
        headers["Origin"] = draw(st.sampled_from([b"http://127.0.0.1:8765", b"http://evil.example", b"null"]) | header_value)
    if draw(st.integers(0, 5)) == 0:
        headers["Host"] = draw(header_value)
    if draw(st.integers(0, 5)) == 0:
        headers["Sec-Fetch-Site"] = draw(st.sampled_from([b"same-origin", b"cross-site", b"none"]) | header_value)
    if draw(st.integers(0, 7)) == 0:
        headers[draw(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12))] = draw(header_value)
    return headers


segment = st.text(max_size=30) | st.sampled_from(
    ["1", "2", "0", "-1", "9" * 400, "9" * 5000, "1e3", "\u0661", "..", "%2e%2e", "%00", "%ff"]
)


def _segment(draw: Any, known: list[str]) -> str:
    raw = draw(segment | st.sampled_from(known or ["x"]))
    if raw.startswith("%") or raw == "..":
        return raw  # already a URL form
    return quote(raw.encode("utf-8", "surrogatepass"), safe="")


# tests: ICAI_FUZZ_EXAMPLES requests each (default 1,000), a third of that on the labelling app ---------------------------------------------------------------------
def test_fuzz_write_routes(app: App) -> None:
    app_ids[:] = app.principle_ids

    @FUZZ
    @given(data=st.data())
    def run(data: Any) -> None:
        route = data.draw(st.sampled_from(["/api/estimate", "/api/vote", "/api/versions", "/api/versions/{n}/evaluate"]))
        keys = {"/api/estimate": ("text",), "/api/vote": ("text", "replaces"), "/api/versions": ("ids", "note")}.get(route, ())
        path = route.replace("{n}", data.draw(st.sampled_from(["1", "2", "0", "9" * 400]) | st.text(max_size=5).map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe=""))))
        send(app, "POST", path, body=data.draw(json_body(keys)), headers=data.draw(write_headers()))

    statuses.clear()
    run()
    succeeded = {path for method, path, status in statuses if status < 300}
    assert {"/api/estimate", "/api/vote"} <= succeeded, succeeded  # not only refusals were generated


def test_fuzz_read_routes(app: App) -> None:
    app_ids[:] = app.principle_ids
    formats = list(EXPORT_FORMATS)

    @FUZZ
    @given(data=st.data())
    def run(data: Any) -> None:
        route = data.draw(st.sampled_from([
            "/", "/principle/{pid}", "/versions", "/versions/{n}", "/versions/{n}/export/{fmt}", "/api/state",
            "/api/jobs/{jid}", "/api/versions/{n}/estimate", "/{junk}",
        ]))
        path = (
            route.replace("{pid}", _segment(data.draw, app.principle_ids))
            .replace("{n}", _segment(data.draw, ["1", "2"]))
            .replace("{fmt}", _segment(data.draw, formats))
            .replace("{jid}", _segment(data.draw, list(app.bench.jobs) or ["0"]))
            .replace("{junk}", _segment(data.draw, ["api", "versions", "label"]))
        )
        params = data.draw(st.dictionaries(st.sampled_from(["where", "page", "x"]), st.text(max_size=40) | st.sampled_from(["group=odd", "group%3Dx=1", "1", "9" * 400]), max_size=2))
        headers = data.draw(write_headers()) if data.draw(st.booleans()) else None
        send(app, data.draw(st.sampled_from(["GET", "GET", "GET", "POST", "HEAD", "PUT", "DELETE"])), path, params=params, headers=headers)

    run()


@pytest.fixture(scope="module")
def label_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app of an `icai label` run: the labelling page and its API only."""
    from labelrun import prepared_label_run

    from icai.labelling import LabelSession

    out, _, _, pairs = prepared_label_run(tmp_path_factory.mktemp("fuzz-label"))
    session = LabelSession(out, who="fuzz")
    try:
        client = TestClient(create_app(None, token=TOKEN, labeller=session), base_url=BASE)
        yield App(client, cast(Workbench, _NoJobs()), out, [c.id for c in pairs])
    finally:
        session.close()


class _NoJobs:
    jobs: dict[str, Any] = {}


def test_fuzz_labelling_routes(label_app: App) -> None:
    app_ids[:] = label_app.principle_ids

    @settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 3))
    @given(data=st.data())
    def run(data: Any) -> None:
        route = data.draw(st.sampled_from(["/label", "/api/label/state", "/api/label/answer", "/api/label/undo", "/", "/api/state"]))
        body = None
        if route in ("/api/label/answer", "/api/label/undo"):
            if data.draw(st.booleans()):
                good = {"id": data.draw(st.sampled_from(label_app.principle_ids)), "label": data.draw(st.sampled_from(["a", "b", "tie", "skip", "c", ""]))}
                body = json.dumps(good if route.endswith("answer") else {}).encode()
            else:
                body = data.draw(json_body(("id", "label")))
        method = "POST" if body is not None or data.draw(st.booleans()) else "GET"
        send(label_app, method, route, body=body, headers=data.draw(write_headers()))

    statuses.clear()
    run()
    answered = [s for method, path, s in statuses if path == "/api/label/answer" and s == 200]
    assert answered  # some generated answers went through (later undos may take them back): the writes were fuzzed


def test_the_fuzzer_reaches_the_success_paths(app: App) -> None:
    """The generated requests above are not all refusals: with the page's headers, the valid ones succeed."""
    good = {TOKEN_HEADER: TOKEN, "Content-Type": "application/json"}
    vote = send(app, "POST", "/api/vote", body=json.dumps({"text": VALID_TEXTS[1]}).encode(), headers=good)
    assert vote.status_code == 202
    saved = send(app, "POST", "/api/versions", body=json.dumps({"ids": app.principle_ids[:2]}).encode(), headers=good)
    assert saved.status_code == 201
    assert send(app, "GET", "/api/state").status_code == 200
