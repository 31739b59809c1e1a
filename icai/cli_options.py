"""The options icai's commands share, each declared once and attached to every command that takes it.

`SHARED` holds each shared option's flags, argument group and help; `COMMANDS` says which command takes which
(`attach` adds them, in the same groups, with the same words). The RunConfig fields among them (--model,
--embedder, --seed, --vote-mode, --batch-size) take flag, type, default and help from their `RunConfig` field,
like the rest of `icai run`'s stage options (`add_config_options`). tests/test_cli_options.py walks every
subcommand's parser against this table.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

GROUP_TITLES = {
    "data": "input data",
    "output": "output",
    "models": "models and randomness",
    "propose": "stage 1, propose: principles from each pair",
    "cluster": "stage 2, cluster: candidates kept",
    "vote": "stage 3, vote: which principles agree with the labels",
    "select": "stage 4, select: the constitution",
    "evaluate": "stage 5, evaluate: held-out checks",
    "calls": "model calls: server, limits and budget",
    "executor": "executor: where model calls and embeddings run",
    "groups": "subgroups and targets",
}
"""Argument group key -> the title `--help` shows; the same title in every command."""


class UsageError(ValueError):
    """An option value that cannot work; reported in one line with exit code 2 (`icai.errors.EXIT_USAGE`)."""


@dataclass(frozen=True)
class Option:
    """One shared option: its flags, group and argparse keywords (help included)."""

    flags: tuple[str, ...]
    group: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    config: str | None = None
    """The RunConfig field it comes from (flag, type, default and help from the field's metadata)."""


def _config_fields() -> dict[str, dataclasses.Field[Any]]:
    from icai.config import RunConfig

    return {f.name: f for f in dataclasses.fields(RunConfig)}


def config_flag(name: str) -> str | None:
    """The `icai run` flag of a RunConfig field (None when the field has none)."""
    flag = _config_fields()[name].metadata["flag"]
    return None if flag is None else flag or "--" + name.replace("_", "-")


def config_dest(name: str) -> str:
    """The argparse attribute that holds a RunConfig field's value."""
    return str(_config_fields()[name].metadata["dest"] or name)


def config_kwargs(name: str) -> dict[str, Any]:
    """argparse keywords of a RunConfig field: type or choices, default and help all come from the field."""
    from icai.config import RunConfig

    f = _config_fields()[name]
    flag = config_flag(name)
    assert flag is not None, name
    hint = get_type_hints(RunConfig)[name]
    base = next((a for a in get_args(hint) if a is not type(None)), hint) if type(None) in get_args(hint) else hint
    help_text = f.metadata["help"]
    kwargs: dict[str, Any] = {"dest": config_dest(name), "default": f.default}
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if f.metadata["negatable"] else "store_true"
    else:
        if get_origin(base) is Literal:
            kwargs["choices"] = list(get_args(base))
        else:
            kwargs["type"] = base
            kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        if f.default is not None:
            help_text += f" (default {f.default})"
    kwargs["help"] = help_text
    return kwargs


SHARED: dict[str, Option] = {
    # input data ------------------------------------------------------------------------------------------
    "format": Option(
        ("--format",),
        "data",
        {"dest": "data_format", "default": "auto", "metavar": "FORMAT",
         "help": "input shape: auto (default: detect from the file and its columns), or one of: {formats}"},
    ),
    "columns": Option(
        ("--columns",),
        "data",
        {"metavar": "FIELD=COLUMN,...",
         "help": "which column holds each field, for shapes not detected: prompt=...,a=...,b=...,label=... "
         "(or chosen=...,rejected=...; id=... optional)"},
    ),
    "label_map": Option(
        ("--label-map",),
        "data",
        {"metavar": "VALUE=a|b|tie|none,...",
         "help": "read label values as a side, a tie or no label, e.g. model_a=a,model_b=b,draw=tie"},
    ),
    # models and randomness (RunConfig fields) --------------------------------------------------------------
    "model": Option(("--model",), "models", config="model"),
    "embedder": Option(("--embedder",), "models", config="embedder"),
    "seed": Option(("--seed",), "models", config="seed"),
    "vote_mode": Option(("--vote-mode",), "vote", config="vote_mode"),
    "batch_size": Option(("--batch-size",), "vote", config="vote_batch_size"),
    # model calls ------------------------------------------------------------------------------------------
    "base_url": Option(
        ("--base-url",),
        "calls",
        {"metavar": "URL", "help": "OpenAI-compatible server URL (vLLM, llama.cpp, Ollama); also OPENAI_BASE_URL"},
    ),
    "concurrency": Option(("--concurrency",), "calls", {"type": int, "default": 4, "metavar": "N",
                                                        "help": "parallel API calls (default 4)"}),
    "timeout": Option(("--timeout",), "calls", {"type": float, "default": 60.0, "metavar": "S",
                                                "help": "seconds per model call (default 60)"}),
    "max_attempts": Option(("--max-attempts",), "calls", {"type": int, "default": 6, "metavar": "N",
                                                          "help": "tries per model call before giving up (default 6)"}),
    "max_calls": Option(("--max-calls",), "calls", {"type": int, "metavar": "N",
                                                    "help": "stop before making more than this many model calls "
                                                    "(exit code 3; completed calls are cached)"}),
    "max_cost": Option(("--max-cost",), "calls", {"type": float, "metavar": "USD",
                                                  "help": "stop before the model calls could cost more than this "
                                                  "many USD (exit code 3; completed calls are cached)"}),
    "price": Option(("--price",), "calls", {"metavar": "IN,OUT", "help": "USD per 1M input and output tokens of "
                                            "--model, for one the price table does not know (a server at --base-url "
                                            "is unpriced otherwise), e.g. 0.15,0.6"}),
    # executor ---------------------------------------------------------------------------------------------
    "executor": Option(
        ("--executor",),
        "executor",
        {"choices": ["local", "ray"], "default": "local",
         "help": "this process (default) or a Ray cluster (pip install 'icai[ray]')"},
    ),
    "ray_address": Option(("--ray-address",), "executor", {"metavar": "ADDRESS", "help": "Ray cluster to join: auto, "
                                                           "or ray://host:10001 (default: start a local one)"}),
    "ray_workers": Option(("--ray-workers",), "executor", {"type": int, "metavar": "N", "help": "Ray actors per model "
                                                           "(default: one per GPU for local models, else per CPU)"}),
    "shard_size": Option(("--shard-size",), "executor", {"type": int, "default": 256, "metavar": "N",
                                                         "help": "model requests per unit of work sent to an executor "
                                                         "(default 256)"}),
    # output -----------------------------------------------------------------------------------------------
    "out": Option(("--out",), "output", {"metavar": "PATH"}),
    "overwrite": Option(
        ("--overwrite",),
        "output",
        {"action": "store_true",
         "help": "replace what --out holds (a run made from another dataset, an existing file) instead of refusing"},
    ),
    "dry_run": Option(("--dry-run",), "output", {"action": "store_true",
                                                 "help": "print the estimated model calls (and cost); call nothing"}),
    "json": Option(("--json",), "output", {"action": "store_true", "dest": "json",
                                           "help": "print the results as one JSON object on stdout (messages and "
                                           "progress go to stderr)"}),
    # subgroups and targets --------------------------------------------------------------------------------
    "by": Option(("--by",), "groups", {"metavar": "COLUMN", "help": "per-group statistics of each principle by this "
                                       "metadata column, with a permutation test of each group's difference "
                                       "(BH-corrected)"}),
    "bins": Option(("--bins",), "groups", {"type": int, "metavar": "N",
                                           "help": "with --by on a time or numeric column: N quantile bins (drift)"}),
    "target": Option(("--target",), "groups", {"default": "label", "metavar": "label|model:NAME",
                                               "help": "label (the human preference, default) or model:NAME (the "
                                               "label becomes which response is NAME's; pairs where NAME is neither "
                                               "side or both are dropped)"}),
    "model_a_col": Option(("--model-a-col",), "groups", {"default": "model_a", "metavar": "COLUMN",
                                                         "help": "with --target model:NAME: column naming response a's "
                                                         "model (default model_a)"}),
    "model_b_col": Option(("--model-b-col",), "groups", {"default": "model_b", "metavar": "COLUMN",
                                                         "help": "with --target model:NAME: column naming response b's "
                                                         "model (default model_b)"}),
}
"""Every shared option, once."""

DATA = ("format", "columns", "label_map")
MODELS = ("model", "embedder", "seed")
VOTING = ("vote_mode", "batch_size")
CONNECTION = ("base_url", "concurrency", "timeout", "max_attempts")
BUDGET = ("max_calls", "max_cost", "price")
EXECUTOR = ("executor", "ray_address", "ray_workers", "shard_size")
GROUPS = ("by", "bins", "target", "model_a_col", "model_b_col")
MODEL_CALLS = (*MODELS, *VOTING, *CONNECTION, *BUDGET, *EXECUTOR)

COMMANDS: dict[str, tuple[str, ...]] = {
    "run": (*DATA, *MODEL_CALLS, "out", "overwrite", "dry_run", "json", *GROUPS),
    "test": (*DATA, *MODEL_CALLS, "out", "overwrite", "dry_run", "json", *GROUPS),
    "annotate": (*DATA, *MODEL_CALLS, "out", "overwrite", "json"),
    "evaluate": (*DATA, *MODEL_CALLS, "out", "overwrite", "json", *GROUPS),
    "validate": (*DATA, "seed", "json"),
    "compare": (*DATA, *MODEL_CALLS, "out", "dry_run", "json"),
    "report": ("json",),
    "label": (*DATA, *MODEL_CALLS, "out", "overwrite", "dry_run"),
    "app": ("model", *CONNECTION),
    "export": ("out",),
}
"""Command -> the shared options it takes. A command missing here takes none."""

OUT_HELP = {
    "run": "run directory (an existing one is resumed; a new or empty folder starts one)",
    "test": "run directory (an existing one is resumed; a new or empty folder starts one)",
    "annotate": "CSV of predictions (an existing file is refused unless --overwrite)",
    "evaluate": "folder for evaluation.json and pairs.csv, each pair's label and every annotator's prediction "
    "(default: print only)",
    "compare": "folder for compare.json, compare.html, the cross-test votes and cache",
    "export": "file to write (default: print)",
    "label": "folder for the labels (labels.json, labelled.csv), the constitution and the cache; rerun to resume",
}
"""What --out names for each command that takes it (the one shared option whose words depend on the command)."""

OUT_REQUIRED = ("run", "test", "annotate", "compare", "label")

MODEL_FROM_RUN = ("compare", "app")
"""Commands whose --model and --embedder default to what the run recorded."""


def option_kwargs(name: str, command: str) -> dict[str, Any]:
    """The argparse keywords of shared option `name` as `command` takes it."""
    option = SHARED[name]
    kwargs = config_kwargs(option.config) if option.config else dict(option.kwargs)
    if name == "format":
        from icai.io import FORMATS

        kwargs["help"] = kwargs["help"].format(formats=", ".join(FORMATS))
    if name == "out":
        kwargs["help"] = OUT_HELP[command]
        kwargs["required"] = command in OUT_REQUIRED
    if name == "model" and command in MODEL_FROM_RUN:
        kwargs["default"] = None
        kwargs["help"] = kwargs["help"].split(" (default")[0] + " (default: the model the run recorded)"
    if name == "embedder" and command in MODEL_FROM_RUN:
        kwargs["default"] = None
        kwargs["help"] = kwargs["help"].split(" (default")[0] + " (default: the embedder the run recorded)"
    return kwargs


def group(parser: argparse.ArgumentParser, key: str) -> argparse._ArgumentGroup:
    """The argument group titled GROUP_TITLES[key] in `parser`, made on first use."""
    title = GROUP_TITLES[key]
    for g in parser._action_groups:
        if g.title == title:
            return g
    return parser.add_argument_group(title)


def attach(parser: argparse.ArgumentParser, command: str, *, stages: Sequence[str] = ()) -> None:
    """Add the shared options of `command` (COMMANDS), then the RunConfig options of `stages`, each in its group.

    Groups appear in GROUP_TITLES' order in every command's --help.
    """
    keys = {SHARED[name].group for name in COMMANDS[command]} | set(stages)
    for key in GROUP_TITLES:
        if key in keys:
            group(parser, key)
    for name in COMMANDS[command]:
        option = SHARED[name]
        group(parser, option.group).add_argument(*option.flags, **option_kwargs(name, command))
    taken = set(parser._option_string_actions)
    for name, f in _config_fields().items():
        flag = config_flag(name)
        if f.metadata["group"] in stages and flag is not None and flag not in taken:
            group(parser, f.metadata["group"]).add_argument(flag, **config_kwargs(name))


def add_verbose(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """-v/--verbose, on the top-level parser and on every command (`icai run ... -v` works as `icai -v run ...`)."""
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS, help="log progress details"
    )


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `icai.load_comparisons` keywords (format, columns, label_map) from the input data options."""
    return {
        "format": getattr(args, "data_format", "auto"),
        "columns": parse_pairs(getattr(args, "columns", None), "--columns", "prompt=question,a=answer_1,b=answer_2,label=winner"),
        "label_map": parse_pairs(getattr(args, "label_map", None), "--label-map", "model_a=a,model_b=b,tie=tie"),
    }


def parse_pairs(text: str | None, flag: str, example: str) -> dict[str, str] | None:
    """``k=v,k=v`` as a dict (None when the flag is absent); a malformed item is a `UsageError` naming the flag."""
    if text is None:
        return None
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects KEY=VALUE pairs separated by commas, e.g. {example}; got {item!r}")
        if key.strip() in pairs:
            raise UsageError(f"{flag} names {key.strip()!r} twice")
        pairs[key.strip()] = value.strip()
    return pairs
