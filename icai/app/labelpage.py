"""The workbench's labelling page (`icai app RUN` on an `icai label` run): the same queue as the terminal.

The page shows the pair the session asks next side by side, buttons (and keys a, b, t, s, u) for A, B,
tie, skip and undo, and the constitution from the labels so far with each principle's agreement and 95%
interval, updated after every answer. Answers are JSON POSTs through the app's write guard (token, Origin,
JSON body); the page fills every text with `textContent`, never as markup. No model is called.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from icai.app.schema import RequestError
from icai.labelling import LABELS, LabelSession

Handler = Callable[[Request], Awaitable[Response]]


def label_state(session: LabelSession) -> dict[str, Any]:
    """What the page shows: the next pair (or None), why it was chosen, the answers so far and the constitution."""
    nxt = session.next()
    pair = None
    if nxt is not None:
        c, choice = nxt
        pair = {"id": c.id, "prompt": c.prompt, "text_a": c.text_a, "text_b": c.text_b, "reason": choice.reason}
    return {"pair": pair, "n_answers": len(session.records), "summary": session.summary().to_dict()}


def label_routes(
    session: LabelSession,
    *,
    guarded: Callable[..., Handler],
    page: Callable[[Handler], Handler],
    body: Callable[[Request, str], Awaitable[dict[str, Any]]],
    render: Callable[[str, str], Response],
) -> list[Route]:
    """The labelling page and its API. `guarded` (host, CSRF and token checks; errors as JSON), `page` (errors as
    text), `body` (a request body checked against `icai.app.schema.BODIES`) and `render` are the app's own."""
    lock = threading.Lock()

    def locked(fn: Callable[[], Any]) -> Any:
        with lock:
            return fn()

    async def show(request: Request) -> Response:
        return render("icai: label pairs", BODY)

    async def state(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(locked, lambda: label_state(session)))

    async def answer(request: Request) -> Response:
        data = await body(request, "label")
        pair_id, label = data["id"], data["label"]
        if label not in LABELS:
            raise RequestError(f"'label' must be one of {', '.join(LABELS)}")
        if pair_id not in session.row:
            raise RequestError("no pair with this id in this labelling session", 404)

        def work() -> dict[str, Any]:
            session.answer(pair_id, label)
            return label_state(session)

        return JSONResponse(await run_in_threadpool(locked, work))

    async def undo(request: Request) -> Response:
        await body(request, "undo")

        def work() -> dict[str, Any]:
            undone = session.undo()
            return {**label_state(session), "undone": undone}

        return JSONResponse(await run_in_threadpool(locked, work))

    return [
        Route("/label", page(show)),
        Route("/api/label/state", guarded(state)),
        Route("/api/label/answer", guarded(answer, writes=True), methods=["POST"]),
        Route("/api/label/undo", guarded(undo, writes=True), methods=["POST"]),
    ]


