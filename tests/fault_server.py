"""An OpenAI-compatible chat server that injects faults on a seeded schedule, for reliability tests.

In-process:

    with FaultServer(keyword_responder, fault_rate=0.25, seed=0) as server:
        llm = get_llm("openai/fake", base_url=server.base_url)
        ...
        server.log  # one LogEntry per request: body hash, kind, outcome

As a subprocess (for kill -9 tests), it writes its port to --port-file once listening
and appends one JSON line per request to --log:

    python tests/fault_server.py --port-file F --log L --fault-rate 0.2 --seed 0

Fault kinds: "429" (with Retry-After), "500", "503" (with retry-after-ms), "hang"
(holds the request past the client's timeout, then answers 504), "close" (drops the connection),
"truncated" (HTTP 200, JSON cut in half), "empty" (HTTP 200, no choices) are
transient; "prose" (HTTP 200 whose content is prose, not JSON) is a completed
call whose text is unreadable: it must become an invalid vote, not a retry.

Dialects (`dialect`, `logprobs`) mimic how real OpenAI-compatible servers differ:
"json_schema" (OpenAI, vLLM, llama.cpp's C++ server) takes `response_format`
json_schema; "json_object" (llama-cpp-python) answers json_schema with an HTTP 500
naming response_format and takes `{"type": "json_object", "schema": ...}`; "none"
answers any response_format with a 400. `logprobs`: "return" (next-token top_logprobs
from the keyword annotator, so log-prob votes equal generated ones), "reject" (HTTP 500
naming logprobs, as llama-cpp-python without logits_all) or "omit" (HTTP 200, no
logprobs). Rejections are logged with outcome "rejected" and draw no fault.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from icai.llm.base import Message, Request
from icai.llm.fake import _block, _side_for, _words, keyword_responder

Responder = Callable[[Request], str]

TRANSIENT_FAULTS = ("429", "500", "503", "hang", "close", "truncated", "empty")
"""Faults a client must retry; a run that meets only these must end as if it met none."""
ALL_FAULTS = (*TRANSIENT_FAULTS, "prose")
FAST_FAULTS = ("429", "500", "503", "close", "truncated", "empty")
"""Transient faults that cost no client timeout (for subprocess runs with default settings)."""

PROSE = "Both responses have their merits, and I would rather not pick one."
DIALECTS = ("json_schema", "json_object", "none")
LOGPROB_DIALECTS = ("return", "reject", "omit")
MAX_CONSECUTIVE_FAULTS = 2
"""A request body is faulted at most this many times in a row, so a client that
retries at least three times always gets through; the schedule stays seeded."""


@dataclass(frozen=True)
class LogEntry:
    n: int
    """Arrival number, from 0."""
    body_hash: str
    kind: str
    """propose | vote | judge | other, read from the prompt."""
    outcome: str
    """"ok", a fault kind, "stall", "outage" or "over-limit"."""
    status: int | None
    """HTTP status answered (hang and stall: after the wait); None when the connection is dropped."""
    t: float
    size: int = 0
    """Bytes in the request body."""
    response_format: str | None = None
    """The `response_format` type the request sent; None when it sent none."""
    logprobs: bool = False
    """Whether the request asked for logprobs."""


def request_from_body(body: dict[str, Any]) -> Request:
    """The icai Request an OpenAI chat-completions body stands for (what the responder sees)."""
    messages = tuple(Message(m.get("role", "user"), str(m.get("content") or "")) for m in body.get("messages", []))
    response_format = body.get("response_format") or {}
    schema = response_format.get("json_schema", {}).get("schema") or response_format.get("schema")
    return Request(
        messages=messages,
        max_tokens=int(body.get("max_tokens") or 512),
        temperature=float(body.get("temperature") or 0.0),
        json_schema=schema,
        seed=body.get("seed"),
    )


def request_kind(request: Request) -> str:
    prompt = request.prompt_text
    if "[PREFERRED]" in prompt:
        return "propose"
    if "which response the rule selects" in prompt or "Which response does the rule select" in prompt:
        return "vote"
    if "[RESPONSE A]" in prompt:
        return "judge"
    return "other"


def keyword_logprobs(request: Request) -> dict[str, float]:
    """Next-token log-probs of "A" and "B" that agree with `keyword_responder`'s generated votes."""
    prompt = request.prompt_text
    rule = re.search(r"^Rule: (.*)$", prompt, re.MULTILINE)
    if rule:
        side = _side_for(rule.group(1), _words(_block(prompt, "RESPONSE A")), _words(_block(prompt, "RESPONSE B")))
    else:  # a judge prompt
        side = json.loads(keyword_responder(request)).get("preferred", "A")
    if side == "neither":
        return {"A": -1.0, "B": -1.0}
    return {"A": -0.1, "B": -2.5} if side == "A" else {"A": -2.5, "B": -0.1}


