"""The OpenAI-compatible path as vLLM serves it: log-prob votes and prefix-cache accounting.

A stub answers in the shape of `vllm serve MODEL --enable-prefix-caching
--enable-prompt-tokens-details`: next-token `top_logprobs`, and `usage.prompt_tokens_details.cached_tokens`
counting the prompt tokens found in its prefix cache (whole 16-token blocks shared with an earlier
prompt, as vLLM's block-based cache does; one word = one token here). No GPU or vLLM is needed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from icai.io import load_comparisons
from icai.llm import get_llm
from icai.types import Principle
from icai.vote import vote

BLOCK = 16


class VLLMStub:
    def __init__(self) -> None:
        self.prompts: list[list[str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        words = " ".join(m["content"] for m in body["messages"]).split()
        with self.lock:
            best = 0
            for earlier in self.prompts:
                n = 0
                for a, b in zip(earlier, words, strict=False):
                    if a != b:
                        break
                    n += 1
                best = max(best, n)
            self.prompts.append(words)
            self.bodies.append(body)
        cached = (min(best, len(words) - 1) // BLOCK) * BLOCK
        # A toy annotator: the rule's keyword decides; "A" is also favoured a little (position bias).
        text = " ".join(m["content"] for m in body["messages"])
        rule = text.rsplit("Rule:", 1)[-1].split()[5].strip(".'") if "Rule:" in text else ""
        first = text.split("[RESPONSE A]", 1)[-1].split("[/RESPONSE A]", 1)[0].lower()
        second = text.split("[RESPONSE B]", 1)[-1].split("[/RESPONSE B]", 1)[0].lower()
        a, b = -1.0 + 0.5, -1.0
        if rule and (rule in first) != (rule in second):
            a, b = (a + 2.0, b) if rule in first else (a, b + 2.0)
        top = [{"token": "A", "logprob": a, "bytes": None}, {"token": "B", "logprob": b, "bytes": None}]
        top.sort(key=lambda t: -t["logprob"])
        return {
            "id": "cmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": top[0]["token"]},
                    "finish_reason": "length",
                    "logprobs": {"content": [{**top[0], "top_logprobs": top}]},
                }
            ],
            "usage": {
                "prompt_tokens": len(words),
                "completion_tokens": 1,
                "total_tokens": len(words) + 1,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }


@pytest.fixture
def vllm() -> Iterator[tuple[VLLMStub, str]]:
    stub = VLLMStub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            payload = json.dumps(stub.answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def test_logprob_votes_through_a_vllm_server_reuse_its_prefix_cache(
    vllm: tuple[VLLMStub, str], orthogonal_csv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub, url = vllm
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")  # vLLM accepts any key unless started with --api-key
    pairs = load_comparisons(orthogonal_csv)[:6]
    principles = [Principle.from_text(f"Select the response that mentions {w} in its text.") for w in ("cat", "blue", "lemon", "dog")]
    llm = get_llm("openai/HuggingFaceTB/SmolLM2-135M-Instruct", base_url=url, concurrency=1, progress=False)
    votes = vote(pairs, principles, llm, mode="logprob")

    assert all(b["logprobs"] is True and b["top_logprobs"] >= 2 and b["max_tokens"] == 1 for b in stub.bodies)
    assert len(stub.bodies) == 2 * len(pairs) * len(principles) == llm.usage.calls
    # The constant pull towards "A" cancels over both orders; the rule's keyword decides.
    by_pair = {c.id: c for c in pairs}
    for v in votes:
        c = by_pair[v.comparison_id]
        word = next(p.text.split()[5] for p in principles if p.id == v.principle_id)
        in_a, in_b = word in c.text_a.lower(), word in c.text_b.lower()
        expected = "neither" if in_a == in_b else ("a" if in_a else "b")
        assert v.picks == (expected,)
    # Pair first, rule last: after a pair's first prompt, the server computes little more than the rule.
    cached, total = llm.usage.cached_input_tokens, llm.usage.input_tokens
    assert cached / total > 0.6, (cached, total)
