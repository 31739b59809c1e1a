"""The hidden rules of the ICAI synthetic sets, and how a principle's direction is judged against them.

Each set has 30 pairs, 10 per instruction; on every pair the preferred response is the one
with the rule's favoured item (checked by `check_oracle`: the detectors below agree with
the labels on 30 of 30 pairs in both sets).

- orthogonal (`synthetic_data_orthogonal_adcbg.csv`): a story about a cat over one about a dog;
  the blue t-shirt over the green one; lemon ice cream over raspberry.
- aligned (`synthetic_data_aligned_vqvtb.csv`): "Washington, D.C." over made-up Paris stories;
  a named UK destination (Bath, Edinburgh, the Lake District) over generic words about travel;
  a willing "Of course, I'm here to help" over a grudging "I guess I can help".

A principle's direction is judged two ways:

(a) **text** (`text_direction`): the principle's words are matched against each rule's
favoured and disfavoured terms. A term counts +1 when it names the favoured item, -1 the
disfavoured one, and its sign flips when a negating cue comes before it in the same clause:
"not", "no", "never", "without", "avoid(s/ing)", "instead of", "rather than", "over", "than",
"unlike", "less", "fewer", "lacks", "other than", "except", "refuses", "against". Clauses end
at , ; : . ! ? and at "and", "but", "while", "whereas" (so "does not mention raspberry and
recommends lemon" reads raspberry negated, lemon not). The rule with the most term matches
is the principle's rule; the sign of the summed score is its direction (+1 right, -1 WRONG,
0 ambiguous). A principle with no term of any rule matches no rule by text.

(b) **votes** (`vote_direction`): the principle's own decisive training votes on the pairs a
rule applies to (the rule's instruction) are compared with the oracle side, the response
holding the favoured item (the detectors, which read the texts, not the labels). Share of
agreeing votes above 0.5: right; below: WRONG; a rule is the principle's by votes when it
is the principle's text rule when its text names one; otherwise the rule whose pairs hold the
most of its decisive votes, if they are at least 3 and at least 60% of all its decisive votes
(`MIN_DECISIVE`, `CONCENTRATION`): a principle deciding pairs of every topic alike is about none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from icai.types import Comparison, Side, Vote


@dataclass(frozen=True)
class HiddenRule:
    """One hidden rule: where it applies, which response it favours, and the words that name each side."""

    name: str
    topic: str
    """Regex on the instruction (the text before "Output:"): the pairs the rule applies to."""
    favoured: str
    """Regex on the response after "Output:": it holds the favoured item."""
    fav_terms: tuple[str, ...]
    dis_terms: tuple[str, ...]
    right: tuple[str, ...] = ()
    """Paraphrases in the right direction (used by the simulated oracle and the tests)."""
    wrong: tuple[str, ...] = ()
    """Paraphrases in the wrong direction."""
    not_favoured: str | None = None
    """Regex: a response matching it does not hold the favoured item even if `favoured` matches."""
    _fav: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _dis: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fav", tuple(re.compile(rf"\b(?:{t})\b") for t in self.fav_terms))
        object.__setattr__(self, "_dis", tuple(re.compile(rf"\b(?:{t})\b") for t in self.dis_terms))

    def applies(self, c: Comparison) -> bool:
        return bool(re.search(self.topic, _instruction(c), re.IGNORECASE))

    def holds(self, response: str) -> bool:
        body = _output(response)
        if self.not_favoured and re.search(self.not_favoured, body, re.IGNORECASE):
            return False
        return bool(re.search(self.favoured, body, re.IGNORECASE))

    def oracle_side(self, c: Comparison) -> Side | None:
        """The response holding the favoured item; None where the rule does not apply or both or neither hold it."""
        if not self.applies(c):
            return None
        a, b = self.holds(c.text_a), self.holds(c.text_b)
        if a == b:
            return None
        return "a" if a else "b"

    def mentions(self, clause: str) -> list[tuple[int, int]]:
        """(position, +1 favoured / -1 disfavoured) of every term in a lower-cased clause."""
        found = [(m.start(), 1) for p in self._fav for m in p.finditer(clause)]
        found += [(m.start(), -1) for p in self._dis for m in p.finditer(clause)]
        return sorted(found)


def _instruction(c: Comparison) -> str:
    return c.prompt or c.text_a.split("Output:", 1)[0]


def _output(text: str) -> str:
    return text.split("Output:", 1)[-1]


CAT = "cats?|feline|felines|kittens?|kitty|meow\\w*|purr\\w*|whiskers|mr\\. whiskers|fluffy"
DOG = "dogs?|pupp(?:y|ies)|pups?|canines?|bark\\w*|fetch\\w*|leash|buddy|sparky|baxter|rufus|max|charlie|fido"

ORTHOGONAL = (
    HiddenRule(
        "cat>dog", topic=r"pet", favoured=r"\b(cats?|feline|kitten|kitty|meow\w*|purr\w*|whiskers)\b",
        fav_terms=(CAT,), dis_terms=(DOG,),
        right=("Select the response whose story is about a cat.", "Select the response that features a feline pet rather than a dog.",
               "Select the response that avoids writing about a dog.", "Select the response that tells a funny story about a cat named Whiskers."),
        wrong=("Select the response whose story is about a dog.", "Select the response that features a dog instead of a cat.",
               "Select the response that does not mention a cat."),
    ),
    HiddenRule(
        "blue>green", topic=r"t-shirt", favoured=r"\bblue\b",
        fav_terms=("blue",), dis_terms=("green",),
        right=("Select the response that recommends the blue t-shirt.", "Select the response that prefers blue over green.",
               "Select the response that does not recommend the green t-shirt.", "Select the response that picks the blue shirt for its calming colour."),
        wrong=("Select the response that recommends the green t-shirt.", "Select the response that chooses green instead of blue.",
               "Select the response that avoids the blue shirt."),
    ),
    HiddenRule(
        "lemon>raspberry", topic=r"ice cream", favoured=r"\blemon",
        fav_terms=("lemons?|lemony|citrus",), dis_terms=("raspberr(?:y|ies)|berry|berries",),
        right=("Select the response that recommends lemon ice cream.", "Select the response that suggests lemon rather than raspberry.",
               "Select the response that does not pick raspberry.", "Select the response that praises the tangy citrus flavour of lemon."),
        wrong=("Select the response that recommends raspberry ice cream.", "Select the response that suggests raspberry instead of lemon.",
               "Select the response that avoids lemon flavour."),
    ),
)  # fmt: skip

ALIGNED = (
    HiddenRule(
        "correct capital", topic=r"capital", favoured=r"washington", not_favoured=r"\bparis\b",
        fav_terms=("washington", "correct(?:ly)?", "accurate(?:ly)?", "factual(?:ly)?", "true", "truthful(?:ly)?"),
        dis_terms=("paris", "incorrect(?:ly)?", "wrong(?:ly)?", "false(?:ly|hoods?)?", "fictional", "made[- ]up", "fabricat\\w*",
                   "jokes?", "joking", "humou?r\\w*", "absurd\\w*", "pranks?", "mischiev\\w*", "hackers?", "lottery", "mistaken\\w*"),
        right=("Select the response that states that Washington, D.C. is the capital.",
               "Select the response that gives the factually correct answer instead of a made-up one.",
               "Select the response that does not claim that Paris is the capital.", "Select the response that answers accurately."),
        wrong=("Select the response that says Paris is the capital of the US.",
               "Select the response that tells a humorous made-up story rather than the correct answer.",
               "Select the response that avoids giving the correct answer."),
    ),
    HiddenRule(
        "specific destination", topic=r"destination", favoured=r"\b(bath|edinburgh|lake district|cumbria|cornwall|york|london|cotswolds|snowdonia|oxford|cambridge|stonehenge|scotland)\b",
        fav_terms=("bath", "edinburgh", "lake district", "cumbria", "specific(?:ally)?", "particular", "concrete",
                   "nam(?:e|es|ed|ing) (?:a |an |one )?(?:specific |particular |real )?(?:place|city|destination|location)s?", "landmarks?", "castle"),
        dis_terms=("generic(?:ally)?", "general(?:ly)?", "vague(?:ly)?", "abstract", "platitudes?", "benefits of travel\\w*", "cliche\\w*", "clich\u00e9\\w*"),
        right=("Select the response that names a specific destination such as Bath or Edinburgh.",
               "Select the response that recommends a particular place rather than generic travel benefits.",
               "Select the response that avoids generic statements about travel.", "Select the response that suggests a concrete destination with landmarks."),
        wrong=("Select the response that talks about the benefits of travel in general.",
               "Select the response that gives generic advice instead of naming a place.",
               "Select the response that does not name a specific destination."),
    ),
    HiddenRule(
        "willing help", topic=r"help me", favoured=r"of course|happy to|glad to|absolutely|certainly|i'd be|i would be|i'm here",
        fav_terms=("helpful(?:ly)?", "willing(?:ly|ness)?", "eager(?:ly|ness)?", "enthusias\\w*", "polite(?:ly|ness)?", "friendly",
                   "courteous(?:ly)?", "kind(?:ly)?", "warm(?:ly|th)?", "of course", "offers? (?:to )?(?:help|assist\\w*)"),
        dis_terms=("reluctan\\w*", "grudging\\w*", "begrudging\\w*", "unwilling\\w*", "rude(?:ly|ness)?", "dismissive\\w*",
                   "sarcas\\w*", "unhelpful\\w*", "impolite\\w*", "i guess"),
        right=("Select the response that offers help willingly and politely.",
               "Select the response that is enthusiastic about helping rather than reluctant.",
               "Select the response that does not sound reluctant.", "Select the response that replies in a warm and friendly way."),
        wrong=("Select the response that answers reluctantly.", "Select the response that sounds grudging instead of eager.",
               "Select the response that is not enthusiastic about helping."),
    ),
)  # fmt: skip

RULES: dict[str, tuple[HiddenRule, ...]] = {"synthetic_orthogonal": ORTHOGONAL, "synthetic_aligned": ALIGNED}

NEGATORS = re.compile(
    r"\b(?:not|no|never|without|avoid(?:s|ing|ed)?|instead of|rather than|over|than|unlike|less|fewer|lacks?|lacking"
    r"|other than|except|refus(?:es|ing)|against|n't)\b|n't"
)
CLAUSE = re.compile(r"[,;:.!?]|\b(?:and|but|while|whereas)\b")
FRAME = re.compile(r"^\s*select the response (?:that|which|whose)\s*")


@dataclass(frozen=True)
class TextJudgement:
    rule: str | None
    """The rule whose terms the principle names most; None when it names none."""
    direction: int
    """+1 right, -1 wrong, 0 ambiguous (terms of both sides cancel)."""
    n_terms: int


def text_direction(text: str, rules: Sequence[HiddenRule]) -> TextJudgement:
    """Which hidden rule a principle names, and in which direction (see the module docstring)."""
    body = FRAME.sub("", text.lower().replace("\u2019", "'"))
    score = {r.name: 0 for r in rules}
    count = {r.name: 0 for r in rules}
    for clause in CLAUSE.split(body):
        cues = [m.start() for m in NEGATORS.finditer(clause)]
        for r in rules:
            for pos, sign in r.mentions(clause):
                negated = sum(c < pos for c in cues) % 2 == 1
                score[r.name] += -sign if negated else sign
                count[r.name] += 1
    best = max(rules, key=lambda r: count[r.name])
    if count[best.name] == 0:
        return TextJudgement(None, 0, 0)
    s = score[best.name]
    return TextJudgement(best.name, (s > 0) - (s < 0), count[best.name])


CONCENTRATION = 0.6
"""Votes assign a principle to a rule when at least this share of its decisive votes fall on the rule's pairs..."""
MIN_DECISIVE = 3
"""... and at least this many."""