def rejection(body: dict[str, Any], dialect: str, logprobs: str) -> tuple[int, str] | None:
    """(status, message) with which a server of this dialect refuses `body`; None when it takes it."""
    kind = (body.get("response_format") or {}).get("type")
    if kind is not None and dialect == "none":
        return 400, "response_format is not supported by this server"
    if kind == "json_schema" and dialect == "json_object":
        # what llama-cpp-python 0.3.36 answers (bench/results/server_check.json), traceback left out
        return 500, (
            "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
            "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
            "'ctx': {'expected': \"'text' or 'json_object'\"}}"
        )
    if body.get("logprobs") and logprobs == "reject":
        return 500, "logprobs is not supported for models created with logits_all=False"
    return None


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def chat_completion(
    text: str, prompt_chars: int, *, choices: bool = True, logprobs: dict[str, float] | None = None
) -> dict[str, Any]:
    """A chat.completion body; token counts are characters / 4, like icai's estimator.

    `logprobs`: the first token's alternatives, returned as `top_logprobs` (the best one is the text).
    """
    if logprobs is not None:
        top = sorted(({"token": t, "logprob": lp, "bytes": None} for t, lp in logprobs.items()), key=lambda t: -t["logprob"])
        text = str(top[0]["token"])
    body = {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": (
            [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}]
            if choices
            else []
        ),
        "usage": {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, len(text) // 4),
            "total_tokens": max(1, prompt_chars // 4) + max(1, len(text) // 4),
        },
    }
    if logprobs is not None and choices:
        body["choices"][0]["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
    return body


_STATUS: dict[str, int | None] = {
    "ok": 200,
    "429": 429,
    "500": 500,
    "503": 503,
    "hang": 504,
    "close": None,
    "truncated": 200,
    "empty": 200,
    "prose": 200,
    "stall": 503,
    "outage": 503,
    "over-limit": 400,
}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """Listen backlog (socketserver's default is 5): a burst of new connections from a
    thread pool would otherwise wait out SYN retransmits, seconds on a loaded machine."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that timed out or was killed
        super().handle_error(request, client_address)


class FaultServer:
    """OpenAI-compatible /v1/chat/completions on 127.0.0.1 (random port) with seeded faults.

    Args:
        responder: answers each request; defaults to icai's keyword fake.
        fault_rate: share of requests that get a fault instead of an answer.
        faults: the fault kinds drawn from, uniformly.
        seed: seeds the schedule (one random.Random, drawn in arrival order).
        hang_seconds: how long a "hang" waits before answering (set above the client timeout).
        latency: seconds added to every answer.
        stall_after: after this many "ok" answers, hold every new request until `release()`,
            then answer it 503 (a point at which a test can kill the client).
        outage_after: after this many "ok" answers, answer 503 to everything until `release()`.
        max_requests: requests beyond this get HTTP 400 (a runaway client fails fast).
        log_path: also append each LogEntry as a JSON line here.
        dialect: which `response_format` the server takes (`DIALECTS`, see the module docstring).
        logprobs: what it does with a logprobs request (`LOGPROB_DIALECTS`).
    """

    def __init__(
        self,
        responder: Responder = keyword_responder,
        *,
        fault_rate: float = 0.0,
        faults: Iterable[str] = TRANSIENT_FAULTS,
        seed: int = 0,
        hang_seconds: float = 1.0,
        latency: float = 0.0,
        stall_after: int | None = None,
        outage_after: int | None = None,
        max_requests: int = 20_000,
        log_path: str | Path | None = None,
        port: int = 0,
        dialect: str = "json_schema",
        logprobs: str = "return",
    ) -> None:
        if dialect not in DIALECTS or logprobs not in LOGPROB_DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r} or logprobs {logprobs!r}")
        self.dialect = dialect
        self.logprobs = logprobs
        self.responder = responder
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        unknown = set(self.faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.hang_seconds = min(hang_seconds, 30.0)
        self.latency = latency
        self.stall_after = stall_after
        self.outage_after = outage_after
        self.max_requests = max_requests
        self.log_path = Path(log_path) if log_path is not None else None
        self.log: list[LogEntry] = []
        self.auth_headers: set[str] = set()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._streak: dict[str, int] = {}
        self._n_ok = 0
        self._released = threading.Event()
        self._closing = threading.Event()
        self._server = _QuietServer(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def release(self) -> None:
        """End a stall or an outage: from now on requests are answered normally."""
        with self._lock:
            self.stall_after = None
            self.outage_after = None
        self._released.set()

    # the request log -----------------------------------------------------------
    def entries(self, *, outcome: str | None = None, kind: str | None = None) -> list[LogEntry]:
        with self._lock:
            return [
                e for e in self.log if (outcome is None or e.outcome == outcome) and (kind is None or e.kind == kind)
            ]

    def counts(self) -> dict[str, int]:
        """Requests per outcome."""
        out: dict[str, int] = {}
        for e in self.entries():
            out[e.outcome] = out.get(e.outcome, 0) + 1
        return out

    @property
    def n_faults(self) -> int:
        return sum(1 for e in self.entries() if e.outcome in ALL_FAULTS)

    # scheduling ---------------------------------------------------------------------
    def _decide(self, digest: str) -> str:
        with self._lock:
            if len(self.log) >= self.max_requests:
                return "over-limit"
            if self.stall_after is not None and self._n_ok >= self.stall_after:
                return "stall"
            if self.outage_after is not None and self._n_ok >= self.outage_after:
                return "outage"
            draw = self._rng.random()
            kind = self._rng.choice(self.faults) if self.faults else "ok"
            streak = self._streak.get(digest, 0)
            if draw < self.fault_rate and self.faults and streak < MAX_CONSECUTIVE_FAULTS:
                self._streak[digest] = streak + 1
                return kind
            self._streak[digest] = 0
            return "ok"

    def _record(
        self, digest: str, kind: str, outcome: str, status: int | None, size: int, body: dict[str, Any] | None = None
    ) -> None:
        body = body or {}
        with self._lock:
            entry = LogEntry(
                len(self.log),
                digest,
                kind,
                outcome,
                status,
                time.time(),
                size,
                (body.get("response_format") or {}).get("type"),
                bool(body.get("logprobs")),
            )
            self.log.append(entry)
            if outcome == "ok":
                self._n_ok += 1
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(asdict(entry)) + "\n")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One send per answer, without Nagle: headers and body in separate small
            # packets would wait ~40 ms each for a delayed ACK on keep-alive connections.
            disable_nagle_algorithm = True
            wbufsize = 1 << 16

            def do_GET(self) -> None:
                if self.path == "/control/release":
                    server.release()
                    self._send(200, {"released": True})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                server.auth_headers.add(self.headers.get("Authorization", ""))
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "body is not JSON"}})
                    return
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                request = request_from_body(body)
                digest, kind = body_hash(body), request_kind(request)
                refused = rejection(body, server.dialect, server.logprobs)
                if refused is not None:
                    server._record(digest, kind, "rejected", refused[0], len(raw), body)
                    self._send(refused[0], {"error": {"message": refused[1], "type": "invalid_request_error"}})
                    return
                outcome = server._decide(digest)
                # Logged before answering, so the log is complete once the client has its answer.
                server._record(digest, kind, outcome, _STATUS[outcome], len(raw), body)
                self._serve(outcome, request, logprobs=bool(body.get("logprobs")))

            def _serve(self, outcome: str, request: Request, *, logprobs: bool = False) -> int | None:
                error = {"error": {"message": f"injected fault: {outcome}", "type": "server_error"}}
                if outcome == "over-limit":
                    return self._send(400, {"error": {"message": "fault server request limit reached"}})
                if outcome == "stall":
                    server._released.wait(timeout=120)
                    return self._send(503, error)
                if outcome == "outage":
                    return self._send(503, error, {"retry-after-ms": "20"})
                if outcome == "429":
                    return self._send(429, error, {"Retry-After": "0"})
                if outcome == "500":
                    return self._send(500, error)
                if outcome == "503":
                    return self._send(503, error, {"retry-after-ms": "10"})
                if outcome == "close":
                    self.close_connection = True
                    return None
                if outcome == "hang":
                    server._closing.wait(timeout=server.hang_seconds)
                    return self._send(504, error)  # never an answer, should the client still be waiting
                prompt_chars = len(request.prompt_text)
                if outcome == "empty":
                    return self._send(200, chat_completion("", prompt_chars, choices=False))
                if outcome == "prose":
                    return self._send(200, chat_completion(PROSE, prompt_chars))
                scores = keyword_logprobs(request) if logprobs else None
                text = server.responder(request) if scores is None else max(scores, key=scores.__getitem__)
                if server.latency:
                    time.sleep(server.latency)
                if scores is not None and server.logprobs == "return" and outcome != "truncated":
                    return self._send(200, chat_completion(text, prompt_chars, logprobs=scores))
                if outcome == "truncated":
                    payload = json.dumps(chat_completion(text, prompt_chars)).encode()
                    return self._send_bytes(200, payload[: len(payload) // 2])
                return self._send(200, chat_completion(text, prompt_chars))

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int | None:
                return self._send_bytes(status, json.dumps(body).encode(), headers)

            def _send_bytes(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> int | None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return None  # the client timed out or was killed
                return status

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def read_log(path: str | Path) -> list[LogEntry]:
    """The entries a subprocess server appended to its --log file so far."""
    p = Path(path)
    if not p.exists():
        return []
    entries = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(LogEntry(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            break  # a line being written
    return entries


@dataclass
class ServerProcess:
    """A fault server running as a subprocess (see `spawn`)."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def entries(self) -> list[LogEntry]:
        return read_log(self.log_path)

    def release(self) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/control/release", timeout=5) as reply:
            reply.read()


@contextmanager
def spawn(workdir: str | Path, *args: str, start_timeout: float = 30.0) -> Iterator[ServerProcess]:
    """Run this module as a subprocess with `args`; stop it (SIGTERM, then SIGKILL) on exit."""
    workdir = Path(workdir)
    port_file, log_path = workdir / "fault_server.port", workdir / "fault_server.jsonl"
    command = [sys.executable, __file__, "--port-file", str(port_file), "--log", str(log_path), *args]
    err_path = workdir / "fault_server.err"
    with err_path.open("wb") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + start_timeout
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fault server did not start: {err_path.read_text()[-2000:]}")
            time.sleep(0.02)
        yield ServerProcess(process, int(port_file.read_text()), log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port-file", required=True, help="written with the port once the server listens")
    parser.add_argument("--log", help="append one JSON line per request here")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAST_FAULTS), help="comma-separated kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--stall-after", type=int, help="hold requests after this many ok answers until GET /control/release"
    )
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--dialect", choices=DIALECTS, default="json_schema")
    parser.add_argument("--logprobs", choices=LOGPROB_DIALECTS, default="return")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long in any case")
    args = parser.parse_args(argv)

    server = FaultServer(
        fault_rate=args.fault_rate,
        faults=[f for f in args.faults.split(",") if f],
        seed=args.seed,
        hang_seconds=args.hang_seconds,
        latency=args.latency,
        stall_after=args.stall_after,
        max_requests=args.max_requests,
        log_path=args.log,
        dialect=args.dialect,
        logprobs=args.logprobs,
    ).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    tmp = Path(f"{args.port_file}.tmp")
    tmp.write_text(str(server.port))
    os.replace(tmp, args.port_file)
    try:
        done.wait(timeout=args.max_seconds)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