BODY = """
<h1>Label pairs</h1>
<p class="muted">The most informative pair first (some chosen at random). Keys: <b>a</b> A is better, <b>b</b> B is
better, <b>t</b> tie, <b>s</b> skip, <b>u</b> undo. Every answer is saved at once; close the page to stop and come back
to go on.</p>
<div id="label-pair" class="box">
  <p id="label-meta" class="muted"></p>
  <p><b>Prompt:</b> <span id="label-prompt"></span></p>
  <div class="label-grid">
    <div><h3>Response A</h3><div id="label-a" class="label-text"></div></div>
    <div><h3>Response B</h3><div id="label-b" class="label-text"></div></div>
  </div>
  <p>
    <button id="answer-a" data-label="a">A is better (a)</button>
    <button id="answer-b" data-label="b">B is better (b)</button>
    <button id="answer-tie" data-label="tie">Tie (t)</button>
    <button id="answer-skip" data-label="skip">Skip (s)</button>
    <button id="undo">Undo (u)</button>
  </p>
</div>
<p id="label-done" hidden class="ok">Every pair has an answer.</p>
<p id="label-message"></p>
<h2>Constitution from your labels</h2>
<p id="label-counts" class="muted"></p>
<table id="label-constitution">
  <thead><tr><th>#</th><th>principle</th><th>agreement [95% CI]</th><th>for</th><th>against</th></tr></thead>
  <tbody></tbody>
</table>
<p id="label-stable"></p>
<style>
.label-grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.label-text { white-space: pre-wrap; border: 1px solid #dde2ea; padding: .5em; background: #fff; min-height: 4em; }
</style>
<script>
(function () {
  const token = document.querySelector('meta[name="icai-token"]').content;
  const $ = (id) => document.getElementById(id);
  const base = location.pathname.replace(/label\\/?$/, '');
  let current = null, busy = false;
  function fmt(x) { return (x === null || x === undefined) ? '\\u2014' : Number(x).toFixed(2); }
  function render(state) {
    current = state.pair;
    $('label-pair').hidden = !current;
    $('label-done').hidden = !!current;
    if (current) {
      $('label-meta').textContent = 'Pair ' + (state.n_answers + 1) + ' (id ' + current.id + ', chosen '
        + (current.reason === 'random' ? 'at random' : 'as the most informative') + ')';
      $('label-prompt').textContent = current.prompt || '(none)';
      $('label-a').textContent = current.text_a;
      $('label-b').textContent = current.text_b;
    }
    const s = state.summary;
    $('label-counts').textContent = s.n_labelled + ' labelled, ' + s.n_ties + ' ties, ' + s.n_skipped
      + ' skipped, of ' + s.n_pairs + ' pairs';
    const body = document.querySelector('#label-constitution tbody');
    body.replaceChildren();
    for (const row of s.constitution) {
      const st = row.stats || {};
      const ci = st.agreement_ci ? ' [' + fmt(st.agreement_ci[0]) + ', ' + fmt(st.agreement_ci[1]) + ']' : '';
      const tr = document.createElement('tr');
      for (const [cls, text] of [['rank', '#' + row.rank], ['text', row.text], ['agreement', fmt(st.agreement) + ci],
                                 ['for', String(st.n_for ?? '')], ['against', String(st.n_against ?? '')]]) {
        const td = document.createElement('td');
        td.className = cls;
        td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    if (!s.constitution.length) {
      const tr = document.createElement('tr'), td = document.createElement('td');
      td.colSpan = 5; td.textContent = 'none yet: no principle agrees with your labels on enough pairs';
      tr.appendChild(td); body.appendChild(tr);
    }
    $('label-stable').textContent = 'Membership unchanged for ' + s.stable_for + ' of ' + s.patience + ' labels'
      + (s.should_stop ? ': the constitution is stable, you may stop; every label so far is saved' : '');
  }
  async function call(path, payload) {
    const opts = payload === undefined ? {} : {method: 'POST', headers: {'Content-Type': 'application/json',
      'X-ICAI-Token': token}, body: JSON.stringify(payload)};
    const r = await fetch(base + path, opts);
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || ('HTTP ' + r.status));
    return data;
  }
  async function act(path, payload, message) {
    if (busy) return;
    busy = true;
    try {
      const state = await call(path, payload);
      render(state);
      $('label-message').className = 'ok';
      $('label-message').textContent = message(state);
    } catch (e) {
      $('label-message').className = 'error';
      $('label-message').textContent = e.message;
    } finally { busy = false; }
  }
  function answer(label) {
    if (!current) return;
    const id = current.id;
    act('api/label/answer', {id: id, label: label}, () => 'Saved: pair ' + id + ' \\u2192 ' + label);
  }
  function undo() {
    act('api/label/undo', {}, (s) => s.undone ? 'Took back the answer ' + s.undone.label + ' to pair ' + s.undone.id
                                             : 'Nothing to undo');
  }
  for (const b of document.querySelectorAll('button[data-label]')) b.addEventListener('click', () => answer(b.dataset.label));
  $('undo').addEventListener('click', undo);
  document.addEventListener('keydown', (e) => {
    if (e.target && /^(INPUT|TEXTAREA)$/.test(e.target.tagName)) return;
    const key = {a: 'a', 1: 'a', b: 'b', 2: 'b', t: 'tie', s: 'skip'}[e.key];
    if (key) answer(key); else if (e.key === 'u') undo();
  });
  call('api/label/state').then(render).catch((e) => { $('label-message').className = 'error'; $('label-message').textContent = e.message; });
})();
</script>
"""
