"""Typed records passed between the pipeline stages.

Every record is a frozen dataclass. DataFrames appear only at the edges
(`to_frame()` helpers), never inside a stage.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from icai.errors import DataError
from icai.files import write_json_atomic

if TYPE_CHECKING:  # pandas is imported lazily: records must stay cheap to import
    import pandas as pd

Side = Literal["a", "b"]
"""Which response: the first (a) or the second (b)."""

Pick = Literal["a", "b", "neither", "invalid"]
"""What an annotator answered for one ordering of a pair, in the pair's own a/b terms."""

VoteValue = Literal["for", "against", "abstain", "invalid"]
"""Whether a principle picks the human-preferred response."""

CONSTITUTION_SCHEMA = "icai.constitution/1"


def text_id(text: str, *, length: int = 12) -> str:
    """Stable short id for a text (used for principles and for comparisons without ids); never raises on odd text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def normalize_text(text: str) -> str:
    """Text a person typed, as it is checked, hashed and stored: NFKC, with format characters removed.

    Format characters (Unicode category Cf: zero-width spaces and joiners, direction overrides such as
    U+202E, soft hyphens, byte-order marks) are invisible, so two texts that look alike are one text and
    a filter sees the letters a reader sees. A lone surrogate (possible in JSON, "\\ud800") is not a
    character: a DataError.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"the text holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not a character") from None
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", text)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two responses to one prompt and which one a human preferred."""

    id: str
    text_a: str
    text_b: str
    preferred: Side
    prompt: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> Side:
        return "b" if self.preferred == "a" else "a"

    def text(self, side: Side) -> str:
        return self.text_a if side == "a" else self.text_b

    def with_preferred(self, preferred: Side) -> Comparison:
        """The same pair with another label (used for flipped-label sanity runs)."""
        return Comparison(self.id, self.text_a, self.text_b, preferred, self.prompt, self.metadata)


@dataclass(frozen=True)
class Principle:
    """A candidate rule, phrased "Select the response that ..."."""

    id: str
    text: str
    source_ids: tuple[str, ...] = ()
    """Ids of the comparisons whose proposals it stands for."""
    cluster: int | None = None
    cluster_size: int = 1
    origin: str = "llm"
    """Who wrote it: "llm", or "hint-fallback" for the code-only proposer (`icai.propose`)."""
    hint: str = ""
    """What the writer was shown besides the prompt (`icai.propose.HINT_KINDS`): "" (both whole responses,
    the standard style), "keywords" (small style: contrastive words), or "form:<feature>:<more|less>"
    (small style: a surface feature that separates preferred from rejected responses, `icai.surface`)."""

    @classmethod
    def from_text(
        cls, text: str, *, source_ids: Iterable[str] = (), origin: str = "llm", hint: str = ""
    ) -> Principle:
        return cls(
            id=text_id(text.strip().lower()), text=text.strip(), source_ids=tuple(source_ids), origin=origin, hint=hint
        )


@dataclass(frozen=True)
class Vote:
    """One principle applied to one comparison, in both presentation orders.

    `picks` holds one pick per order that was asked, translated back to the
    comparison's own a/b sides, so a position-biased annotator (always "first")
    yields ("a", "b") and cancels out to "abstain".
    """

    comparison_id: str
    principle_id: str
    value: VoteValue
    picks: tuple[Pick, ...] = ()
    raw: str = ""


@dataclass(frozen=True)
class PrincipleStats:
    """How one principle fared against the human labels.

    Counts are over comparisons. `agreement` = for / (for + against);
    `relevance` = (for + against) / (comparisons with a vote, invalid ones included);
    `kappa` = 2 x agreement - 1 (Cohen's kappa with chance agreement 0.5) and
    `strength` = kappa x relevance, as Feedback Forensics defines them;
    `cohen_kappa` is Cohen's kappa from the empirical marginals.
    Fields after `relevance` are filled by the statistics code when computed.
    """

    principle_id: str
    n_for: int
    n_against: int
    n_abstain: int
    n_invalid: int
    agreement: float | None
    relevance: float
    kappa: float | None = None
    strength: float | None = None
    agreement_ci: tuple[float, float] | None = None
    p_value: float | None = None
    q_value: float | None = None
    swap_consistency: float | None = None
    length_adjusted_p: float | None = None
    length_confounded: bool | None = None
    n_pairs_tested: int | None = None
    """Comparisons the principle was voted on (fewer than the training set under adaptive voting)."""
    verdict: str | None = None
    """"significant" (BH q below the run's alpha) or "exploratory"; set by `icai.select.select`."""
    cohen_kappa: float | None = None
    """Cohen's kappa with chance agreement from the empirical marginals (over decided pairs)."""

    @property
    def n_total(self) -> int:
        return self.n_for + self.n_against + self.n_abstain + self.n_invalid

    @property
    def verdict_text(self) -> str:
        """The verdict in words: "significant against the labels" when the agreement is below one half."""
        if self.verdict == "significant" and self.agreement is not None and self.agreement < 0.5:
            return "significant against the labels"
        return self.verdict or "unrated"


