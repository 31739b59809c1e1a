"""Command line: argument parsing and printing only; the work happens in icai.pipeline and friends."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from icai._version import __version__
from icai.cli_options import (
    GROUP_TITLES,
    UsageError,
    add_verbose,
    attach,
    config_dest,
    config_flag,
    data_options,
    parse_pairs,
)
from icai.errors import (
    EXIT_BUDGET,
    EXIT_CLOSED_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
)
from icai.textfmt import one_line

log = logging.getLogger("icai")

STAGES = ("models", "propose", "cluster", "vote", "select", "evaluate")
"""The RunConfig groups: the options of every stage."""


__all__ = ["GROUP_TITLES", "UsageError", "build_parser", "config_dest", "config_flag", "data_options", "main", "parse_pairs"]


def _targeted(args: argparse.Namespace, comparisons):
    """The comparisons with --target's label and the grouping of --by checked, before any call is made."""
    from icai.groups import group_labels
    from icai.target import retarget

    if args.bins is not None and args.by is None:
        raise UsageError("--bins needs --by COLUMN")
    if getattr(args, "per_group_constitution", False) and args.by is None:
        raise UsageError("--per-group-constitution needs --by COLUMN")
    targeted = retarget(comparisons, args.target, model_a_col=args.model_a_col, model_b_col=args.model_b_col)
    if targeted.note():
        _say(args, f"Note: {targeted.note()}")
    if args.by is not None:
        group_labels(targeted.comparisons, args.by, bins=args.bins)
    return targeted


def _print_groups(analysis) -> None:
    print()
    print(analysis.table())
    for line in analysis.summary():
        print(f"  {line}")
    for name, rows in (analysis.extra.get("per_group_constitutions") or {}).items():
        print(f"Constitution of {analysis.column} = {name}: " + ("; ".join(r["text"] for r in rows) or "empty"))



