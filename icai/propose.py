"""Stage 1: candidate principles from comparisons.

Two styles:
- "standard" (API models): one call per pair shows both responses and asks for
  `per_pair` rules as JSON.
- "small" (small local models such as SmolLM2-135M): the pair is shown as
  contrastive hints computed in code (words only one side uses, one short
  sentence from each side), the model writes one rule per call, several calls
  are sampled (the first greedy, the rest with temperature and distinct seeds),
  and copied or generic rules are rejected. With `fallback`, a pair whose
  samples are all rejected gets a rule written by code from its top hint,
  tagged `origin="hint-fallback"` so it is never mistaken for a model's rule.

  Form hints: key words only lead to rules about topics. So the surface
  features of `icai.surface` (length, lists, headers, bold, code, links,
  questions, refusals, hedging, politeness) are compared between preferred and
  rejected responses over the pairs; a feature whose direction holds on clearly
  more than half the pairs that differ on it (`separating_features`, a sign
  test) "separates". A pair whose own preferred side differs that way gets its
  last sample (with `samples` >= 2) asked from a form prompt instead ("the
  preferred answer is shorter and more concise"), so the model can write
  "Select the response that is concise" (greedy, with two worked examples). No form
  prompt is sent when no feature separates.

Provenance: `Principle.origin` says who wrote the text ("llm", or
"hint-fallback" for code), `Principle.hint` what the writer saw (`HINT_KINDS`).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from icai.llm.base import Capabilities, Request
from icai.llm.client import LLM
from icai.parse import copies_text, is_generic, parse_differences, parse_principles, principle_content
from icai.prompts import (
    FRAME,
    PROPOSE_SMALL_EXAMPLE,
    PROPOSE_SMALL_FORM_EXAMPLES,
    propose_request,
    propose_small_form_request,
    propose_small_request,
    propose_unlabelled_request,
)
from icai.surface import FormSignal, pair_form_hint, separating_features
from icai.types import Comparison, Principle

log = logging.getLogger(__name__)

ProposeStyle = Literal["standard", "small"]

FALLBACK_ORIGIN = "hint-fallback"
"""`Principle.origin` of rules written by code from contrastive hints, not by a model."""

KEYWORD_HINT = "keywords"
"""`Principle.hint` of small-style rules written from contrastive key words (and of the fallback's rules)."""

DIFFERENCES_HINT = "differences"
"""`Principle.hint` of label-free rules (`propose_unlabelled`): the writer saw an unlabelled pair."""

HINT_KINDS = re.compile(r"^(?:|keywords|differences|form:[a-z_]+:(?:more|less))$")
"""Well-formed `Principle.hint` values: "" (standard style: the model saw both responses), "keywords",
"differences" (label-free: the model saw both responses and no label),
or "form:<icai.surface feature>:<more|less>" (the preferred side has more or less of that feature)."""

SMALL_MIN_WORDS = 6
"""Small style accepts "Select the response that recommends lemon." (two content words)."""

SMALL_MAX_TOKENS = 32

SAMPLE_TEMPERATURE = 0.8
"""Small style: temperature of the sampled proposal calls after the first, greedy one."""
"""One rule fits in about 20 tokens; a small-style answer that hits this limit is a run-on and is dropped."""

COPY_MAX_RUN = 5
"""A small-style rule may share at most this many consecutive words with the prompt or a response."""

FORM_EXAMPLE_MAX_RUN = 3
"""A rule may share at most this many consecutive words with a form prompt's worked example: its
phrases are short, and SmolLM2 paraphrases them ("gives its main advice first")."""

_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

_STOPWORDS = frozenset(
    """about above after again against all also although always among and any are around aren't because been
    before being below between both but can can't cannot could couldn't did didn't does doesn't doing don't down
    during each even ever every few for from further get gets got had hadn't has hasn't have haven't having her
    here hers herself him himself his how however i'd i'll i'm i've into isn't it's its itself just let's like
    made make makes many may might more most much must mustn't myself never nor not now off once one only
    other others ought our ours ourselves out over own same shan't she'd she'll she's should shouldn't since
    some still such than that that's the their theirs them themselves then there there's these they they'd
    they'll they're they've this those though through too under until upon very was wasn't we'd we'll we're
    we've well were weren't what what's when when's where where's which while who who's whom why why's will
    with won't would wouldn't yet you you'd you'll you're you've your yours yourself yourselves
    response responses answer select""".split()
)


def content_words(text: str) -> list[str]:
    """Lower-cased words of three or more letters, stopwords left out, in order."""
    return [w.strip("'-") for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def preference_log_odds(comparisons: Sequence[Comparison], *, prior: float = 1.0) -> dict[str, float]:
    """Per word: log((pairs where only the preferred side uses it + prior) / (only the rejected side + prior)).

    A dataset-level contrast used to order each pair's hints: words that keep
    separating winners from losers across pairs come first. Words used by both
    sides of a pair do not count for that pair.
    """
    only_pref: Counter[str] = Counter()
    only_rej: Counter[str] = Counter()
    for c in comparisons:
        pref, rej = set(content_words(c.text(c.preferred))), set(content_words(c.text(c.rejected)))
        only_pref.update(pref - rej)
        only_rej.update(rej - pref)
    return {w: math.log((only_pref[w] + prior) / (only_rej[w] + prior)) for w in only_pref.keys() | only_rej.keys()}


@dataclass(frozen=True)
class Hints:
    """What differs between the two sides of one pair, computed in code."""

    preferred: tuple[str, ...]
    """Words only the preferred response uses, most distinctive first."""
    rejected: tuple[str, ...]
    """Words only the rejected response uses, most distinctive first."""
    preferred_excerpt: str
    """The preferred response's sentence that holds its top hint word (its first sentence if none)."""
    rejected_excerpt: str


def contrastive_hints(
    comparison: Comparison, *, k: int = 5, weights: Mapping[str, float] | None = None, excerpt_words: int = 25
) -> Hints:
    """Distinctive words of each side of one pair, and one short sentence from each.

    Words are ordered by `weights` (e.g. `preference_log_odds` over the dataset:
    high first for the preferred side, low first for the rejected side), then by
    how often the side uses them, then alphabetically; without weights by count only.
    """
    pref_text, rej_text = comparison.text(comparison.preferred), comparison.text(comparison.rejected)
    pref, rej = Counter(content_words(pref_text)), Counter(content_words(rej_text))
    w = weights or {}

    def ranked(counts: Counter[str], other: Counter[str], sign: float) -> tuple[str, ...]:
        only = [word for word in counts if word not in other]
        only.sort(key=lambda word: (-sign * w.get(word, 0.0), -counts[word], word))
        return tuple(only[:k])

    good, bad = ranked(pref, rej, 1.0), ranked(rej, pref, -1.0)
    return Hints(good, bad, _excerpt(pref_text, good, excerpt_words), _excerpt(rej_text, bad, excerpt_words))


def _excerpt(text: str, words: Sequence[str], max_words: int) -> str:
    sentences = [s for s in _SENTENCE.split(" ".join(text.split())) if s]
    if not sentences:
        return ""
    chosen = sentences[0]
    for word in words[:1]:
        chosen = next((s for s in sentences if word in content_words(s)), chosen)
    tokens = chosen.split()
    return " ".join(tokens[:max_words]) + (" ..." if len(tokens) > max_words else "")


def fallback_principle(hints: Hints) -> str | None:
    """The code-only rule for a pair: "Select the response that mentions '<top hint word>'."."""
    if not hints.preferred:
        return None
    return f"{FRAME} mentions '{hints.preferred[0]}'."


def small_rejection(text: str, comparison: Comparison, hints: Hints) -> str | None:
    """Why a small-style rule is unusable, or None to keep it.

    "example": repeats the worked example; "generic": names nothing concrete
    (`icai.parse.is_generic`); "copy": repeats more than `COPY_MAX_RUN` consecutive
    words of the prompt or a response, or more than three hint words in a row
    (the hint list pasted back); "wrong-side": names words only the rejected
    response uses and none that only the preferred one uses.
    """
    examples = [(*PROPOSE_SMALL_EXAMPLE, COPY_MAX_RUN), *((*e, FORM_EXAMPLE_MAX_RUN) for e in PROPOSE_SMALL_FORM_EXAMPLES)]
    for example_user, example_rule, max_run in examples:
        if text.lower() == example_rule.lower() or copies_text(text, [example_rule, example_user], max_run=max_run):
            return "example"
    if is_generic(text):
        return "generic"
    sources = [comparison.prompt, comparison.text_a, comparison.text_b]
    if copies_text(text, sources, max_run=COPY_MAX_RUN) or copies_text(text, [" ".join(hints.preferred)], max_run=3):
        return "copy"
    words = set(content_words(principle_content(text)))
    if words & set(hints.rejected) and not words & set(hints.preferred):
        return "wrong-side"
    return None


def _truncated(text: str, output_tokens: int) -> bool:
    """The rule ran into the token limit: its first line never ended."""
    first = text.strip().split("\n", 1)[0].rstrip()
    return output_tokens >= SMALL_MAX_TOKENS and "\n" not in text.strip() and not first.endswith((".", "!", "?"))


def standard_requests(comparisons: Sequence[Comparison], *, per_pair: int, seed: int) -> list[Request]:
    """One proposal request per pair (the "standard" style)."""
    return [
        propose_request(c.prompt, c.text(c.preferred), c.text(c.rejected), n=per_pair, seed=seed) for c in comparisons
    ]


def small_plan(
    comparisons: Sequence[Comparison], *, form_from: Sequence[Comparison] | None = None
) -> tuple[list[Hints], list[FormSignal | None]]:
    """Per pair: its contrastive key-word hints, and the form hint it shows (None when none separates).

    Form features are tested for separation on `form_from` (default: `comparisons`),
    e.g. all training pairs when proposals come from a sample of them.
    """
    weights = preference_log_odds(comparisons)
    signals = separating_features(comparisons if form_from is None else form_from)
    if signals:
        log.info("propose (small): form features that separate the pairs: %s", [s.hint for s in signals])
    hints = [contrastive_hints(c, weights=weights) for c in comparisons]
    return hints, [pair_form_hint(c, signals) for c in comparisons]


def sample_hint(form: FormSignal | None, sample: int, samples: int) -> str:
    """The hint a small-style sample is asked from: the last of two or more samples uses the pair's form hint.

    The form sample is greedy: its prompt differs from the keyword samples', so it repeats none of them.
    """
    if form is not None and samples >= 2 and sample == samples - 1:
        return form.hint
    return KEYWORD_HINT


def small_requests(
    comparisons: Sequence[Comparison],
    hints: Sequence[Hints],
    *,
    seed: int,
    samples: int,
    temperature: float,
    forms: Sequence[FormSignal | None] | None = None,
) -> list[Request]:
    """`samples` one-rule requests per pair (the "small" style): the first greedy, the rest sampled.

    With `forms` (from `small_plan`), a pair's last sample asks from its form hint (see `sample_hint`).
    """
    forms = forms if forms is not None else [None] * len(comparisons)
    out = []
    for c, h, form in zip(comparisons, hints, forms, strict=True):
        for s in range(samples):
            t = 0.0 if s == 0 else temperature
            if form is not None and sample_hint(form, s, samples) != KEYWORD_HINT:
                t = 0.0
                request = propose_small_form_request(
                    c.prompt, form.phrase, temperature=t, seed=seed + s, max_tokens=SMALL_MAX_TOKENS
                )
            else:
                request = propose_small_request(
                    c.prompt, h.preferred, preferred_excerpt=h.preferred_excerpt, temperature=t, seed=seed + s,
                    max_tokens=SMALL_MAX_TOKENS,
                )
            out.append(request)
    return out


def propose(
    comparisons: Sequence[Comparison],
    llm: LLM,
    *,
    per_pair: int = 3,
    seed: int = 0,
    style: ProposeStyle = "standard",
    samples: int = 3,
    temperature: float = SAMPLE_TEMPERATURE,
    fallback: bool = False,
    form_from: Sequence[Comparison] | None = None,
) -> list[Principle]:
    """Ask the LLM why the preferred response won; unique principles with their source pairs.

    Proposals that echo the template, skip the "Select the response that" frame
    or are fragments are dropped (see `icai.parse.clean_principle`).

    Args:
        style: "standard" for capable models; "small" for small local models (see the module docstring).
        samples: small style only: calls per pair; the first is greedy, the others
            sample at `temperature` with seeds seed+1, seed+2, ...
        fallback: small style only: a pair with no usable sample gets the
            code-written rule of `fallback_principle`, tagged origin="hint-fallback".
        form_from: small style only: the pairs on which form features are tested for
            separation (default: `comparisons`; the pipeline passes all training pairs).
    """
    if style == "small":
        return _propose_small(
            comparisons,
            llm,
            per_pair=per_pair,
            seed=seed,
            samples=samples,
            temperature=temperature,
            fallback=fallback,
            form_from=form_from,
        )
    if style != "standard":
        raise ValueError(f"unknown proposal style {style!r}; use 'standard' or 'small'")
    completions = llm.map(standard_requests(comparisons, per_pair=per_pair, seed=seed), desc="propose")
    sources: dict[str, list[str]] = {}
    empty = 0
    for comparison, completion in zip(comparisons, completions, strict=True):
        texts = parse_principles(completion.text)[:per_pair]
        empty += not texts
        for text in texts:
            sources.setdefault(text, []).append(comparison.id)
    if empty:
        log.warning("propose: %d of %d pairs gave no usable principle", empty, len(comparisons))
    return [Principle.from_text(text, source_ids=ids) for text, ids in sources.items()]


def propose_unlabelled(
    comparisons: Sequence[Comparison], llm: LLM, *, per_pair: int = 3, seed: int = 0
) -> list[Principle]:
    """Candidate principles from unlabelled pairs: each way the two responses differ, in both directions.

    The model sees a pair with no label and writes `per_pair` differences, each as a rule that selects
    Response A and its opposite that selects Response B ("Select the response that is concise." /
    "... that gives more detail."), so whichever side a person later prefers, one direction of each
    difference can agree with them. `Comparison.preferred` is not read. A one-sided difference keeps its
    one usable rule. The principles carry hint "differences" and go on to clustering and voting as usual.
    """
    requests = [propose_unlabelled_request(c.prompt, c.text_a, c.text_b, n=per_pair, seed=seed) for c in comparisons]
    completions = llm.map(requests, desc="propose (label-free)", keys=[c.id for c in comparisons])
    sources: dict[str, list[str]] = {}
    empty = 0
    for comparison, completion in zip(comparisons, completions, strict=True):
        rules = [r for pair in parse_differences(completion.text)[:per_pair] for r in pair if r is not None]
        empty += not rules
        for text in rules:
            ids = sources.setdefault(text, [])
            if comparison.id not in ids:
                ids.append(comparison.id)
    if empty:
        log.warning("propose (label-free): %d of %d pairs gave no usable difference", empty, len(comparisons))
    return [Principle.from_text(text, source_ids=ids, hint=DIFFERENCES_HINT) for text, ids in sources.items()]


def _propose_small(
    comparisons: Sequence[Comparison],
    llm: LLM,
    *,
    per_pair: int,
    seed: int,
    samples: int,
    temperature: float,
    fallback: bool,
    form_from: Sequence[Comparison] | None,
) -> list[Principle]:
    if samples < 1:
        raise ValueError("samples must be at least 1")
    hints, forms = small_plan(comparisons, form_from=form_from)
    requests = small_requests(comparisons, hints, seed=seed, samples=samples, temperature=temperature, forms=forms)
    completions = llm.map(requests, desc="propose (small)", keys=[c.id for c in comparisons for _ in range(samples)])

    sources: dict[str, list[str]] = {}
    origins: dict[str, str] = {}
    kinds: dict[str, str] = {}
    rejected: Counter[str] = Counter()
    n_fallback = 0
    for i, (c, h) in enumerate(zip(comparisons, hints, strict=True)):
        kept: list[str] = []
        hint_of: dict[str, str] = {}
        for s, completion in enumerate(completions[i * samples : (i + 1) * samples]):
            texts = parse_principles(completion.text, min_words=SMALL_MIN_WORDS)
            if not texts:
                rejected["unparsed"] += 1
            for text in texts[:1]:  # one rule was asked for; later lines are run-on text
                reason = small_rejection(text, c, h)
                if reason is None and _truncated(completion.text, completion.output_tokens):
                    reason = "truncated"
                if reason:
                    rejected[reason] += 1
                elif text not in kept:
                    kept.append(text)
                    hint_of[text] = sample_hint(forms[i], s, samples)
        # a pair's form rule is kept even when its keyword samples fill per_pair: it is the only one of its kind
        chosen = kept[:per_pair] + [t for t in kept[per_pair:] if hint_of[t] != KEYWORD_HINT][:1]
        for text in chosen:
            sources.setdefault(text, []).append(c.id)
            origins[text] = "llm"
            kinds.setdefault(text, hint_of[text])
        written = fallback_principle(h) if not kept and fallback else None
        if written is not None:
            n_fallback += 1
            sources.setdefault(written, []).append(c.id)
            origins.setdefault(written, FALLBACK_ORIGIN)
            kinds.setdefault(written, KEYWORD_HINT)
    log.info(
        "propose (small): %d samples, rejected %s; %d of %d pairs used the code-only fallback",
        len(requests),
        dict(rejected),
        n_fallback,
        len(comparisons),
    )
    return [
        Principle.from_text(text, source_ids=ids, origin=origins[text], hint=kinds[text])
        for text, ids in sources.items()
    ]


def resolve_propose_style(style: str, capabilities: Capabilities) -> ProposeStyle:
    """"auto" means "small" for a provider that declares `small_model` (the local model), else "standard"."""
    if style in ("standard", "small"):
        return style  # type: ignore[return-value]
    if style != "auto":
        raise ValueError(f"unknown proposal style {style!r}; use 'auto', 'standard' or 'small'")
    return "small" if capabilities.small_model else "standard"