@dataclass(frozen=True)
class Constitution:
    """A ranked list of principles with their statistics and provenance."""

    principles: tuple[Principle, ...]
    stats: tuple[PrincipleStats, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.principles)

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.principles]

    def stats_for(self, principle_id: str) -> PrincipleStats | None:
        return next((s for s in self.stats if s.principle_id == principle_id), None)

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for rank, p in enumerate(self.principles, start=1):
            s = self.stats_for(p.id)
            rows.append(
                {
                    "rank": rank,
                    "id": p.id,
                    "text": p.text,
                    "cluster": p.cluster,
                    "cluster_size": p.cluster_size,
                    "source_ids": list(p.source_ids),
                    "origin": p.origin,
                    "hint": p.hint,
                    "stats": _stats_to_dict(s) if s else None,
                }
            )
        return {"schema": CONSTITUTION_SCHEMA, "principles": rows, **dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Constitution:
        if data.get("schema") != CONSTITUTION_SCHEMA:
            raise DataError(f"not an icai constitution: schema is {data.get('schema')!r}, expected {CONSTITUTION_SCHEMA!r}")
        principles, stats = [], []
        for row in sorted(data["principles"], key=lambda r: r["rank"]):
            principles.append(
                Principle(
                    id=row["id"],
                    text=row["text"],
                    source_ids=tuple(row.get("source_ids", ())),
                    cluster=row.get("cluster"),
                    cluster_size=row.get("cluster_size", 1),
                    origin=row.get("origin", "llm"),
                    hint=row.get("hint", ""),
                )
            )
            if row.get("stats"):
                stats.append(_stats_from_dict(row["stats"]))
        meta = {k: v for k, v in data.items() if k not in ("schema", "principles")}
        return cls(tuple(principles), tuple(stats), meta)

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Constitution:
        path = Path(path)
        data = read_json_file(path, "constitution file")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: malformed constitution, missing field {exc}") from None

    def to_frame(self) -> pd.DataFrame:
        """One row per principle: rank, text and statistics (the same columns when the constitution is empty)."""
        import pandas as pd

        rows = [{"rank": r["rank"], "text": r["text"], **(r["stats"] or {})} for r in self.to_dict()["principles"]]
        columns = ["rank", "text", *(f.name for f in fields(PrincipleStats))]
        return pd.DataFrame(rows, columns=columns if not rows else None)


def stats_to_dict(s: PrincipleStats) -> dict[str, Any]:
    """A PrincipleStats as JSON data (the form constitution.json holds)."""
    return _stats_to_dict(s)


def stats_from_dict(d: Mapping[str, Any]) -> PrincipleStats:
    """A PrincipleStats from `stats_to_dict` data (unknown keys ignored)."""
    return _stats_from_dict(d)


def _stats_to_dict(s: PrincipleStats) -> dict[str, Any]:
    d = asdict(s)
    if d["agreement_ci"] is not None:
        d["agreement_ci"] = list(d["agreement_ci"])
    return d


def _stats_from_dict(d: Mapping[str, Any]) -> PrincipleStats:
    known = {f.name for f in fields(PrincipleStats)}
    kw = {k: v for k, v in d.items() if k in known}
    if kw.get("agreement_ci") is not None:
        kw["agreement_ci"] = tuple(kw["agreement_ci"])
    return PrincipleStats(**kw)


def read_json_file(path: str | Path, what: str) -> Any:
    """Parsed JSON of `path`; a missing or unparsable file is a DataError naming it and `what` it should be."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a {what}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def comparisons_to_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        [
            {"id": c.id, "prompt": c.prompt, "text_a": c.text_a, "text_b": c.text_b, "preferred": c.preferred}
            for c in comparisons
        ]
    )


def votes_to_frame(votes: Sequence[Vote]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "comparison_id": v.comparison_id,
                "principle_id": v.principle_id,
                "value": v.value,
                "picks": ",".join(v.picks),
                "raw": v.raw,
            }
            for v in votes
        ],
        columns=["comparison_id", "principle_id", "value", "picks", "raw"],
    )