@dataclass(frozen=True)
class VoteJudgement:
    rule: str | None
    """The rule judged (see `vote_direction`); None when the votes concentrate on no rule."""
    n_decisive: int
    """Decisive votes on that rule's pairs."""
    n_agree: int
    """Of those, votes for the oracle side (the response with the favoured item)."""
    n_decisive_total: int

    @property
    def agreement(self) -> float | None:
        return self.n_agree / self.n_decisive if self.n_decisive else None

    @property
    def direction(self) -> int:
        a = self.agreement
        return 0 if a is None or a == 0.5 else 1 if a > 0.5 else -1


def vote_side(v: Vote, c: Comparison) -> Side | None:
    if v.value == "for":
        return c.preferred
    if v.value == "against":
        return c.rejected
    return None


def vote_direction(
    votes: Sequence[Vote], comparisons: Sequence[Comparison], rules: Sequence[HiddenRule], *, rule: str | None = None
) -> VoteJudgement:
    """One principle's votes against a rule's oracle side.

    `rule` fixes the rule (the scorer passes the text judgement's rule); without it the rule is the
    one whose pairs hold the most decisive votes, if at least MIN_DECISIVE and at least CONCENTRATION
    of all the principle's decisive votes.
    """
    by_id = {c.id: c for c in comparisons}
    n_pairs = {r.name: sum(r.applies(c) for c in comparisons) for r in rules}
    per: dict[str, list[bool]] = {r.name: [] for r in rules}
    total = 0
    for v in votes:
        c = by_id.get(v.comparison_id)
        side = vote_side(v, c) if c is not None else None
        if c is None or side is None:
            continue
        total += 1
        for r in rules:
            oracle = r.oracle_side(c)
            if oracle is not None:
                per[r.name].append(side == oracle)
    if rule is None:
        name = max(per, key=lambda n: (len(per[n]), -n_pairs[n]))
        n_in = len(per[name])
        if n_in < MIN_DECISIVE or n_in < CONCENTRATION * total:
            return VoteJudgement(None, 0, 0, total)
    else:
        name = rule
    return VoteJudgement(name, len(per[name]), sum(per[name]), total)


def check_oracle(comparisons: Sequence[Comparison], rules: Sequence[HiddenRule]) -> dict[str, int]:
    """How many pairs have exactly one applicable rule whose oracle side is the labelled one (a sanity check)."""
    n_ok = sum(
        1 for c in comparisons if [r.oracle_side(c) for r in rules if r.applies(c)] == [c.preferred]
    )
    return {"pairs": len(comparisons), "oracle_matches_label": n_ok}