def _command(sub, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".")
    add_verbose(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icai",
        description="Inverse Constitutional AI: principles that explain preferences.",
        epilog="Exit codes: 0 success, 1 unexpected error (a failed model call, a bug), 2 bad input or option, "
        "3 budget reached (--max-calls, --max-cost), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"icai {__version__}")
    add_verbose(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = _command(sub, "run", "learn a constitution from preference data")
    r.add_argument("data")
    r.add_argument(
        "--principles",
        dest="principles_file",
        metavar="FILE",
        help="your own principles (one per line, or a JSON list): voted beside the proposed ones, never clustered "
        "away, origin user",
    )
    attach(r, "run", stages=STAGES)
    _per_group_option(r)

    t = _command(
        sub,
        "test",
        "test your own principles on preference data: no proposing, no clustering",
        "Vote the principles of --principles on every pair and report per-principle statistics with "
        "confidence intervals and significance, a constitution selected from them, report.html and the usual run "
        "directory (resumable, one run per directory). The embedder is used only by --vote-mode embedding and "
        "--cascade.",
    )
    t.add_argument("data")
    t.add_argument("--principles", dest="principles_file", metavar="FILE", required=True, help="one principle per line, or a JSON list")
    attach(t, "test", stages=("models", "vote", "select", "evaluate"))
    _per_group_option(t)

    a = _command(
        sub,
        "annotate",
        "predict preferences with a constitution (labels optional)",
        "Predict which response of each pair the constitution prefers. Labels are optional: pairs "
        "without one (no or an empty label column, a tie) are predicted; with labels, agreement is reported too. "
        "The CSV keeps each pair's id, prompt and texts (--keep-columns chooses). The embedder is not used: "
        "the judge is --model.",
    )
    a.add_argument("data")
    a.add_argument("--constitution", required=True, help="a constitution.json, or the run directory holding one")
    a.add_argument(
        "--keep-columns",
        metavar="COLUMN,...",
        default="prompt,text_a,text_b",
        help="input fields copied into the CSV beside id: prompt, text_a, text_b and metadata columns "
        "(default prompt,text_a,text_b; none: only the id)",
    )
    attach(a, "annotate")

    e = _command(
        sub,
        "evaluate",
        "score a constitution against labelled pairs, with baselines",
        "Score a constitution against labelled pairs: the judge following it, the same judge without principles, "
        "a random constitution and surface features, each with a 95% interval. The judge following it is the one "
        "icai run scores it with: --model told to follow the principles when an LLM voted them; the constitution's "
        "own votes on these pairs when it holds style principles (counted exactly) or its run voted by embedding "
        "similarity (--embedder, the only use of it), with --model's line beside it as constitution_llm.",
    )
    e.add_argument("data")
    e.add_argument("--constitution", required=True, help="a constitution.json, or the run directory holding one")
    attach(e, "evaluate")

    v = _command(sub, "validate", "check a dataset: every problem in one table (exit 2 only for errors)")
    v.add_argument("data")
    attach(v, "validate")
    v.add_argument(
        "--test-size",
        type=float,
        default=0.3,
        help="held-out share assumed when checking whether duplicates would straddle a split (default 0.3)",
    )

    c = _command(
        sub,
        "compare",
        "compare two runs (or two datasets, run first): matched principles, strength on each side, differences",
    )
    c.add_argument("a", metavar="RUN_A|DATA_A")
    c.add_argument("b", metavar="RUN_B|DATA_B")
    c.add_argument("--yes", action="store_true", help="make the model calls the comparison needs without asking")
    c.add_argument("--min-similarity", type=float, default=0.8, help="embedding similarity for two principles to match (default 0.8)")
    attach(c, "compare", stages=STAGES)

    rep = _command(
        sub,
        "report",
        "(re)write report.html for a run directory",
        "Write report.html into a run directory (RUN, or RUN/constitution.json). A folder that holds no icai run "
        "is refused and nothing is written; a run still in progress is waited for (--wait seconds).",
    )
    rep.add_argument("run_dir", metavar="RUN")
    rep.add_argument(
        "--wait", type=float, default=0.0, metavar="S",
        help="seconds to wait for a run in progress to finish (default 0: refuse it at once)",
    )
    attach(rep, "report")

    lb = _command(
        sub,
        "label",
        "label pairs yourself, the most informative first; a constitution with intervals from only your labels",
        "Propose principles from the unlabelled pairs (each difference in both directions), cluster and "
        "vote them once, then ask you about one pair at a time, the one whose answer tells the principles apart "
        "fastest (a share chosen at random). Keys: a/1 A, b/2 B, t tie, s skip, u undo, q quit. Every answer is "
        "written at once to --out (labels.json with who and when; labelled.csv for icai run; constitution.json); "
        "rerun the same command to resume. Labelling makes no model calls. The same queue is in icai app --out.",
    )
    lb.add_argument("data")
    lb.add_argument("--who", help="name recorded with each label (default: your login name)")
    lb.add_argument(
        "--patience", type=int, default=10,
        help="labels without a change in the constitution's membership after which you may stop (default 10)",
    )
    lb.add_argument(
        "--random-share", type=float, default=0.2,
        help="share of pairs chosen at random rather than as the most informative (default 0.2)",
    )
    attach(lb, "label", stages=("models", "propose", "cluster", "vote", "select"))

    ap = _command(sub, "app", "a local web workbench over a run directory: browse, reword, vote, save versions")
    ap.add_argument("run_dir")
    ap.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only); "
                    "any other address needs --allow-host")
    ap.add_argument("--allow-host", dest="allow_hosts", action="append", default=[], metavar="NAME",
                    help="a host name (or IP address) the app may be reached by when --host is not a loopback address; "
                    "repeatable; requests naming any other host are refused")
    attach(ap, "app")

    from icai.export import EXPORT_FORMATS

    x = sub.add_parser(
        "export",
        help="export a constitution for other tools",
        description="Export a constitution for other tools.",
        epilog="formats:\n" + "\n".join(f"  {f.name:<20}{f.help}" for f in EXPORT_FORMATS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbose(x)
    x.add_argument("constitution")
    # not the input --format of the commands that read pairs: the output format (export takes no pairs)
    x.add_argument("--format", dest="export_format", required=True, choices=list(EXPORT_FORMATS), help="output format")
    attach(x, "export")
    return parser


def _per_group_option(p: argparse.ArgumentParser) -> None:
    from icai.cli_options import group

    group(p, "groups").add_argument(
        "--per-group-constitution", action="store_true",
        help="with --by: also select a constitution per group from the shared votes (no new calls)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from icai.errors import DataError
    from icai.llm.base import ConfigError, LLMError
    from icai.llm.client import BudgetExceeded

    try:
        _check_options(args)
        return _run_command(args)
    except BrokenPipeError:
        return _closed_pipe()
    except BudgetExceeded as exc:
        resume = "; completed calls are cached, rerun with a larger budget to resume" if args.command in RESUMABLE else ""
        print(f"icai: budget reached: {exc}{resume}", file=sys.stderr)
        return EXIT_BUDGET
    except (DataError, ConfigError, UsageError) as exc:
        _error(args, exc)
        return EXIT_USAGE
    except LLMError as exc:
        resume = "; completed calls are cached, rerun the same command to resume" if args.command in RESUMABLE else ""
        print(f"icai: model error: {exc}{resume}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("icai: interrupted; completed calls are cached, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _error(args, f"{where}{exc.strerror or exc}")
        return EXIT_USAGE
    except Exception as exc:  # a bug: one sentence, and the traceback with --verbose
        if args.verbose:
            raise
        print(
            f"icai: internal error: {type(exc).__name__}: {one_line(str(exc), max_chars=300)} (rerun with -v for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _run_command(args: argparse.Namespace) -> int:
    """Run the command of `args`; a live bar it left running (a failure mid-map) is stopped before the error prints."""
    progress_log = logging.getLogger("icai.progress")
    level = progress_log.level
    try:
        return int(COMMANDS[args.command](args) or 0)
    finally:
        progress_log.setLevel(level)
        while _OPEN_BARS:
            _OPEN_BARS.pop().close()


def _error(args: argparse.Namespace, problem: object) -> None:
    """One sentence on stderr; with --json, also one JSON object on stdout, so a script reading it gets JSON."""
    print(f"icai: error: {problem}", file=sys.stderr)
    if getattr(args, "json", False):
        import json

        print(json.dumps({"error": str(problem), "exit_code": EXIT_USAGE}))


RESUMABLE = ("run", "test", "label")
"""Commands whose model calls are cached in a run directory."""


def _closed_pipe() -> int:
    """The reader of stdout went away (`icai export ... | head`): end quietly, as a Unix filter does."""
    import os

    try:  # Python would report the failed flush of stdout at exit; point it at /dev/null instead
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_CLOSED_PIPE




def _check_options(args: argparse.Namespace) -> None:
    # RunConfig's options are checked by RunConfig itself (cmd_run); these are the model and executor options
    positive = ("concurrency", "timeout", "max_attempts", "ray_workers", "shard_size")
    for name in positive:
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, not {value}")
    for name in ("max_calls", "max_cost"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, not {value}")
    if args.command in ("annotate", "evaluate") and getattr(args, "vote_mode", None) == "embedding":
        raise UsageError("--vote-mode embedding applies to 'icai run' only; annotate and evaluate need an LLM judge")


def run_config(args: argparse.Namespace):
    """The RunConfig of `icai run`'s options; a value RunConfig refuses is reported under its flag."""
    from icai.config import OptionError, RunConfig

    try:
        given = {
            name: getattr(args, config_dest(name))
            for name in (f.name for f in dataclasses.fields(RunConfig))
            if config_flag(name) is not None and hasattr(args, config_dest(name))
        }
        return RunConfig(**given)
    except OptionError as exc:
        raise UsageError(f"{config_flag(exc.option) or exc.option} {exc.reason}") from None


@contextlib.contextmanager
def _executor(args: argparse.Namespace):
    """The executor of --executor, closed (Ray actors released) when the command ends."""
    from icai.ray_executor import make_executor

    executor = make_executor(args.executor, address=args.ray_address, workers=args.ray_workers)
    try:
        yield executor
    finally:
        executor.close()


def _base_url(args: argparse.Namespace) -> str | None:
    """The server of --base-url, or of $OPENAI_BASE_URL for an openai/ model (what the provider will call)."""
    import os

    if args.base_url or not str(args.model).startswith("openai/"):
        return args.base_url
    return os.environ.get("OPENAI_BASE_URL") or None


def _price(args: argparse.Namespace):
    """--price IN,OUT as a Price (None when not given)."""
    from icai.llm.prices import Price

    text = getattr(args, "price", None)
    if text is None:
        return None
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--price expects two numbers, USD per 1M input and output tokens, e.g. 0.15,0.6; got {text!r}") from None
    if min(low, high) < 0:
        raise UsageError(f"--price must not be negative, not {text}")
    return Price(low, high)


_OPEN_BARS: list[Any] = []
"""Live bars of the command being run, stopped by `main` however the command ends (a failure mid-map included)."""


def _make_llm(args: argparse.Namespace, executor):
    """The model of --model, with its progress: a live bar per batch of calls on a terminal, plain lines otherwise
    (`icai run`/`icai test` replace it with their stage plan's)."""
    from icai.llm import get_llm
    from icai.progress import LiveCalls, call_observer

    llm = get_llm(
        args.model,
        base_url=args.base_url,
        executor=executor,
        shard_size=args.shard_size,
        concurrency=args.concurrency,
        max_calls=args.max_calls,
        max_cost=args.max_cost,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        price=_price(args),
    )
    llm.observer = call_observer()
    if isinstance(llm.observer, LiveCalls):
        _OPEN_BARS.append(llm.observer)
    else:  # the lines go to the log on stderr, which shows INFO only under -v otherwise
        logging.getLogger("icai.progress").setLevel(logging.INFO)
    return llm


def cmd_run(args: argparse.Namespace) -> int:
    import dataclasses as dc

    from icai.user_principles import read_principles_file

    config = run_config(args)
    if args.principles_file is not None:
        config = dc.replace(config, principles=tuple(read_principles_file(args.principles_file)))
    return _run_into_store(args, config)


def cmd_test(args: argparse.Namespace) -> int:
    """icai test: the run pipeline with principles_only (no propose, no cluster); a plain function of its options."""
    import dataclasses as dc

    from icai.user_principles import read_principles_file

    config = dc.replace(run_config(args), principles=tuple(read_principles_file(args.principles_file)), principles_only=True)
    return _run_into_store(args, config)


GC_THRESHOLD = (50_000, 20, 100)
"""The cyclic collector's thresholds for a run (Python's are 700, 10, 10): a run allocates millions of short-lived
objects (requests, answers, votes) that reference counting frees; with the default, a million pairs cost minutes of
collections that scan the loaded pairs again and again (bench/driver_scale.py, docs/scaling.md)."""


def _settle_heap() -> None:
    """Once the pairs are loaded: exempt what is alive from cyclic collection and collect less often (this process
    only: the CLI, never the library)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _run_into_store(args: argparse.Namespace, config) -> int:
    """Load the data, run the pipeline into the run directory --out, print the result (icai run and icai test)."""
    from icai.cost import estimate_run
    from icai.embed import get_embedder
    from icai.io import load_comparisons
    from icai.lifetime import GroupOptions, run_to_directory
    from icai.llm.registry import capabilities_for
    from icai.progress import HideBarLines, LiveProgress, estimate_wall_time, observer_for

    targeted = _targeted(args, load_comparisons(args.data, **data_options(args)))
    comparisons = list(targeted.comparisons)
    _settle_heap()
    capabilities = capabilities_for(config.model, base_url=args.base_url)
    estimate = estimate_run(comparisons, config, capabilities=capabilities, base_url=_base_url(args), price=_price(args))
    wall = estimate_wall_time(estimate, capabilities)
    if args.dry_run:
        if args.json:
            _print_json(_estimate_dict(estimate, wall))
            return 0
        print(estimate.table())
        if wall is not None:
            print(wall.line())
        print("Dry run: no model calls were made.")
        return 0
    if config.test_size > 0 and (estimate.n_train < 10 or estimate.n_train < estimate.n_test):
        log.warning(
            "--test-size %g holds out %d of %d pairs and leaves %d to learn from; principles are proposed and "
            "voted on the training pairs only (e.g. --test-size 0.3 leaves %d)",
            config.test_size, estimate.n_test, estimate.n_train + estimate.n_test, estimate.n_train,
            round(0.7 * (estimate.n_train + estimate.n_test)),
        )
    if args.max_calls is not None and estimate.calls > args.max_calls:
        log.warning("the run needs about %d calls; it will stop after --max-calls %d", estimate.calls, args.max_calls)
    cost = estimate.cost()
    if args.max_cost is not None and cost is not None and cost > args.max_cost:
        log.warning("the run may cost about $%.4f; it will stop before --max-cost $%g", cost, args.max_cost)

    # icai test clusters nothing: its embedder is built only when a vote option uses one
    from icai.voter import resolve_voter

    needs_embedder = (
        not config.principles_only or resolve_voter(config, capabilities).vote_mode == "embedding" or config.cascade
    )
    # Executor, model and embedder are checked before the run directory is made, so a typo leaves no files behind.
    with _executor(args) as executor:
        llm = _make_llm(args, executor)
        # stages done / total and an ETA: a live bar on a terminal, plain lines in the log otherwise (and in run.log)
        llm.observer = observer_for(estimate, prior=wall)
        bar = llm.observer if isinstance(llm.observer, LiveProgress) else None
        embedder = get_embedder(args.embedder if needs_embedder else "hash", executor=executor)
        groups = None
        if args.by is not None:
            groups = GroupOptions(
                args.by, bins=args.bins, per_group_constitution=args.per_group_constitution,
                extra={"target": targeted.to_dict()},
            )
        # the terminal's log handlers skip the lines the bar shows; run.log (added by the run) keeps them
        hide = HideBarLines()
        terminal = list(logging.getLogger().handlers) if bar is not None else []
        for h in terminal:
            h.addFilter(hide)
        try:
            done = run_to_directory(
                args.out, comparisons, llm=llm, embedder=embedder, config=config, overwrite=args.overwrite, groups=groups
            )
        finally:
            if bar is not None:
                bar.close()
            for h in terminal:
                h.removeFilter(hide)
    _print_run_result(args, config, done.result, done.analysis, llm, done.path)
    return 0


def _estimate_dict(estimate, wall) -> dict[str, Any]:
    """--dry-run --json: the estimate per stage (cost None where the price is unknown)."""
    return {
        "model": estimate.model, "n_train": estimate.n_train, "n_test": estimate.n_test,
        "n_principles": estimate.n_principles,
        "stages": [{**dataclasses.asdict(s), "cost_usd": estimate.cost(s)} for s in estimate.stages],
        "calls": estimate.calls, "min_calls": estimate.min_calls, "cost_usd": estimate.cost(),
        "wall_seconds": None if wall is None else wall.seconds, "dry_run": True,
    }


def _print_run_result(args: argparse.Namespace, config, result, analysis, llm, path) -> None:
    """What icai run and icai test print at the end: the constitution, scores, groups and usage (or --json)."""
    u = result.usage
    meta = result.constitution.metadata
    if args.json:
        _print_json({
            "run_dir": str(path),
            "constitution": result.constitution.to_dict(),
            "evaluation": result.evaluation.to_dict() if result.evaluation is not None else None,
            "groups": analysis.to_dict() if analysis is not None else None,
            "usage": dict(u),
            "cost_usd": llm.cost_usd,
        })
        return
    for note in meta.get("notes", []):
        print(f"Note: {note}")
    if config.principles_only:
        _print_user_principles(result.constitution, title=f"Your {len(config.principles)} principles, tested on {len(result.train)} pairs")
        print()
        _print_constitution(result.constitution)
    else:
        _print_constitution(result.constitution)
        if config.principles:
            print()
            _print_user_principles(result.constitution, title="Your principles (voted beside the proposed ones)")
    if result.evaluation is not None:
        print()
        _print_scores(result.evaluation)
    if analysis is not None:
        _print_groups(analysis)
    spent = _spent(llm)
    print(
        f"\n{u['calls']} model calls ({u['cache_hits']} from cache), "
        f"{u['input_tokens']} input + {u['output_tokens']} output tokens{spent}. Run directory: {path}"
    )
    if meta.get("n_invalid_votes") or meta.get("n_invalid_picks"):
        print(
            f"{meta['n_invalid_votes']} of {meta['n_votes']} votes invalid, {meta['n_invalid_picks']} unreadable "
            "answers in all (see the raw column of votes.csv)"
        )


def _spent(llm) -> str:
    """", $0.0021" for a priced model; ", price unknown" for one without a price (a self-hosted server)."""
    cost = llm.cost_usd
    return ", price unknown" if cost is None else f", ${cost:.4f}"


def _print_user_principles(constitution, *, title: str) -> None:
    """Every user principle with its statistics, selected or not (constitution.json `user_principles`)."""
    from icai.types import stats_from_dict

    rows = constitution.metadata.get("user_principles") or []
    print(title)
    for i, row in enumerate(rows, start=1):
        place = (
            f"constitution rank {row['rank']}"
            if row.get("in_constitution")
            else f"merged into {row['merged_into']}" if row.get("merged_into") else "not selected"
        )
        s = stats_from_dict(row["stats"]) if row.get("stats") else None
        if s is None or s.agreement is None:
            decided = "" if s is None else f"; for {s.n_for} / against {s.n_against} / abstain {s.n_abstain}"
            print(f"{i:>2}. {row['text']}  [no decisive votes{decided}; {place}]")
            continue
        lo, hi = s.agreement_ci or (float("nan"), float("nan"))
        q = f", q {s.q_value:.3f}" if s.q_value is not None else ""
        print(
            f"{i:>2}. {row['text']}  [{s.verdict_text}{q}; agreement {s.agreement:.2f} ({lo:.2f}-{hi:.2f}), "
            f"relevance {s.relevance:.2f}, for {s.n_for} / against {s.n_against} / abstain {s.n_abstain}; {place}]"
        )


def _print_constitution(constitution) -> None:
    meta = constitution.metadata
    if not constitution.principles:
        print("The constitution is empty: no principle agreed with the labels often enough.")
        return
    selection = meta.get("selection") or {}
    merged = len(selection.get("merges", []))
    how = f" ({selection['method']} selection; {merged} duplicate(s) merged)" if selection else ""
    print(f"Constitution{how}")
    frequency = (meta.get("stability") or {}).get("frequency", {})
    for rank, p in enumerate(constitution.principles, start=1):
        s = constitution.stats_for(p.id)
        detail = ""
        if s is not None and s.agreement is not None:
            lo, hi = s.agreement_ci or (float("nan"), float("nan"))
            q = f", q {s.q_value:.3f}" if s.q_value is not None else ""
            detail = (
                f"  [{s.verdict_text}{q}; agreement {s.agreement:.2f} ({lo:.2f}-{hi:.2f}), "
                f"relevance {s.relevance:.2f}, for {s.n_for} / against {s.n_against}"
            )
            if p.id in frequency or frequency:
                detail += f"; in {frequency.get(p.id, 0.0):.0%} of resamples"
            detail += "]"
        print(f"{rank:>2}. {p.text}{detail}  ({provenance(p)})")
    stability = meta.get("stability") or {}
    if stability.get("expected_overlap") is not None:
        print(
            f"Stability: over {stability['n_resamples']} bootstrap resamples of the training pairs, a resampled "
            f"constitution holds {stability['expected_overlap']:.0%} of these principles on average "
            f"(mean size {stability['mean_size']:.1f})."
        )


def provenance(principle) -> str:
    """Who wrote a principle and from what: "origin llm", "origin llm, hint form:words:less", "origin hint-fallback"."""
    hint = getattr(principle, "hint", "")
    return f"origin {principle.origin}" + (f", hint {hint}" if hint else "")


def _print_scores(evaluation, *, title: str = "Held-out agreement") -> None:
    from icai.stats import SMALL_N
    from icai.tables import render_table

    rows = [[s.name, f"{s.agreement:.3f}", f"{s.ci[0]:.3f}-{s.ci[1]:.3f}", s.ci_method, s.n] for s in evaluation.scores]
    print(f"{title} (95% CI: Wilson below {SMALL_N} pairs or when every pair scores the same, else bootstrap)")
    print(render_table(["annotator", "agreement", "95% CI", "CI method", "n"], rows, numeric=[1, 2, 4]))
    n = min((s.n for s in evaluation.scores), default=0)
    caveat = f"; only {n} pairs, so these intervals are rough" if n < SMALL_N else ""
    for name, (mean, ci) in evaluation.differences.items():
        print(f"  {name} - default: {mean:+.3f} ({ci[0]:+.3f} to {ci[1]:+.3f}, paired bootstrap{caveat})")
    _print_surface(evaluation.surface)
    if evaluation.explanations:
        print("What each line is:")
        for name, text in evaluation.explanations.items():
            print(f"  {name}: {text}")


def _print_surface(surface) -> None:
    from icai.surface import versus_sentence

    if surface is None:
        return
    how = (
        f"fitted on {surface.n_train} training pairs"
        if surface.fit == "train"
        else "cross-validated on these pairs (no training pairs given)"
    )
    cv = "" if surface.cv_accuracy is None or surface.fit != "train" else f", cross-validated training accuracy {surface.cv_accuracy:.3f}"
    top = sorted(surface.coefficients.items(), key=lambda kv: -abs(kv[1]))[:3]
    weights = ", ".join(f"{name} {w:+.2f}" for name, w in top if abs(w) > 1e-9) or "all zero"
    print(f"  surface features: logistic regression on length and style counts, {how}{cv}; largest weights {weights}")
    if surface.constitution_minus_surface is not None:
        mean, (lo, hi) = surface.constitution_minus_surface
        print(f"  constitution - surface: {mean:+.3f} ({lo:+.3f} to {hi:+.3f}): {versus_sentence(mean, (lo, hi))}")


def _keep_columns(text: str, comparisons) -> list[str]:
    """annotate --keep-columns: the input fields copied into the CSV, each checked to exist."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return []
    known = {"prompt", "text_a", "text_b"} | {k for c in comparisons for k in c.metadata}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"--keep-columns names {', '.join(map(repr, unknown))}, not a field of the input; "
            f"choose from {', '.join(sorted(known))} (or none)"
        )
    return names


def _refuse_existing_file(path: str, args: argparse.Namespace) -> None:
    """--out of a file: a folder is refused, an existing file too unless --overwrite (before any model call)."""
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name to write")
    if target.exists() and not args.overwrite:
        raise UsageError(f"--out {path} exists; pass --overwrite to replace it, or choose another file")


def cmd_annotate(args: argparse.Namespace) -> int:
    """Predict preferences on pairs with or without labels; with labels, also their agreement with CIs."""
    import pandas as pd

    from icai.evaluate import labelled_agreement, predict
    from icai.export import constitution_file
    from icai.files import write_text_atomic
    from icai.io import load_comparisons_with_report
    from icai.types import Constitution
    from icai.vote import resolve_vote_mode

    _refuse_existing_file(args.out, args)
    comparisons, report = load_comparisons_with_report(args.data, **data_options(args), allow_unlabelled=True)
    keep = _keep_columns(args.keep_columns, comparisons)
    constitution = Constitution.load(constitution_file(args.constitution))
    if not constitution.principles:
        raise UsageError(f"{args.constitution}: the constitution is empty; there are no principles to annotate with")
    unlabelled = set(report.unlabelled_ids)
    labelled = [c.id not in unlabelled for c in comparisons]
    with _executor(args) as executor:
        llm = _make_llm(args, executor)
        mode = resolve_vote_mode(args.vote_mode, llm)
        predictions = predict(comparisons, llm, principles=constitution.principles, mode=mode, batch_size=args.batch_size)
    columns: dict[str, list[object]] = {"id": [p.comparison_id for p in predictions]}
    for name in keep:
        columns[name] = [getattr(c, name) if name in ("prompt", "text_a", "text_b") else c.metadata.get(name) for c in comparisons]
    columns.update({
        "predicted": [p.predicted for p in predictions],
        "confidence": [p.confidence for p in predictions],
        "confidence_kind": [p.confidence_kind for p in predictions],
    })
    for rank, _ in enumerate(constitution.principles, start=1):
        columns[f"vote_{rank}"] = [p.principle_picks[rank - 1] for p in predictions]
    columns["preferred"] = [c.preferred if has else "" for c, has in zip(comparisons, labelled, strict=True)]
    frame = pd.DataFrame(columns)
    target = write_text_atomic(args.out, frame.to_csv(index=False))
    kind = predictions[0].confidence_kind if predictions else "vote_share"
    n_labelled = sum(labelled)
    agree = labelled_agreement(predictions, comparisons, labelled=labelled) if n_labelled else None
    if args.json:
        _print_json({
            "out": str(target), "n_pairs": len(frame), "n_labelled": n_labelled, "confidence_kind": kind,
            "principles": [p.text for p in constitution.principles], "agreement": agree,
        })
        return 0
    how = (
        "|debiased log-odds| in nats" if kind == "logprob_margin" else "share of the two presentation orders that agree"
    )
    print(f"wrote {len(frame)} predictions to {target} (predicted a/b/neither, confidence: {how}; vote_N: principle N's pick)")
    for rank, principle in enumerate(constitution.principles, start=1):
        print(f"  vote_{rank}: {principle.text}")
    if agree is None:
        print("No pair has a label, so no agreement is reported.")
        return 0
    lo, hi = agree["ci"]
    print(
        f"Agreement with the labels of {agree['n']} labelled pairs: {agree['agreement']:.3f} "
        f"(95% {agree['ci_method'].capitalize()} CI {lo:.3f}-{hi:.3f}; a 'neither' prediction counts 0.5)"
        + (f"; {len(comparisons) - n_labelled} pairs without a label are predicted only" if n_labelled < len(comparisons) else "")
    )
    for rank, row in enumerate(agree["principles"], start=1):
        if row["agreement"] is None:
            print(f"  vote_{rank}: took no side on a labelled pair")
        else:
            print(
                f"  vote_{rank}: agreement {row['agreement']:.2f} (95% Wilson CI {row['ci'][0]:.2f}-{row['ci'][1]:.2f}) "
                f"on the {row['n_for'] + row['n_against']} labelled pairs it took a side on"
            )
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    """A message beside the results: on stdout, or on stderr under --json (stdout then holds only the JSON)."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)


def _print_json(data: object) -> None:
    import json

    print(json.dumps(data, indent=2, default=str))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from icai.embed import get_embedder
    from icai.evaluate import evaluate
    from icai.export import constitution_file
    from icai.io import load_comparisons
    from icai.pipeline import dataset_hash
    from icai.types import Constitution
    from icai.vote import resolve_vote_mode
    from icai.voter import held_out_judge, recorded_voter

    out = None
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {args.out} is a file; evaluate writes a folder (evaluation.json, pairs.csv)")
        clash = [n for n in EVALUATE_FILES if (out / n).exists()]
        if clash and not args.overwrite:
            raise UsageError(f"--out {args.out} already holds {', '.join(clash)}; pass --overwrite to replace them")
    path = constitution_file(args.constitution)
    constitution = Constitution.load(path)
    if not constitution.principles:
        raise UsageError(
            f"{args.constitution}: the constitution has no principles, so there is nothing to evaluate "
            "(the judge following it is the judge without one)"
        )
    comparisons = list(_targeted(args, load_comparisons(args.data, **data_options(args))).comparisons)
    meta = constitution.metadata
    data_hash = dataset_hash(comparisons)
    warnings = []
    if data_hash in (meta.get("train_hash"), meta.get("dataset_hash")):
        which = "training pairs" if data_hash == meta.get("train_hash") else "input (its training pairs included)"
        warnings.append(f"this is the run's {which}: not a held-out estimate; evaluate on pairs the run never saw.")
    else:
        overlap = _training_overlap(comparisons, path)
        if overlap:
            warnings.append(
                f"{overlap} of {len(comparisons)} pairs are training pairs of this run (comparisons.csv beside "
                "the constitution): the scores are not a held-out estimate."
            )
    options = run_config(args)
    recorded = meta.get("config")
    for w in warnings:
        _say(args, f"Warning: {w}")
    tested = meta.get("tested_principles")
    candidates = [str(row["text"]) for row in tested] if isinstance(tested, list) else []
    with _executor(args) as executor:
        llm = _make_llm(args, executor)
        mode = resolve_vote_mode(args.vote_mode, llm)  # the LLM judge's (--vote-mode embedding is refused above)
        # the "constitution" line follows the constitution's voter, as in the run: the vote mode the run recorded,
        # else the one --vote-mode resolves to for --model (icai.voter.recorded_voter)
        config = recorded_voter(
            options, llm.capabilities, recorded.get("vote_mode") if isinstance(recorded, dict) else None
        )
        # the embedder votes only for an embedding voter; "hash" stands in otherwise (it is never asked)
        embedder = get_embedder(config.embedder if config.vote_mode == "embedding" else "hash", executor=executor)
        if config.vote_mode == "embedding" and meta.get("embedder") not in (None, embedder.name):
            warnings.append(
                f"the run voted with the embedder {meta['embedder']}; the constitution's votes here come from "
                f"{embedder.name} (--embedder), so its line may differ from the run's."
            )
            _say(args, f"Warning: {warnings[-1]}")
        analysis = None
        if args.by is not None:
            from icai.analyses import evaluate_groups

            analysis = evaluate_groups(
                comparisons, list(constitution.principles), llm, by=args.by, bins=args.bins,
                mode=mode, seed=args.seed, extra={"target": args.target},
            )
        evaluation = evaluate(
            comparisons,
            llm,
            constitution_texts=constitution.texts,
            candidate_texts=candidates,
            seed=args.seed,
            mode=mode,
            random_omitted=f"{path} does not list its run's candidate principles (a constitution from an older icai)",
            # principles from constitution.json keep their origin, so style principles are still voted exactly
            **held_out_judge(
                comparisons, constitution.principles, config, llm=llm, embedder=embedder, pairs="these pairs"
            ),
        )
    result = {
        "data": str(args.data), "constitution": str(path), "n_pairs": len(comparisons), "warnings": warnings,
        **evaluation.to_dict(),
        "groups": analysis.to_dict() if analysis is not None else None,
        "usage": {"calls": llm.usage.calls, "cache_hits": llm.usage.cache_hits},
    }
    written = _write_evaluation(out, result, evaluation, comparisons) if out is not None else []
    if args.json:
        _print_json({**result, "written": [str(p) for p in written]})
        return 0
    _print_scores(evaluation, title="Agreement with the labels of these pairs")
    if analysis is not None:
        _print_groups(analysis)
    if written:
        print("\nWrote " + " and ".join(str(p) for p in written))
    return 0


EVALUATE_FILES = ("evaluation.json", "pairs.csv")
"""What evaluate --out DIR writes."""


def _write_evaluation(out, result, evaluation, comparisons) -> list:
    """evaluation.json and pairs.csv (each pair's label and every annotator's prediction) in the folder `out`."""
    import json

    import pandas as pd

    from icai.files import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"id": [c.id for c in comparisons], "preferred": [c.preferred for c in comparisons]})
    for name, picks in evaluation.predictions.items():
        frame[name] = [picks.get(c.id, "") for c in comparisons]
    return [
        write_text_atomic(out / "evaluation.json", json.dumps(result, indent=2, default=str) + "\n"),
        write_text_atomic(out / "pairs.csv", frame.to_csv(index=False)),
    ]


def _training_overlap(comparisons, constitution_path) -> int:
    """How many of `comparisons` are training pairs in the run directory holding the constitution (0 if unknown)."""
    from icai.errors import DataError
    from icai.store import RunStore

    try:
        run = RunStore.existing(constitution_path.parent)
        if not run.has("comparisons.csv"):
            return 0
        frame = run.read_csv("comparisons.csv", ("prompt", "text_a", "text_b", "split"))
    except DataError:
        return 0
    train = {
        (r.prompt, *sorted((r.text_a, r.text_b))) for r in frame.itertuples(index=False) if r.split == "train"
    }
    return sum((c.prompt, *sorted((c.text_a, c.text_b))) in train for c in comparisons)


def cmd_validate(args: argparse.Namespace) -> int:
    import json

    from icai.validate import validate_file

    if not 0 <= args.test_size < 1:
        raise UsageError(f"--test-size must lie in [0, 1); got {args.test_size}")
    result = validate_file(args.data, **data_options(args), test_size=args.test_size, seed=args.seed)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(result.summary())
        print(result.table())
        print(f"{len(result.errors)} errors, {len(result.warnings)} warnings")
    if result.errors:
        print(
            f"icai: error: {args.data}: " + ", ".join(f"{f.count} rows with {f.check}" for f in result.errors)
            + " (see the table); icai run refuses this file until they are fixed",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """(Re)write report.html of a finished run: a folder without a run, or a run in progress, is refused."""
    import time
    from pathlib import Path

    from icai.report import write_report
    from icai.store import RunStore

    path = Path(args.run_dir)
    if path.is_file() and path.name == "constitution.json":
        path = path.parent
    elif path.is_file():
        raise UsageError(f"{args.run_dir} is a file; give a run directory (the --out of icai run) or its constitution.json")
    if not path.is_dir():
        raise UsageError(f"{args.run_dir}: no such run directory")
    store = RunStore.existing(path)
    if args.wait < 0:
        raise UsageError(f"--wait must not be negative, not {args.wait}")
    deadline = time.monotonic() + args.wait
    while (holder := store.holder()) is not None and time.monotonic() < deadline:
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.01)))
    if holder is not None:
        raise UsageError(
            f"{path} is a run in progress (pid {holder}); it writes its report when it ends "
            f"(or pass --wait SECONDS to wait for it)"
        )
    if store.read_identity() is None or not store.has("constitution.json"):
        raise UsageError(
            f"{path} holds no finished icai run (no config.json and constitution.json); "
            "give the --out folder of an icai run or test; nothing was written"
        )
    report = write_report(path)
    if args.json:
        _print_json({"report": str(report)})
    else:
        print(report)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from icai.export import export, export_target

    text = export(args.constitution, args.export_format, args.out)
    if args.out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()  # a closed pipe (| head) is raised here, inside main's handler
    else:
        print(f"wrote {export_target(args.out, args.export_format)}")
    return 0


def _side_names(a: str, b: str) -> tuple[str, str]:
    from pathlib import Path

    names = (Path(a).stem or "A", Path(b).stem or "B")
    return names if names[0] != names[1] else ("A", "B")


def _run_data(data: str, out, args: argparse.Namespace, config, executor):
    """`icai run DATA --out out` with the compare command's run options; the run directory."""
    from icai.embed import get_embedder
    from icai.io import load_comparisons
    from icai.lifetime import run_to_directory

    comparisons = load_comparisons(data, **data_options(args))
    llm = _make_llm(args, executor)
    embedder = get_embedder(config.embedder, executor=executor)
    done = run_to_directory(out, comparisons, llm=llm, embedder=embedder, config=config)
    _say(args, f"{data}: run in {done.path}, {len(done.result.constitution)} principle(s), {llm.usage.calls} model calls")
    return done.path


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from icai.analyses import compare_runs
    from icai.compare import load_side
    from icai.compare_report import render_compare
    from icai.config import RunConfig
    from icai.cost import estimate_run
    from icai.embed import get_embedder
    from icai.io import load_comparisons
    from icai.llm import ResponseCache
    from icai.llm.registry import capabilities_for
    from icai.store import CompareStore

    if not 0 < args.min_similarity <= 1:
        raise UsageError(f"--min-similarity must lie in (0, 1], not {args.min_similarity}")
    inputs = [Path(args.a), Path(args.b)]
    are_runs = [p.is_dir() and (p / "constitution.json").is_file() for p in inputs]
    for p, is_run in zip(inputs, are_runs, strict=True):
        if p.is_dir() and not is_run:
            raise UsageError(f"{p} is a folder but not a finished icai run (no constitution.json)")
    if any(are_runs) and not all(are_runs):
        raise UsageError("compare two run directories or two data files, not one of each")
    names = _side_names(args.a, args.b)
    store = CompareStore(args.out)
    with _executor(args) as executor:
        if all(are_runs):
            run_dirs = inputs
        else:
            if args.model is None:
                args.model = RunConfig.model
            if args.embedder is None:
                args.embedder = RunConfig.embedder
            config = run_config(args)
            needed = {}
            for data in inputs:
                estimate = estimate_run(
                    load_comparisons(data, **data_options(args)), config,
                    capabilities=capabilities_for(config.model, base_url=args.base_url), base_url=_base_url(args),
                    price=_price(args),
                )
                _say(args, f"{data}: a run needs about {estimate.calls} model calls")
                needed[str(data)] = estimate.calls
            _say(args, "Then each constitution is tested on the other dataset's pairs (counted once the runs are done).")
            if args.dry_run:
                _say(args, "Dry run: no model calls were made.")
                if args.json:
                    _print_json({"dry_run": True, "run_calls": needed})
                return 0
            if not args.yes:
                raise UsageError("comparing two datasets runs icai on both first; pass --yes to make those calls")
            run_dirs = [_run_data(str(d), store.path / "runs" / n, args, config, executor) for d, n in zip(inputs, names, strict=True)]
        side_a, side_b = load_side(run_dirs[0], name=names[0]), load_side(run_dirs[1], name=names[1])
        if args.model is None:
            if side_a.model != side_b.model:
                raise UsageError(
                    f"the runs used different models ({side_a.model}, {side_b.model}); name the one to cross-test with --model"
                )
            args.model = side_a.model
        llm = _make_llm(args, executor)
        embedder = get_embedder(args.embedder or side_a.embedder or RunConfig.embedder, executor=executor)
        llm.cache = ResponseCache(store.cache_path)

        def confirm(plan, calls: int) -> bool:
            _say(
                args,
                f"Cross test: {plan.n_needed} new (principle, pair) votes, at most {calls} model calls with {llm.model}; "
                f"{plan.n_reused} votes reused from the runs or an earlier compare."
            )
            if args.dry_run:
                _say(args, "Dry run: no model calls were made.")
                if args.json:
                    _print_json({"dry_run": True, "new_votes": plan.n_needed, "reused_votes": plan.n_reused, "max_calls": calls})
                return False
            if plan.n_needed and not args.yes:
                if sys.stdin.isatty():
                    return input("Make these calls? [y/N] ").strip().lower() in ("y", "yes")
                raise UsageError("the comparison needs new model calls; pass --yes to make them (or --dry-run to count them)")
            return True

        try:
            result = compare_runs(
                side_a, side_b, llm=llm, embedder=embedder, store=store, confirm=confirm,
                min_similarity=args.min_similarity, seed=args.seed,
            )
        finally:
            llm.cache.close()
    if result is None:
        return 0
    page = store.save_compare_report(render_compare(result.to_dict()))
    if args.json:
        _print_json({**result.to_dict(), "written": [str(store.path / "compare.json"), str(page)],
                     "usage": {"calls": llm.usage.calls, "cache_hits": llm.usage.cache_hits}})
        return 0
    print()
    print(result.table())
    for line in result.summary():
        print(f"  {line}")
    print(f"\n{llm.usage.calls} model calls ({llm.usage.cache_hits} from cache). Wrote {store.path / 'compare.json'} and {page}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    """icai label: label-free principles and votes once (resumable, budgets as in run), then the terminal labeller."""
    import dataclasses as dc

    from icai.cost import estimate_run
    from icai.embed import get_embedder
    from icai.io import load_comparisons_with_report
    from icai.label_terminal import key_reader, label_loop, terminal_width
    from icai.labelling import LabelSession
    from icai.lifetime import run_directory
    from icai.llm.registry import capabilities_for
    from icai.pipeline import labelling_config, prepare_labelling

    if args.patience < 1:
        raise UsageError(f"--patience must be at least 1, not {args.patience}")
    if not 0 <= args.random_share <= 1:
        raise UsageError(f"--random-share must lie in [0, 1], not {args.random_share}")
    pairs, report = load_comparisons_with_report(args.data, **data_options(args), allow_unlabelled=True)
    if not pairs:
        raise UsageError(f"{args.data}: no pairs to label")
    n_given = len(pairs) - len(report.unlabelled_ids)
    if n_given:
        print(f"Note: {n_given} of {len(pairs)} pairs carry a label in {args.data}; icai label asks for yours and ignores it.")
    config = labelling_config(run_config(args))
    capabilities = capabilities_for(config.model, base_url=args.base_url)
    estimate = estimate_run(pairs, dc.replace(config, propose_style="standard"), capabilities=capabilities)
    if args.dry_run:
        print(estimate.table())
        print("Dry run: no model calls were made. Labelling itself makes none.")
        return 0
    with _executor(args) as executor:
        llm = _make_llm(args, executor)
        embedder = get_embedder(args.embedder, executor=executor)
        unlabelled = [c.with_preferred("a") for c in pairs]  # the run's dataset is the pairs without their labels
        # the run directory's lifetime as for icai run: refused, locked, cached and logged in one place
        with run_directory(
            args.out, comparisons=unlabelled, config=config, llm=llm, embedder=embedder, overwrite=args.overwrite
        ) as store:
            prepare_labelling(pairs, llm=llm, embedder=embedder, config=config, store=store)
            before = llm.usage.as_dict()
            print(
                f"Principles and votes ready: {before['calls']} model calls ({before['cache_hits']} from cache). "
                "Labelling makes no more."
            )
            session = LabelSession(store.path, who=args.who, random_share=args.random_share, patience=args.patience, store=store)

            def write(text: str) -> None:
                sys.stdout.write(text)
                sys.stdout.flush()

            with key_reader(sys.stdin) as read_key:
                ended = label_loop(session, read_key=read_key, write=write, width=terminal_width(sys.stdout))
            during = llm.usage.as_dict()["calls"] - before["calls"]
            print(
                f"{'Input ended; ' if ended == 'eof' else ''}{len(session.records)} answers in {store.path / 'labels.json'}; "
                f"labelled pairs in {store.path / 'labelled.csv'} (icai run reads it). Model calls while labelling: {during}."
            )
    return 0


APP_INSTALL_HINT = "icai app needs starlette and uvicorn, which are not installed; install with: pip install 'icai[app]'"


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the workbench (icai.app) over a run directory until interrupted."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError(APP_INSTALL_HINT) from None
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must lie in 0-65535, not {args.port}")
    from icai.app import Workbench
    from icai.app.hosts import host_policy
    from icai.app.server import serve
    from icai.errors import DataError
    from icai.llm import get_llm
    from icai.store import RunStore

    try:
        policy = host_policy(args.host, args.allow_hosts)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    if args.allow_hosts and not policy.exposed:
        print(f"icai app: --allow-host is ignored: --host {args.host} keeps the app on this machine", file=sys.stderr)
    if RunStore.existing(args.run_dir).is_labelling():
        from icai.labelling import LabelSession

        labeller = LabelSession(args.run_dir)  # no model: labelling only counts the votes made before

        def label_ready(url: str) -> None:
            print(f"icai app: label the pairs of {labeller.store.path} at {url}label; Ctrl-C stops", flush=True)

        try:
            serve(
                None, host=args.host, port=args.port, allow_hosts=policy.extra if policy.exposed else (),
                on_ready=label_ready, labeller=labeller,
            )
        finally:
            labeller.close()
        return 0
    identity = RunStore.existing(args.run_dir).read_identity() or {}
    model = args.model or (identity.get("config") or {}).get("model")
    if not model:
        raise UsageError(f"{args.run_dir} names no model; pass --model")

    def make_llm():
        return get_llm(
            model, base_url=args.base_url, concurrency=args.concurrency, timeout=args.timeout,
            max_attempts=args.max_attempts, progress=False,
        )

    workbench = Workbench(args.run_dir, llm_factory=make_llm, model_name=model)

    def ready(url: str) -> None:
        print(f"icai app: {workbench.store.path} at {url} (model {model}); Ctrl-C stops", flush=True)
        warning = policy.warning(int(url.rstrip("/").rsplit(":", 1)[1]))
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        workbench.warm_up()

    try:
        serve(
            workbench,
            host=args.host,
            port=args.port,
            allow_hosts=policy.extra if policy.exposed else (),
            on_ready=ready,
        )
    finally:
        workbench.close()
    return 0


COMMANDS = {
    "run": cmd_run,
    "test": cmd_test,
    "annotate": cmd_annotate,
    "evaluate": cmd_evaluate,
    "validate": cmd_validate,
    "compare": cmd_compare,
    "report": cmd_report,
    "export": cmd_export,
    "app": cmd_app,
    "label": cmd_label,
}

if __name__ == "__main__":
    sys.exit(main())
