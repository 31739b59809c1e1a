"""The HTTP layer of `icai app`: Starlette routes over a Workbench, server-rendered HTML and a little vanilla JS.

Safe by default: the app binds 127.0.0.1; every request must name a host of the host policy
(`icai.app.hosts`: loopback names, plus the --allow-host names when bound elsewhere), so DNS
rebinding finds nothing; every write is a JSON POST that carries the page's token in X-ICAI-Token and,
when the browser sends one, an Origin of this server (so another site's page cannot write: CSRF).
Every body and path parameter is checked by `icai.app.schema` (a 4xx with one sentence otherwise; bodies
over 64 KB get 413 before they are read); every response carries a CSP and the other security headers;
the page's JSON state is written by `icai.htmlsafe.json_script`. No external assets.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from icai.app.hosts import HostPolicy, host_policy
from icai.app.schema import (
    MAX_BODY_BYTES,
    RequestError,
    export_format,
    job_id,
    page_number,
    parse_body,
    parse_subset,
    principle_id,
    subset_value,
    version_number,
)
from icai.app.workbench import MAX_PRINCIPLE_CHARS, Workbench, stats_dict
from icai.errors import DataError
from icai.export import EXPORT_FORMATS
from icai.htmlsafe import json_script
from icai.labelling import LabelSession
from icai.report import CSS as REPORT_CSS
from icai.report import analysis_sections, pair_html
from icai.textfmt import DASH, escape, num, p_value

TOKEN_HEADER = "X-ICAI-Token"

APP_CSS = """
.app-grid { display: grid; grid-template-columns: 1fr; gap: 1em; }
textarea { width: 100%; min-height: 4.5em; font: inherit; box-sizing: border-box; }
button { font: inherit; padding: .2em .6em; cursor: pointer; } button.small { font-size: .8em; padding: .05em .4em; }
.box { border: 1px solid #dde2ea; padding: .6em .9em; margin: .6em 0; background: #fbfcfe; }
.error { color: #c0392b; font-weight: 600; } .ok { color: #1e7b34; font-weight: 600; }
#draft li { margin: .3em 0; } #draft .text { display: inline-block; min-width: 30em; }
progress { width: 24em; } th.sortable { cursor: pointer; } th.sortable:after { content: " \\2195"; color: #aab; }
.filters label { margin-right: 1em; } tr.user td:nth-child(2) { background: #f2f7ff; }
.compare td, .compare th { text-align: right; } .compare td:first-child, .compare th:first-child { text-align: left; }
"""


def _ci_span(s: Mapping[str, Any] | None) -> str:
    if not s or not s.get("agreement_ci"):
        return ""
    low, high = s["agreement_ci"]
    return f' <span class="ci">[{num(low)}, {num(high)}]</span>'


def _page(title: str, body: str, *, token: str) -> HTMLResponse:
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="icai-token" content="{escape(token)}">\n<title>{escape(title)}</title>\n'
        f"<style>{REPORT_CSS}{APP_CSS}</style>\n</head>\n<body>\n{body}\n<script>{JS}</script>\n</body>\n</html>\n"
    )
    return HTMLResponse(page)


CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
"""Nothing is loaded from elsewhere; the page may talk only to this server."""

STAT_COLUMNS = ["agreement [95% CI]", "relevance", "kappa", "strength", "for", "against", "q-value", "verdict"]


def _stat_cells(s: Mapping[str, Any] | None) -> list[str]:
    if s is None:
        return [DASH] * len(STAT_COLUMNS)
    return [
        num(s.get("agreement")) + _ci_span(s),
        num(s.get("relevance")),
        num(s.get("kappa")),
        num(s.get("strength")),
        escape(s.get("n_for")),
        escape(s.get("n_against")),
        p_value(s.get("q_value")),
        escape(s.get("verdict") or DASH),
    ]


def _sort_key(value: Any) -> str:
    return "" if value is None else escape(value)


def _candidates_table(rows: Iterable[Mapping[str, Any]]) -> str:
    head = ["rank", "principle", "origin", *STAT_COLUMNS, "in resamples", ""]
    ths = "".join(f'<th class="sortable" data-col="{i}">{escape(h)}</th>' if h else "<th></th>" for i, h in enumerate(head))
    body = []
    for r in rows:
        s = r["stats"] or {}
        sort_values = [
            r["rank"] if r["rank"] is not None else 999,
            r["text"],
            r["origin"],
            s.get("agreement"),
            s.get("relevance"),
            s.get("kappa"),
            s.get("strength"),
            s.get("n_for"),
            s.get("n_against"),
            s.get("q_value"),
            s.get("verdict"),
            r["stability"],
        ]
        cells = [
            f"#{r['rank']}" if r["rank"] else DASH,
            escape(r["text"]) + (f' <span class="muted">(rewords {escape(r["replaces"])})</span>' if r["replaces"] else ""),
            escape(r["origin"]) + (f' <span class="muted">· {escape(r["hint"])}</span>' if r["hint"] else ""),
            *_stat_cells(r["stats"]),
            num(r["stability"]),
            f'<a href="principle/{escape(r["id"])}">pairs</a> <button class="small edit" data-id="{escape(r["id"])}">edit</button> '
            f'<button class="small add" data-id="{escape(r["id"])}">add</button>',
        ]
        tds = "".join(f'<td data-sort="{_sort_key(v)}">{c}</td>' for v, c in zip([*sort_values, ""], cells, strict=True))
        cls = ' class="user"' if r["origin"] == "user" else ""
        body.append(
            f'<tr{cls} data-id="{escape(r["id"])}" data-origin="{escape(r["origin"])}" data-verdict="{escape(s.get("verdict") or "")}">{tds}</tr>'
        )
    return (
        '<div class="table-wrap"><table id="candidates"><thead><tr>'
        + ths
        + "</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )


def _filters(wb: Workbench, rows: list[dict[str, Any]], subset: tuple[str, str] | None) -> str:
    origins = sorted({r["origin"] for r in rows})
    origin_opts = "".join(f'<option value="{escape(o)}">{escape(o)}</option>' for o in origins)
    meta = wb.metadata_values()
    meta_form = ""
    if meta:
        options = "".join(
            f'<option value="{escape(subset_value(col, v))}"{" selected" if subset == (col, v) else ""}>{escape(col)} = {escape(v)}</option>'
            for col, values in meta.items()
            for v in values
        )
        meta_form = (
            '<form method="get" action="" id="subset-form" style="display:inline">'
            '<label>pairs: <select name="where" id="filter-subset" onchange="this.form.submit()">'
            f'<option value="">all training pairs</option>{options}</select></label></form>'
        )
    note = ""
    if subset is not None:
        note = (
            f'<p class="warning" id="subset-note">Statistics on the {len(wb._pairs(subset))} training pairs with '
            f"{escape(subset[0])} = {escape(subset[1])} (no model calls: the run's votes, counted on these pairs).</p>"
        )
    return (
        '<div class="filters">'
        '<label>text: <input id="filter-text" type="search" placeholder="filter principles"></label>'
        f'<label>origin: <select id="filter-origin"><option value="">any</option>{origin_opts}</select></label>'
        '<label>significance: <select id="filter-verdict"><option value="">any</option>'
        '<option value="significant">significant</option><option value="exploratory">exploratory</option></select></label>'
        f"{meta_form}</div>{note}"
    )


INDEX_VERSIONS = 20
"""Versions listed on the index page (the newest); the versions page lists them all, VERSIONS_PER_PAGE at a time."""

VERSIONS_PER_PAGE = 50


def _versions_table(versions: list[dict[str, Any]]) -> str:
    """The versions given, newest first."""
    rows = []
    for v in reversed(versions):
        ch = v["changes"] or {}
        summary = (
            "the run's constitution"
            if v["version"] == 1
            else ", ".join(
                part
                for part in (
                    f"{len(ch.get('added', []))} added" if ch.get("added") else "",
                    f"{len(ch.get('removed', []))} removed" if ch.get("removed") else "",
                    f"{len(ch.get('reworded', []))} reworded" if ch.get("reworded") else "",
                    "reordered" if ch.get("reordered") else "",
                )
                if part
            )
            or "no change"
        )
        rows.append(
            f'<tr><td><a href="versions/{v["version"]}">v{v["version"]}</a></td><td>{escape(v["file"])}</td>'
            f"<td>{len(v['ids'])}</td><td>{escape(v['author'] or DASH)}</td><td>{escape(v['created_at'] or DASH)}</td>"
            f"<td>{escape(summary)}</td><td>{escape(v['note'] or '')}</td><td>{'yes' if v['evaluated'] else 'no'}</td></tr>"
        )
    return (
        '<table id="versions"><thead><tr><th>version</th><th>file</th><th>principles</th><th>by</th><th>when (UTC)</th>'
        "<th>changes</th><th>note</th><th>evaluated</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _versions_section(wb: Workbench) -> str:
    shown = wb.versions(last=INDEX_VERSIONS)
    total = wb.version_count()
    more = (
        f'<p class="muted" id="versions-more">The newest {len(shown)} of {total} versions; '
        '<a href="versions">all versions</a>.</p>'
        if total > len(shown)
        else ""
    )
    return f'<section id="versions-section"><h2>Versions</h2>{_versions_table(shown)}{more}</section>'


def _versions_page(wb: Workbench, token: str, page_number: int) -> HTMLResponse:
    listing = wb.store.constitution_versions()
    pages = max(1, -(-len(listing) // VERSIONS_PER_PAGE))
    if page_number > pages:
        raise RequestError(f"there are only {pages} pages of versions", 404)
    stop = len(listing) - (page_number - 1) * VERSIONS_PER_PAGE
    chosen = listing[max(0, stop - VERSIONS_PER_PAGE) : stop]
    versions = [wb.version(n) for n, _ in chosen]
    links = []
    if page_number > 1:
        links.append(f'<a href="versions?page={page_number - 1}" id="newer">newer</a>')
    if page_number < pages:
        links.append(f'<a href="versions?page={page_number + 1}" id="older">older</a>')
    body = (
        '<p><a href="./">&larr; back to the workbench</a></p>'
        f"<h1>Versions (page {page_number} of {pages}, newest first)</h1>"
        f"{_versions_table(versions)}<p>{' · '.join(links)}</p>"
    )
    return _page(f"versions, page {page_number}", body, token=token)


def _index(wb: Workbench, token: str, subset: tuple[str, str] | None, analysis: str) -> HTMLResponse:
    rows = wb.rows(subset=subset)
    latest = wb.versions(last=1)[-1]
    by_id = {r["id"]: r for r in rows}
    state = {
        "draft": latest["ids"],
        "latest_version": latest["version"],
        "principles": {r["id"]: {"text": r["text"], "stats": r["stats"]} for r in rows},
        "max_chars": MAX_PRINCIPLE_CHARS,
    }
    for pid, text in zip(latest["ids"], latest["texts"], strict=True):
        state["principles"].setdefault(pid, {"text": text, "stats": None})
    meta = wb.original.metadata
    facts = [
        ("run directory", str(wb.store.path)),
        ("model of the run", meta.get("model", DASH)),
        ("model for edits", wb.model_name or DASH),
        ("training pairs", len(wb.train)),
        ("held-out pairs", len(wb.test)),
        ("candidates voted", len(wb.tested)),
        ("written in the app", len(wb.user)),
        ("latest version", f"v{latest['version']} ({latest['file']})"),
    ]
    fact_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    if wb.model_name and meta.get("model") and wb.model_name != meta.get("model"):
        fact_rows += (
            '<tr><td colspan="2" class="warning" id="model-warning">Edits are voted by another model than the run\'s: '
            "compare their statistics with each other, not with the run's.</td></tr>"
        )
    draft_note = "" if all(i in by_id for i in latest["ids"]) else '<p class="muted">Some principles of the latest version have no votes here.</p>'
    body = f"""
<header id="summary"><h1>icai workbench: {escape(wb.store.path.name)}</h1>
<table id="run-facts">{fact_rows}</table></header>
<section id="constitution-section"><h2>Constitution (draft from v{latest["version"]})</h2>
<p class="muted">Accept candidates with <em>add</em>, reject with <em>remove</em>, reorder with the arrows; saving writes the next
version through the run's store (the earlier ones stay).</p>
<ol id="draft"></ol>{draft_note}
<div class="box"><label>note for this version: <input id="save-note" size="50" maxlength="{MAX_PRINCIPLE_CHARS}"></label>
<button id="save">Save as new version</button> <span id="save-result" role="status"></span></div>
</section>
<section id="editor-section"><h2>Edit or add a principle</h2>
<div class="box">
<p class="muted" id="editing">Writing a new principle.</p>
<textarea id="principle-text" maxlength="{MAX_PRINCIPLE_CHARS + 1000}" placeholder="Select the response that ..."></textarea>
<input type="hidden" id="replaces" value="">
<button id="estimate">Check and count calls</button> <button id="run-vote" disabled>Vote it on the training pairs</button>
<button id="new-principle">Clear</button>
<p id="estimate-result" role="status"></p>
<progress id="vote-progress" max="1" value="0" hidden></progress> <span id="vote-progress-text"></span>
<div id="vote-result"></div>
</div></section>
<section id="candidates-section"><h2>Candidates</h2>
{_filters(wb, rows, subset)}
{_candidates_table(rows)}
</section>
{_versions_section(wb)}
{analysis}
{json_script("state", state)}
"""
    return _page(f"icai workbench: {wb.store.path.name}", body, token=token)


def _principle_page(wb: Workbench, token: str, principle_id: str) -> HTMLResponse:
    p = wb.principle(principle_id)
    s = wb.stats().get(p.id)
    pairs = wb.pairs_for(p.id)
    parts = [
        f'<p><a href="../">&larr; back to the workbench</a></p><h1 id="principle-text">{escape(p.text)}</h1>',
        f'<p class="muted">id {escape(p.id)} · origin {escape(p.origin)}</p>',
        '<table class="compare"><thead><tr>' + "".join(f"<th>{escape(c)}</th>" for c in STAT_COLUMNS) + "</tr></thead><tbody><tr>"
        + "".join(f"<td>{c}</td>" for c in _stat_cells(stats_dict(s))) + "</tr></tbody></table>",
    ]
    for value, label in (("for", "Voted for: it picks the human-preferred response"),
                         ("against", "Voted against: it picks the rejected response")):
        parts.append(f'<section id="pairs-{value}"><h2>{escape(label)} ({len(pairs[value])} shown)</h2>')
        for row in pairs[value]:
            meta = "; ".join(f"{k} = {v}" for k, v in row["metadata"].items())
            parts.append(pair_html(row) + (f'<p class="muted">{escape(meta)}</p>' if meta else ""))
        if not pairs[value]:
            parts.append(f'<p class="muted">No training pair where it voted {value}.</p>')
        parts.append("</section>")
    return _page(p.text[:60], "\n".join(parts), token=token)


def _version_page(wb: Workbench, token: str, n: int) -> HTMLResponse:
    v = wb.version(n)
    items = "".join(f"<li>{escape(t)}</li>" for t in v["texts"])
    changes = _diff_html(v["changes"])
    exports = " ".join(f'<a href="{n}/export/{escape(f)}">{escape(f)}</a>' for f in EXPORT_FORMATS)
    evaluation = wb.evaluation(n)
    scores = ""
    if evaluation:
        scores = "".join(
            f"<tr><td>{escape(s.get('name'))}</td><td>{num(s.get('agreement'))} "
            f'<span class="ci">[{num((s.get("ci") or [None, None])[0])}, {num((s.get("ci") or [None, None])[1])}]</span></td>'
            f"<td>{escape(s.get('n'))}</td></tr>"
            for s in evaluation.get("scores", [])
        )
        scores = f'<table id="version-scores"><thead><tr><th>annotator</th><th>agreement [95% CI]</th><th>n</th></tr></thead><tbody>{scores}</tbody></table>'
    body = f"""<p><a href="../">&larr; back to the workbench</a></p>
<h1>Version {n}: {escape(v["file"])}</h1><p class="muted">by {escape(v["author"] or DASH)} at {escape(v["created_at"] or DASH)} · {escape(v["note"] or "")}</p>
<ol id="version-principles">{items}</ol>
<h2>Changes against the version before</h2>{changes}
<h2>Held-out evaluation</h2>{scores or '<p class="muted" id="no-evaluation">Not evaluated yet.</p>'}
<button id="estimate-evaluate" data-version="{n}">Count calls for a held-out evaluation</button>
<button id="run-evaluate" data-version="{n}" disabled>Evaluate on the held-out split</button>
<p id="evaluate-estimate" role="status"></p><progress id="evaluate-progress" max="1" value="0" hidden></progress>
<span id="evaluate-progress-text"></span><div id="evaluate-result"></div>
<h2>Export</h2><p id="exports">{exports}</p>"""
    return _page(f"version {n}", body, token=token)


def _diff_html(changes: Mapping[str, Any] | None) -> str:
    """The changes of a version as a short list (- removed, + added, ~ reworded, order), with the raw record below."""
    if not changes:
        return '<p id="version-diff">The run\'s own constitution.</p>'
    items = [f'<li class="flag">&minus; {escape(r["text"])}</li>' for r in changes.get("removed", [])]
    items += [f'<li class="ok">+ {escape(a["text"])}</li>' for a in changes.get("added", [])]
    items += [
        f'<li>~ {escape(r["from"]["text"])} <strong>&rarr;</strong> {escape(r["to"]["text"])}</li>' for r in changes.get("reworded", [])
    ]
    if changes.get("reordered"):
        items.append("<li>the order of the principles kept from before changed</li>")
    listed = "".join(items) or "<li>no change</li>"
    raw = escape(json.dumps(changes, indent=2, ensure_ascii=False))
    return (
        f'<p class="muted">against version {escape(changes.get("against_version", "?"))}</p><ul id="version-diff">{listed}</ul>'
        f"<details><summary>the change record</summary><pre>{raw}</pre></details>"
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Sent with every response, whatever its route or status."""

DATA_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
"""The policy of every response that is not a page (JSON, plain text, exports): nothing runs, nothing loads."""

MAX_RUNNING_JOBS = 8
"""Model jobs queued at once; more get 429 (each waits for the model in a thread of its own)."""


class _Guard:
    """ASGI middleware in front of every route: the host policy, the body size limit, the security headers."""

    def __init__(self, app: Any, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                html_page = headers.get("content-type", "").startswith("text/html")
                headers["Content-Security-Policy"] = CSP if html_page else DATA_CSP
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        headers = Headers(scope=scope)
        refusal: Response | None = None
        if not self.policy.allows(headers.get("host", "")):
            refusal = PlainTextResponse("this host name is not served here", status_code=403)
        else:
            declared = headers.get("content-length")
            if declared is not None and not (declared.isascii() and declared.isdigit() and len(declared) < 19):
                refusal = JSONResponse({"error": "the Content-Length header is not a number"}, status_code=400)
            elif declared is not None and int(declared) > MAX_BODY_BYTES:
                refusal = JSONResponse({"error": f"the request body is larger than {MAX_BODY_BYTES // 1024} KB"}, status_code=413)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        await self.app(scope, receive, secured)


async def _read_body(request: Request) -> bytes:
    """The request body, read in chunks and refused (413) as soon as it passes MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(f"the request body is larger than {MAX_BODY_BYTES // 1024} KB", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    workbench: Workbench | None,
    *,
    policy: HostPolicy | None = None,
    token: str | None = None,
    labeller: LabelSession | None = None,
) -> Starlette:
    """The Starlette app over `workbench`, and over `labeller`'s labelling page (`icai.app.labelpage`) when given.

    Args:
        workbench: the run to browse and edit; None serves the labelling page only (an `icai label` run).
        policy: the host names (any port) a request's Host header and Origin may name (`icai.app.hosts`;
            default: the loopback names); others get 403.
        token: the write token the page carries (default: a random one per app).
    """
    token = token or secrets.token_urlsafe(24)
    token_bytes = token.encode("ascii")
    policy = policy or host_policy()
    if workbench is None and labeller is None:
        raise ValueError("create_app needs a workbench or a labelling session")
    wb = cast(Workbench, workbench)  # the workbench routes below are served only when there is one

    def write_refusal(request: Request) -> str | None:
        """Why a write request is refused (CSRF rules); None when it may go ahead."""
        origin = request.headers.get("origin")
        if origin is not None:
            scheme, sep, rest = origin.rstrip("/").lower().partition("://")
            same = f"{request.url.scheme}://{request.headers.get('host', '')}".lower() == f"{scheme}{sep}{rest}"
            if not (sep and same and policy.allows(rest)):
                return f"requests from {origin[:100]} may not change this run; use the page this server serves"
        if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            return "cross-site requests may not change this run"
        # compared as bytes: a header may hold any Latin-1 text, compare_digest takes only ASCII str
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER.lower(), "").encode("latin-1"), token_bytes):
            return "this request lacks the page's token; reload the workbench page"
        if not (request.headers.get("content-type") or "").startswith("application/json"):
            return "write requests must send JSON"
        return None

    def guarded(handler: Callable[[Request], Awaitable[Response]], *, writes: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if writes:
                why = write_refusal(request)
                if why is not None:
                    return JSONResponse({"error": why}, status_code=403)
            try:
                return await handler(request)
            except RequestError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except DataError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return endpoint

    def page(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """A page route: a refusal is plain text, as a browser shows it."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestError as exc:
                return PlainTextResponse(str(exc), status_code=exc.status)
            except DataError as exc:
                return PlainTextResponse(str(exc), status_code=404)

        return endpoint

    async def body(request: Request, kind: str) -> dict[str, Any]:
        return parse_body(await _read_body(request), kind)

    def subset(request: Request) -> tuple[str, str] | None:
        return parse_subset(request.query_params.get("where"), wb.metadata_columns)

    def jobs_free() -> None:
        running = sum(1 for j in list(wb.jobs.values()) if j.state == "running")
        if running >= MAX_RUNNING_JOBS:
            raise RequestError(f"the workbench is busy with {running} jobs; wait for them to finish", 429)

    analysis: list[str] = []

    def analysis_html() -> str:
        """The report's sections, made once: they read only the run's own files, which the app never writes."""
        if not analysis:
            analysis.append("".join(analysis_sections(wb.store.path)))
        return analysis[0]

    async def index(request: Request) -> Response:
        where = subset(request)
        return await run_in_threadpool(lambda: _index(wb, token, where, analysis_html()))

    async def versions_list(request: Request) -> Response:
        number = request.query_params.get("page") or "1"
        return await run_in_threadpool(_versions_page, wb, token, page_number(number))

    async def principle(request: Request) -> Response:
        return await run_in_threadpool(_principle_page, wb, token, principle_id(request.path_params["pid"]))

    async def version(request: Request) -> Response:
        return await run_in_threadpool(_version_page, wb, token, version_number(request.path_params["n"]))

    async def export(request: Request) -> Response:
        n = version_number(request.path_params["n"])
        fmt = export_format(request.path_params["fmt"], list(EXPORT_FORMATS))
        try:
            text = await run_in_threadpool(wb.export, n, fmt)
        except DataError as exc:
            return PlainTextResponse(str(exc), status_code=404 if "not found" in str(exc) else 400)
        name = f"constitution.v{n}.{fmt}{Path(EXPORT_FORMATS[fmt].file_name).suffix}"
        return PlainTextResponse(text, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def state(request: Request) -> Response:
        rows = await run_in_threadpool(wb.rows, subset=subset(request))
        return JSONResponse({"principles": rows, "versions": await run_in_threadpool(wb.versions)})

    async def estimate(request: Request) -> Response:
        data = await body(request, "estimate")
        return JSONResponse(wb.vote_estimate(data["text"]))

    async def start_vote(request: Request) -> Response:
        data = await body(request, "vote")
        jobs_free()
        job = wb.start_vote(data["text"], replaces=data["replaces"] or None)
        return JSONResponse(job.to_dict(), status_code=202)

    async def job(request: Request) -> Response:
        found = wb.jobs.get(job_id(request.path_params["jid"]))
        if found is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(found.to_dict())

    async def save(request: Request) -> Response:
        data = await body(request, "save")
        note = data["note"] or ""
        result = await run_in_threadpool(lambda: wb.save_version(data["ids"], note=note))
        return JSONResponse(result, status_code=201)

    async def evaluate_estimate(request: Request) -> Response:
        n = version_number(request.path_params["n"])
        return JSONResponse(await run_in_threadpool(wb.evaluate_estimate, n))

    async def start_evaluate(request: Request) -> Response:
        n = version_number(request.path_params["n"])
        await body(request, "evaluate")
        jobs_free()
        return JSONResponse(wb.start_evaluate(n).to_dict(), status_code=202)

    routes = [] if workbench is None else [
        Route("/", page(index)),
        Route("/principle/{pid}", page(principle)),
        Route("/versions", page(versions_list)),
        Route("/versions/{n}", page(version)),
        Route("/versions/{n}/export/{fmt}", page(export)),
        Route("/api/state", guarded(state)),
        Route("/api/estimate", guarded(estimate, writes=True), methods=["POST"]),
        Route("/api/vote", guarded(start_vote, writes=True), methods=["POST"]),
        Route("/api/jobs/{jid}", guarded(job)),
        Route("/api/versions", guarded(save, writes=True), methods=["POST"]),
        Route("/api/versions/{n}/estimate", guarded(evaluate_estimate)),
        Route("/api/versions/{n}/evaluate", guarded(start_evaluate, writes=True), methods=["POST"]),
    ]
    if labeller is not None:
        from icai.app.labelpage import label_routes

        routes += label_routes(
            labeller, guarded=guarded, page=page, body=body, render=lambda title, html: _page(title, html, token=token)
        )
        if workbench is None:

            async def to_label(request: Request) -> Response:
                return RedirectResponse("label", status_code=303)

            routes.append(Route("/", page(to_label)))
    app = Starlette(routes=routes, middleware=[Middleware(_Guard, policy=policy)])
    app.state.token = token
    app.state.policy = policy
    return app


JS = r"""
(function () {
  const token = document.querySelector('meta[name="icai-token"]').content;
  const $ = (id) => document.getElementById(id);
  const base = location.pathname.replace(/(versions\/\d+|principle\/[^/]+)\/?$/, '');
  async function api(path, payload) {
    const opts = payload === undefined ? {} : {method: 'POST', headers: {'Content-Type': 'application/json', 'X-ICAI-Token': token}, body: JSON.stringify(payload)};
    const res = await fetch(base + path, opts);
    const data = await res.json();
    if (!res.ok) throw new Error(data.error || res.statusText);
    return data;
  }
  const fmt = (v, d = 2) => (v === null || v === undefined) ? '\u2014' : Number(v).toFixed(d);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
  function statRow(label, s) {
    if (!s) return `<tr><td>${esc(label)}</td><td colspan="7">no votes</td></tr>`;
    const ci = s.agreement_ci ? ` [${fmt(s.agreement_ci[0])}, ${fmt(s.agreement_ci[1])}]` : '';
    return `<tr><td>${esc(label)}</td><td class="agreement">${fmt(s.agreement)}${ci}</td><td>${fmt(s.relevance)}</td><td>${fmt(s.kappa)}</td>` +
      `<td>${fmt(s.strength)}</td><td>${s.n_for}</td><td>${s.n_against}</td><td>${s.q_value === null ? '\u2014' : Number(s.q_value).toPrecision(2)}</td><td>${esc(s.verdict || '\u2014')}</td></tr>`;
  }
  async function poll(jobId, bar, label) {
    bar.hidden = false;
    for (;;) {
      const job = await api('api/jobs/' + jobId);
      bar.max = Math.max(job.total, 1); bar.value = job.done;
      label.textContent = `${job.done} of ${job.total} requests`;
      if (job.state !== 'running') {
        if (job.state === 'failed') throw new Error(job.error);
        label.textContent = `done in ${fmt(job.seconds, 1)} s: ${job.result.calls_made} model calls made`;
        return job.result;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const stateEl = $('state');
  if (stateEl) {
    const state = JSON.parse(stateEl.textContent);
    let draft = state.draft.slice();
    function renderDraft() {
      const ol = $('draft'); ol.innerHTML = '';
      draft.forEach((id, i) => {
        const p = state.principles[id] || {text: id, stats: null};
        const li = document.createElement('li'); li.dataset.id = id;
        li.innerHTML = `<span class="text">${esc(p.text)}</span> <span class="muted">agreement ${fmt(p.stats && p.stats.agreement)}, ` +
          `strength ${fmt(p.stats && p.stats.strength)}</span> <button class="small up">&uarr;</button> <button class="small down">&darr;</button> ` +
          `<button class="small edit">edit</button> <button class="small remove">remove</button>`;
        li.querySelector('.up').onclick = () => { if (i > 0) { [draft[i - 1], draft[i]] = [draft[i], draft[i - 1]]; renderDraft(); } };
        li.querySelector('.down').onclick = () => { if (i < draft.length - 1) { [draft[i + 1], draft[i]] = [draft[i], draft[i + 1]]; renderDraft(); } };
        li.querySelector('.remove').onclick = () => { draft.splice(i, 1); renderDraft(); };
        li.querySelector('.edit').onclick = () => startEdit(id);
        ol.appendChild(li);
      });
    }
    function startEdit(id) {
      $('principle-text').value = state.principles[id].text;
      $('replaces').value = id;
      $('editing').textContent = 'Rewording: ' + state.principles[id].text;
      $('run-vote').disabled = true; $('estimate-result').textContent = '';
      $('principle-text').focus();
    }
    document.querySelectorAll('#candidates button.edit').forEach((b) => { b.onclick = () => startEdit(b.dataset.id); });
    document.querySelectorAll('#candidates button.add').forEach((b) => {
      b.onclick = () => { if (!draft.includes(b.dataset.id)) { draft.push(b.dataset.id); renderDraft(); } };
    });
    $('new-principle').onclick = () => {
      $('principle-text').value = ''; $('replaces').value = ''; $('editing').textContent = 'Writing a new principle.';
      $('run-vote').disabled = true; $('estimate-result').textContent = '';
    };
    $('principle-text').oninput = () => { $('run-vote').disabled = true; };
    $('estimate').onclick = async () => {
      const out = $('estimate-result');
      try {
        const e = await api('api/estimate', {text: $('principle-text').value});
        out.className = 'ok';
        out.textContent = e.voted ? 'Already voted: no model calls needed.' :
          `Voting it asks the model ${e.calls} times (${e.pairs} training pairs, both orders); calls the run's cache holds are not made again.`;
        $('run-vote').disabled = false;
      } catch (err) { out.className = 'error'; out.textContent = err.message; }
    };
    $('run-vote').onclick = async () => {
      const out = $('vote-result'); out.innerHTML = ''; $('run-vote').disabled = true;
      try {
        const replaces = $('replaces').value;
        const job = await api('api/vote', {text: $('principle-text').value, replaces: replaces || null});
        const r = await poll(job.id, $('vote-progress'), $('vote-progress-text'));
        state.principles[r.principle.id] = {text: r.principle.text, stats: r.new};
        const head = '<tr><th></th><th>agreement [95% CI]</th><th>relevance</th><th>kappa</th><th>strength</th><th>for</th><th>against</th><th>q-value</th><th>verdict</th></tr>';
        const oldRow = r.old ? statRow('before: ' + state.principles[r.replaces].text, r.old) : '';
        out.innerHTML = `<table class="compare" id="new-stats">${head}${oldRow}${statRow('new: ' + r.principle.text, r.new)}</table>` +
          `<button id="use-new">${r.replaces && draft.includes(r.replaces) ? 'Use it in place of the old one' : 'Add it to the constitution'}</button>`;
        $('use-new').onclick = () => {
          const at = r.replaces ? draft.indexOf(r.replaces) : -1;
          if (draft.includes(r.principle.id)) return;
          if (at >= 0) draft[at] = r.principle.id; else draft.push(r.principle.id);
          renderDraft();
        };
      } catch (err) { out.innerHTML = `<p class="error">${esc(err.message)}</p>`; }
    };
    $('save').onclick = async () => {
      const out = $('save-result');
      try {
        const r = await api('api/versions', {ids: draft, note: $('save-note').value});
        out.className = 'ok'; out.innerHTML = `saved <a href="versions/${r.version}">${esc(r.file)}</a>`;
      } catch (err) { out.className = 'error'; out.textContent = err.message; }
    };
    renderDraft();
    // filters and sorting of the candidates table
    const rows = Array.from(document.querySelectorAll('#candidates tbody tr'));
    function applyFilters() {
      const text = $('filter-text').value.toLowerCase(), origin = $('filter-origin').value, verdict = $('filter-verdict').value;
      rows.forEach((tr) => {
        const show = tr.children[1].textContent.toLowerCase().includes(text) && (!origin || tr.dataset.origin === origin) &&
          (!verdict || tr.dataset.verdict === verdict);
        tr.hidden = !show;
      });
    }
    ['filter-text', 'filter-origin', 'filter-verdict'].forEach((id) => { $(id).oninput = applyFilters; });
    document.querySelectorAll('#candidates th.sortable').forEach((th) => {
      th.onclick = () => {
        const col = Number(th.dataset.col), up = th.dataset.dir !== 'asc'; th.dataset.dir = up ? 'asc' : 'desc';
        const key = (tr) => tr.children[col].dataset.sort;
        rows.sort((a, b) => {
          const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
          const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return up ? c : -c;
        });
        const body = document.querySelector('#candidates tbody'); rows.forEach((tr) => body.appendChild(tr));
      };
    });
  }
  const evalButton = $('estimate-evaluate');
  if (evalButton) {
    const n = evalButton.dataset.version;
    evalButton.onclick = async () => {
      try {
        const e = await api(`api/versions/${n}/estimate`);
        $('evaluate-estimate').textContent = `Evaluating asks the model up to ${e.calls} times (${e.annotators} annotators on ${e.pairs} held-out pairs, both orders); calls the run's cache holds are not made again.`;
        $('run-evaluate').disabled = false;
      } catch (err) { $('evaluate-estimate').textContent = err.message; }
    };
    $('run-evaluate').onclick = async () => {
      $('run-evaluate').disabled = true;
      try {
        const job = await api(`api/versions/${n}/evaluate`, {});
        const r = await poll(job.id, $('evaluate-progress'), $('evaluate-progress-text'));
        $('evaluate-result').innerHTML = '<table id="evaluation-scores"><tr><th>annotator</th><th>agreement [95% CI]</th><th>n</th></tr>' +
          r.evaluation.scores.map((s) => `<tr><td>${esc(s.name)}</td><td>${fmt(s.agreement)} [${fmt(s.ci[0])}, ${fmt(s.ci[1])}]</td><td>${s.n}</td></tr>`).join('') + '</table>';
      } catch (err) { $('evaluate-result').innerHTML = `<p class="error">${esc(err.message)}</p>`; }
    };
  }
})();
"""


def make_server(
    workbench: Workbench | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_hosts: Sequence[str] = (),
    labeller: LabelSession | None = None,
) -> Any:
    """A uvicorn.Server for the workbench at host:port (port 0: any free one); `.run()` serves until `should_exit`.

    A host other than a loopback address needs `allow_hosts`, the names the app may be reached by
    (`icai.app.hosts.host_policy`); a DataError otherwise.
    """
    import uvicorn

    app = create_app(workbench, policy=host_policy(host, tuple(allow_hosts)), labeller=labeller)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))


def bound_port(server: Any) -> int:
    """The port a started server listens on."""
    return int(server.servers[0].sockets[0].getsockname()[1])


def serve(
    workbench: Workbench | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_hosts: Sequence[str] = (),
    on_ready: Callable[[str], None] | None = None,
    labeller: LabelSession | None = None,
) -> None:
    """Serve the workbench until interrupted; `on_ready(url)` is called once the socket listens, with a URL that works."""
    server = make_server(workbench, host=host, port=port, allow_hosts=allow_hosts, labeller=labeller)
    if on_ready is not None:
        policy: HostPolicy = server.config.app.state.policy
        original_startup = server.startup

        async def startup(sockets: Any = None) -> None:
            await original_startup(sockets)
            if server.started:
                on_ready(policy.url(bound_port(server)))

        server.startup = startup
    server.run()
