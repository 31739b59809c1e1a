"""Fake providers that ship with the package, for tests and offline dry runs. Never a default.

- `FakeProvider(script)`: answers by the first rule whose substring occurs in the prompt.
- `fake/keyword`: a scripted annotator that reads icai's own prompts and reasons
  over words: it proposes "mentions <word>" principles from words only the preferred
  response uses (label-free: from words only one response uses, with the opposite rule
  "does not mention <word>"), and votes by which response contains a principle's word.
  It tests the machinery end to end; it is not a model.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Container, Sequence

from icai.llm.base import Capabilities, Completion, ConfigError, Request

Responder = Callable[[Request], str]


RECORD_LIMIT = 20_000
"""Requests a fake keeps for inspection; it counts the rest (`n_requests`) without holding them."""


class FakeProvider:
    """Answers scripted by prompt substring; records every request it receives."""

    def __init__(
        self,
        script: Sequence[tuple[str, str | Responder]] | Responder,
        *,
        default: str | None = None,
        model: str = "fake/scripted",
        delay: float = 0.0,
        record_limit: int = RECORD_LIMIT,
    ) -> None:
        self.script = script
        self.default = default
        self.model = model
        self.delay = delay
        """Seconds each call sleeps, to stand in for a network round trip."""
        self.requests: list[Request] = []
        """The first `record_limit` requests received (a long run's would not fit in memory)."""
        self.n_requests = 0
        """Every request received."""
        self.record_limit = record_limit
        self._lock = threading.Lock()
        self.capabilities = Capabilities(threads=delay > 0)
        """Without a delay a call is pure CPU work here, so `LLM.map` makes its calls one after another."""

    def complete(self, request: Request) -> Completion:
        with self._lock:
            self.n_requests += 1
            if len(self.requests) < self.record_limit:
                self.requests.append(request)
        if self.delay:
            time.sleep(self.delay)
        text = self._answer(request)
        prompt = request.prompt_text
        return Completion(text=text, input_tokens=len(prompt.split()), output_tokens=len(text.split()))

    def _answer(self, request: Request) -> str:
        if callable(self.script):
            return self.script(request)
        prompt = request.prompt_text
        for needle, answer in self.script:
            if needle in prompt:
                return answer(request) if callable(answer) else answer
        if self.default is None:
            raise LookupError(f"FakeProvider has no rule for prompt starting {prompt[:80]!r}")
        return self.default


_STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her his
    i if in into is it its just me my no not of on one or our out she so than that the their them then
    there they this to up was we were what when which who will with would you your about after all also
    back before day down even first get got had how like made make more most much new now only other over
    said some still such time two very way well went what where while who why yet response select mentions""".split()
)
_WORD = re.compile(r"[a-z][a-z'-]{2,}")


def _block(prompt: str, name: str) -> str:
    # the last block: propose prompts show a worked example first
    found = re.findall(rf"\[{name}\]\n(.*?)\n\[/{name}\]", prompt, re.DOTALL)
    return found[-1] if found else ""


def _words(text: str) -> Counter[str]:
    return Counter(w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)


def _word_set(text: str) -> frozenset[str]:
    """The words `_words` counts, as a set (a vote only asks whether a word occurs)."""
    return frozenset(_WORD.findall(text.lower())) - _STOPWORDS


def _rules(prompt: str) -> list[str]:
    tail = prompt.rsplit("[/RESPONSE B]", 1)[-1]
    return [m.group(1) for m in re.finditer(r"^\d+\. (.*)$", tail, re.MULTILINE)]


_MENTIONS = re.compile(r"(does not mention|mentions) '([^']+)'")


@functools.lru_cache(maxsize=4096)
def _rule_word(rule: str) -> tuple[str, bool] | None:
    """(word, True for "mentions" / False for "does not mention") of a rule; None for any other rule."""
    m = _MENTIONS.search(rule)
    return (m.group(2), m.group(1) == "mentions") if m else None


def _side_for(rule: str, words_a: Container[str], words_b: Container[str]) -> str:
    """The side the rule picks from the responses' words ("mentions '<word>'" or "does not mention '<word>'")."""
    found = _rule_word(rule)
    if found is None:
        return "neither"
    word, mentions = found
    in_a, in_b = word in words_a, word in words_b
    if in_a == in_b:
        return "neither"
    return "A" if in_a == mentions else "B"


def _only(words: Counter[str], other: Counter[str]) -> list[str]:
    """Words of one side the other lacks, most frequent first (ties alphabetically)."""
    only = [(n, w) for w, n in words.items() if w not in other]
    only.sort(key=lambda t: (-t[0], t[1]))
    return [w for _, w in only]


def _differences(prompt: str) -> str:
    """A label-free proposal: alternately a word only A uses and one only B uses, each rule with its opposite."""
    found = re.search(r"Write (\d+) ways", prompt)
    n = int(found.group(1)) if found else 3
    a, b = _words(_block(prompt, "RESPONSE A")), _words(_block(prompt, "RESPONSE B"))
    only_a, only_b = _only(a, b), _only(b, a)
    out: list[dict[str, str]] = []
    for i in range(max(len(only_a), len(only_b))):
        for word, side in ((only_a, "a"), (only_b, "b")):
            if i < len(word) and len(out) < n:
                has = f"Select the response that mentions '{word[i]}' in its text."
                lacks = f"Select the response that does not mention '{word[i]}' in its text."
                out.append({"a": has, "b": lacks} if side == "a" else {"a": lacks, "b": has})
    return json.dumps({"differences": out})


def keyword_responder(request: Request) -> str:
    """Answer icai's propose / vote / judge prompts by word statistics."""
    prompt = request.prompt_text
    if "Nobody has said which one is better" in prompt:
        return _differences(prompt)
    if "[PREFERRED]" in prompt:
        preferred = _words(_block(prompt, "PREFERRED"))
        other = _words(_block(prompt, "OTHER"))
        only = [(n, w) for w, n in preferred.items() if w not in other]
        only.sort(key=lambda t: (-t[0], t[1]))
        return json.dumps({"principles": [f"Select the response that mentions '{w}' in its text." for _, w in only[:3]]})
    # each response's words are counted once per prompt, not once per rule
    words_a, words_b = _word_set(_block(prompt, "RESPONSE A")), _word_set(_block(prompt, "RESPONSE B"))
    rules = _rules(prompt)
    if "which response the rule selects" in prompt:
        return json.dumps({str(i): _side_for(r, words_a, words_b) for i, r in enumerate(rules, start=1)})
    sides = [_side_for(r, words_a, words_b) for r in rules]
    first = next((s for s in sides if s != "neither"), "A")
    return json.dumps({"preferred": first})


def fake_provider(name: str, *, delay: float = 0.0) -> FakeProvider:
    """The fakes reachable as "fake/<name>" from get_llm; `delay` seconds per call."""
    if name == "keyword":
        return FakeProvider(keyword_responder, model="fake/keyword", delay=delay)
    raise ConfigError(f"unknown fake model 'fake/{name}'; the packaged fake is 'fake/keyword'")
