"""Every option of a run: `RunConfig`, its defaults, checks and stage groups, at the bottom of the package.

A stage or estimate that needs the run's options imports them from here; nothing here imports a stage, so a
module of any layer can read the config without reaching up to the orchestrator (`icai.pipeline`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from icai.errors import ConfigError

DEFAULT_MODEL = "local/smollm2"
"""The model a run uses when none is named: the packaged SmolLM2 (offline, no key)."""

STAGES = ("models", "propose", "cluster", "vote", "select", "evaluate")
"""RunConfig's option groups, in stage order; `icai run --help` shows one argument group per stage."""

_ALL = ("propose", "cluster", "vote", "select", "evaluate")
"""The stages a field can affect (its fingerprint group)."""


class OptionError(ConfigError):
    """A RunConfig option with a value that cannot work; `option` is the field name, `reason` the rest of the sentence."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option} {reason}")
        self.option = option
        self.reason = reason


def _option(
    default: Any,
    *,
    group: str,
    help: str,
    flag: str | None = "",
    dest: str | None = None,
    check: tuple[Any, ...] = (),
    affects: Mapping[str, Callable[[RunConfig], bool] | None] | None = None,
    negatable: bool = False,
) -> Any:
    """A RunConfig field with its metadata: the one place that states its default, group, CLI flag, help and check.

    flag: "" derives --field-name, None keeps the option out of the CLI; dest: the argparse attribute when it is
    not the field name (the CLI's names of old: args.batch_size, args.one_order). check: ("positive",), ("non_negative",)
    or ("range", low, high, include_low, include_high). affects: stage -> condition on the config under which
    the field changes that stage's output (default: its own group, always); stage fingerprints hash these.
    """
    return field(
        default=default,
        metadata={
            "group": group,
            "help": help,
            "flag": flag,
            "dest": dest,
            "check": check,
            "affects": {group: None} if affects is None else dict(affects),
            "negatable": negatable,
        },
    )


def _adaptive(c: RunConfig) -> bool:
    return c.adaptive


def _small_style(c: RunConfig) -> bool:
    return c.propose_style != "standard"


@dataclass(frozen=True)
class RunConfig:
    """Every option of a run, the only home of its default. Checked when made; stored with the result.

    Each field's metadata (see `_option`) names its stage group, CLI flag and help (icai.cli builds `icai run`'s
    options from them) and the stages it affects: a changed option re-runs exactly those stages. `model` and
    `embedder` name what the CLI and the cost estimate build; `run()` records the models that actually ran.
    """

    model: str = _option(
        DEFAULT_MODEL, group="models", help="provider/model", affects={}
    )
    embedder: str = _option("minilm", group="models", help="minilm | st/<folder> | openai/<model> (/v1/embeddings at $OPENAI_BASE_URL or the OpenAI API) | hash", affects={})
    seed: int = _option(
        0,
        group="models",
        help="every random choice (split, sampling, k-means, adaptive order, bootstrap) follows it",
        affects={"propose": None, "cluster": None, "vote": _adaptive, "select": None, "evaluate": None},
    )
    # propose ----------------------------------------------------------------------------------
    proposals_per_pair: int = _option(3, group="propose", help="principles asked for per pair", check=("positive",))
    propose_sample: int | None = _option(
        None, group="propose", help="propose principles from this many pairs (seeded sample; default: all)",
        check=("positive",),
    )
    """Propose principles from this many training pairs (seeded sample); None: from all."""
    propose_style: Literal["auto", "standard", "small"] = _option(
        "auto",
        group="propose",
        help="small: contrastive word hints and one rule per call, for tiny local models; auto picks it for providers "
        "that declare small-model prompts (local/ models)",
    )
    """auto: "small" (contrastive hints, one sampled rule per call; icai.propose) for providers whose capabilities
    declare `small_model` (local models), else "standard"."""
    proposal_samples: int = _option(
        3, group="propose", help="small style: calls per pair", flag=None, check=("positive",),
        affects={"propose": _small_style},
    )
    propose_fallback: bool = _option(
        False,
        group="propose",
        help="small style: a pair with no usable model rule gets one written by code from its top keyword "
        "(origin hint-fallback; off by default)",
        affects={"propose": _small_style},
    )
    """Small proposal style: a pair with no usable rule gets a code-written one, tagged origin="hint-fallback"
    (off by default: such rules are not a model's reading of the pair; `icai run --propose-fallback`)."""
    # cluster ----------------------------------------------------------------------------------
    n_clusters: int = _option(40, group="cluster", help="candidate principles kept after clustering", check=("positive",))
    principles: tuple[str, ...] = _option(
        (),
        group="cluster",
        help="your own principles (icai run --principles FILE): origin user, never clustered away, voted like the others",
        flag=None,
    )
    """The user's principles (`icai.user_principles`): added to the cluster representatives, so never clustered
    away; voted and selected like the others; their statistics are kept in constitution.json `user_principles`."""
    style_principles: bool = _option(
        True,
        group="cluster",
        help="add the style principles (origin surface: longer/shorter, more/fewer list items, headers, bold, ...), "
        "voted exactly from the responses with no model call",
        negatable=True,
    )
    """Add `icai.style.style_principles()` to the tested principles (origin "surface", never clustered away): each
    surface feature in both directions, voted exactly by counting it in both responses; selected like the others."""
    principles_only: bool = _option(
        False, group="cluster", help="vote only `principles`: no proposing, no clustering (icai test)", flag=None
    )
    """Test the user's principles only (`icai test`): propose and cluster are skipped; vote, select and evaluate run."""
    # vote -------------------------------------------------------------------------------------
    vote_mode: Literal["auto", "generate", "logprob", "embedding"] = _option(
        "auto",
        group="vote",
        help="logprob: read P(A)/P(B) (local models, OpenAI-compatible servers); generate: JSON answers; "
        "embedding: no LLM, cosine similarity (run only); auto: logprob for local models and for servers "
        "at a --base-url that return log-probs (asked once), generate otherwise",
    )
    """auto: log-prob A/B scoring for local models and for OpenAI-compatible servers at a base_url that return
    log-probs (asked once), generated JSON for API models (icai.vote.resolve_vote_mode);
    embedding: no LLM votes, cosine similarity of principle and responses (icai.embed_vote)."""
    vote_batch_size: int = _option(
        40,
        group="vote",
        help="principles per voting call (log-prob votes: on the local model only)",
        flag="--batch-size",
        dest="batch_size",
        check=("positive",),
    )
    """Principles per voting call; 40 as in the reference implementation (bench/calls.py, docs/benchmarks.md).
    Log-prob votes batch only on providers that take branched requests (the local model)."""
    cascade: bool = _option(
        False, group="vote", help="skip LLM votes on (pair, principle) items the embedder finds clearly irrelevant"
    )
    """Exhaustive LLM voting skips (pair, principle) items the embedder finds clearly irrelevant (icai.embed_vote)."""
    adaptive: bool = _option(
        False,
        group="vote",
        help="test each principle only until its place in or out of the top --max-principles is clear",
        negatable=True,
    )
    """Vote each principle only until its place in or out of the top max_principles is clear (icai.adaptive)."""
    confidence: float = _option(
        0.95, group="vote", help="adaptive: confidence of its intervals", check=("range", 0, 1, False, False),
        affects={"vote": _adaptive},
    )
    """Adaptive voting: probability that all its confidence intervals hold."""
    min_pairs: int = _option(
        32, group="vote", help="adaptive: pairs every principle is tested on", check=("positive",),
        affects={"vote": _adaptive},
    )
    """Adaptive voting: pairs every principle is tested on before any is stopped."""
    adaptive_one_order: bool = _option(
        False,
        group="vote",
        help="adaptive: ask each pair once, in a random order (half the voting calls; log-prob votes are calibrated "
        "for position bias)",
        flag="--one-order",
        dest="one_order",
        affects={"vote": _adaptive},
    )
    """Adaptive voting: ask each pair once, in a seeded random order, instead of in both orders (half the calls);
    log-prob margins are then calibrated by each round's mean (icai.vote.calibrated_margins)."""
    # select -----------------------------------------------------------------------------------
    max_principles: int = _option(
        5, group="select", help="constitution size", check=("positive",),
        affects={"select": None, "vote": _adaptive, "evaluate": None},
    )
    selection: Literal["greedy", "strength"] = _option(
        "greedy",
        group="select",
        help="greedy: add principles while they raise training agreement, merging duplicates; "
        "strength: the strongest --max-principles",
        flag="--select",
    )
    """greedy: add principles while they raise training agreement (icai.select); strength: the top max_principles."""
    min_votes: int = _option(2, group="select", help="decisive votes a principle needs to be ranked", flag=None, check=("positive",))
    min_gain: float = _option(
        0.01, group="select", help="greedy: least rise in training agreement for a principle to enter",
        check=("non_negative",),
    )
    """Greedy selection: least rise in training agreement (and at least one pair's worth) for a principle to enter."""
    duplicate_agreement: float = _option(
        0.9, group="select", help="vote agreement above which two principles are duplicates", flag=None,
        check=("range", 0, 1, False, True),
    )
    """Two principles whose decisive votes agree on this share of the pairs both decided are duplicates."""
    alpha: float = _option(
        0.05, group="select", help="q-value below which a principle is significant", check=("range", 0, 1, False, False)
    )
    """A principle is "significant" when its Benjamini-Hochberg q-value is below alpha, else "exploratory"."""
    bootstrap: int = _option(
        200, group="select", help="resamples for selection stability, from cached votes (0: off)", check=("non_negative",)
    )
    """Bootstrap resamples of the training pairs for selection stability (cached votes; no model calls); 0: off."""
    # evaluate ---------------------------------------------------------------------------------
    test_size: float = _option(
        0.0, group="evaluate", help="held-out share for evaluation, e.g. 0.3", check=("range", 0, 1, True, False),
        affects=dict.fromkeys(_ALL),
    )
    flip_check: bool = _option(False, group="evaluate", help="also learn from flipped labels (sanity check)")
    curve_candidates: int = _option(
        10, group="evaluate", help="principles on the held-out principle-count curve", flag=None, check=("positive",)
    )

    def __post_init__(self) -> None:
        hints = get_type_hints(RunConfig)
        for f in dataclasses.fields(self):
            _check_field(f, hints[f.name], getattr(self, f.name))
        if isinstance(self.principles, str) or not all(isinstance(t, str) and t.strip() for t in self.principles):
            raise OptionError("principles", "must be a list of non-empty texts")
        object.__setattr__(self, "principles", tuple(self.principles))  # a JSON list (config.json) becomes a tuple
        if self.principles_only and not self.principles:
            raise OptionError("principles_only", "needs principles to test; none were given")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["principles"] = list(self.principles)  # as config.json holds it, so a resumed run compares equal
        return data

    def group(self, stage: str) -> dict[str, Any]:
        """The options that change `stage`'s output under this config (what its fingerprint hashes)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            affects = f.metadata["affects"]
            if stage in affects and (affects[stage] is None or affects[stage](self)):
                out[f.name] = getattr(self, f.name)
        return out


def _check_field(f: dataclasses.Field[Any], hint: Any, value: Any) -> None:
    """Raise OptionError when `value` does not fit the field's type, choices or check."""
    optional = type(None) in get_args(hint)
    if value is None:
        if optional:
            return
        raise OptionError(f.name, "must be set, not None")
    base = next((a for a in get_args(hint) if a is not type(None)), hint) if optional else hint
    if get_origin(base) is Literal:
        choices = get_args(base)
        if value not in choices:
            raise OptionError(f.name, f"must be one of {', '.join(map(str, choices))}, not {value!r}")
        return
    if base is bool:
        if not isinstance(value, bool):
            raise OptionError(f.name, f"must be true or false, not {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise OptionError(f.name, f"must be an integer, not {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise OptionError(f.name, f"must be a number, not {value!r}")
    elif base is str and not (isinstance(value, str) and value):
        raise OptionError(f.name, f"must be a non-empty string, not {value!r}")
    check = f.metadata["check"]
    if not check:
        return
    if check[0] == "positive" and value <= 0:
        raise OptionError(f.name, f"must be positive, not {value}")
    if check[0] == "non_negative" and value < 0:
        raise OptionError(f.name, f"must not be negative, not {value}")
    if check[0] == "range":
        low, high, with_low, with_high = check[1:]
        if not ((low <= value if with_low else low < value) and (value <= high if with_high else value < high)):
            interval = f"{'[' if with_low else '('}{low}, {high}{']' if with_high else ')'}"
            raise OptionError(f.name, f"must lie in {interval}, not {value}")
