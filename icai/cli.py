"""Command line: argument parsing and printing only; the work happens in icai.pipeline and friends."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin, get_type_hints

from icai._version import __version__

EXIT_USAGE = 2
EXIT_LLM = 1

log = logging.getLogger("icai")


class UsageError(ValueError):
    """An option value that cannot work; reported in one line with exit code 2."""


GROUP_TITLES = {
    "models": "models and randomness",
    "propose": "stage 1, propose: principles from each pair",
    "cluster": "stage 2, cluster: candidates kept",
    "vote": "stage 3, vote: which principles agree with the labels",
    "select": "stage 4, select: the constitution",
    "evaluate": "stage 5, evaluate: held-out checks",
}


def _config_fields() -> dict[str, dataclasses.Field[Any]]:
    from icai.pipeline import RunConfig

    return {f.name: f for f in dataclasses.fields(RunConfig)}


def config_flag(name: str) -> str | None:
    """The `icai run` flag of a RunConfig field (None when the field has none)."""
    flag = _config_fields()[name].metadata["flag"]
    return None if flag is None else flag or "--" + name.replace("_", "-")


def config_dest(name: str) -> str:
    """The argparse attribute that holds a RunConfig field's value."""
    return str(_config_fields()[name].metadata["dest"] or name)


def _add_config_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, name: str) -> None:
    """One RunConfig field as an option: flag, type or choices, default and help all come from the field."""
    from icai.pipeline import RunConfig

    f = _config_fields()[name]
    flag = config_flag(name)
    if flag is None:
        return
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
    p.add_argument(flag, help=help_text, **kwargs)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """Every RunConfig field with a flag, in one argument group per stage."""
    from icai.pipeline import STAGES

    groups = {g: p.add_argument_group(GROUP_TITLES[g]) for g in STAGES}
    for name, f in _config_fields().items():
        _add_config_option(groups[f.metadata["group"]], name)


def _add_model_options(p: argparse.ArgumentParser, *, with_config: bool = True) -> None:
    """The model and executor options; with_config adds --model and --vote-mode too (icai run adds them by stage)."""
    if with_config:
        _add_config_option(p, "model")
    p.add_argument("--base-url", help="OpenAI-compatible server URL (vLLM, llama.cpp, Ollama); also OPENAI_BASE_URL")
    p.add_argument("--concurrency", type=int, default=4, help="parallel API calls (default 4)")
    p.add_argument("--max-calls", type=int, help="stop before making more than this many model calls")
    p.add_argument("--max-cost", type=float, help="stop before the model calls could cost more than this many USD")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per model call (default 60)")
    p.add_argument("--max-attempts", type=int, default=6, help="tries per model call before giving up (default 6)")
    p.add_argument("--format", dest="data_format", default="auto", help="input format (default: detect)")
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where model calls and embeddings run: this process (default) or a Ray cluster (pip install 'icai[ray]')",
    )
    p.add_argument("--ray-address", help="Ray cluster to join: auto, or ray://host:10001 (default: start a local one)")
    p.add_argument("--ray-workers", type=int, help="Ray actors per model (default: one per GPU for local models, else per CPU)")
    p.add_argument("--shard-size", type=int, default=256, help="model requests per unit of work sent to an executor (default 256)")
    if with_config:
        _add_config_option(p, "vote_mode")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icai", description="Inverse Constitutional AI: principles that explain preferences.")
    parser.add_argument("--version", action="version", version=f"icai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="learn a constitution from preference data")
    r.add_argument("data")
    r.add_argument("--out", required=True, help="run directory (an existing one is resumed; a new or empty folder starts one)")
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out when it was made from another dataset (its files are removed)",
    )
    r.add_argument("--dry-run", action="store_true", help="print the estimated calls, tokens and cost per stage; call nothing")
    _add_model_options(r, with_config=False)
    _add_config_options(r)

    a = sub.add_parser("annotate", help="predict preferences with a constitution")
    a.add_argument("data")
    a.add_argument("--constitution", required=True)
    a.add_argument("--out", required=True, help="CSV of predictions")
    _add_model_options(a)

    e = sub.add_parser("evaluate", help="score a constitution against labelled pairs, with baselines")
    e.add_argument("data")
    e.add_argument("--constitution", required=True)
    _add_config_option(e, "seed")
    _add_model_options(e)

    v = sub.add_parser("validate", help="load a dataset and report counts and problems")
    v.add_argument("data")
    v.add_argument("--format", dest="data_format", default="auto")

    rep = sub.add_parser("report", help="(re)write report.html for a run directory")
    rep.add_argument("run_dir")

    from icai.export import FORMATS as EXPORT_FORMATS

    x = sub.add_parser("export", help="export a constitution for other tools")
    x.add_argument("constitution")
    x.add_argument("--format", dest="export_format", required=True, choices=EXPORT_FORMATS)
    x.add_argument("--out", help="file to write (default: print)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from icai.llm.base import ConfigError, LLMError
    from icai.llm.client import BudgetExceeded
    from icai.types import DataError

    try:
        _check_options(args)
        return int(COMMANDS[args.command](args) or 0)
    except (DataError, ConfigError, BudgetExceeded, UsageError) as exc:
        print(f"icai: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LLMError as exc:
        resume = "; completed calls are cached, rerun the same command to resume" if args.command == "run" else ""
        print(f"icai: model error: {exc}{resume}", file=sys.stderr)
        return EXIT_LLM
    except KeyboardInterrupt:
        print("icai: interrupted; completed calls are cached, rerun the same command to resume", file=sys.stderr)
        return 130


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


def run_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The RunConfig of `icai run`'s options; a value RunConfig refuses is reported under its flag."""
    from icai.pipeline import OptionError, RunConfig

    try:
        given = {name: getattr(args, config_dest(name)) for name in _config_fields() if config_flag(name) is not None}
        return RunConfig(**given)
    except OptionError as exc:
        raise UsageError(f"{config_flag(exc.option) or exc.option} {exc.reason}") from None


@contextlib.contextmanager
def _executor(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The executor of --executor, closed (Ray actors released) when the command ends."""
    from icai.ray_executor import make_executor

    executor = make_executor(args.executor, address=args.ray_address, workers=args.ray_workers)
    try:
        yield executor
    finally:
        executor.close()


def _make_llm(args: argparse.Namespace, executor):  # type: ignore[no-untyped-def]
    from icai.llm import get_llm

    return get_llm(
        args.model,
        base_url=args.base_url,
        executor=executor,
        shard_size=args.shard_size,
        concurrency=args.concurrency,
        max_calls=args.max_calls,
        max_cost=args.max_cost,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from icai.cost import estimate_run
    from icai.embed import get_embedder
    from icai.io import load_comparisons
    from icai.llm import ResponseCache
    from icai.llm.registry import capabilities_for
    from icai.pipeline import dataset_hash, recorded_config, run
    from icai.progress import RunProgress, estimate_wall_time
    from icai.report import write_report
    from icai.store import RunStore

    config = run_config(args)
    comparisons = load_comparisons(args.data, format=args.data_format)
    capabilities = capabilities_for(config.model, base_url=args.base_url)
    estimate = estimate_run(comparisons, config, capabilities=capabilities)
    wall = estimate_wall_time(estimate, capabilities)
    if args.dry_run:
        print(estimate.table())
        if wall is not None:
            print(wall.line())
        print("Dry run: no model calls were made.")
        return 0
    if args.max_calls is not None and estimate.calls > args.max_calls:
        log.warning("the run needs about %d calls; it will stop after --max-calls %d", estimate.calls, args.max_calls)
    cost = estimate.cost()
    if args.max_cost is not None and cost is not None and cost > args.max_cost:
        log.warning("the run may cost about $%.4f; it will stop before --max-cost $%g", cost, args.max_cost)

    # Executor, model and embedder are checked before the run directory is made, so a typo leaves no files behind.
    with _executor(args) as executor:
        llm = _make_llm(args, executor)
        llm.observer = RunProgress(estimate, prior=wall)  # stages done / total and an ETA, in the log
        embedder = get_embedder(args.embedder, executor=executor)
        store = RunStore(args.out)
        # before the cache and log are opened: refuses another run's folder (or a locked one), takes the lock
        store.begin(
            dataset_hash=dataset_hash(comparisons),
            config=recorded_config(config, llm=llm, embedder=embedder).to_dict(),
            version=__version__,
            overwrite=args.overwrite,
        )
        llm.cache = ResponseCache(store.cache_path)
        handler = logging.FileHandler(store.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(handler)
        logging.getLogger("icai").setLevel(logging.INFO)
        try:
            result = run(comparisons, llm=llm, embedder=embedder, config=config, store=store)
            write_report(store.path)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
            llm.cache.close()
            store.release()
    for note in result.constitution.metadata.get("notes", []):
        print(f"Note: {note}")
    _print_constitution(result.constitution)
    if result.evaluation is not None:
        print()
        _print_scores(result.evaluation)
    u = result.usage
    spent = "" if llm.cost_usd is None else f", ${llm.cost_usd:.4f}"
    print(
        f"\n{u['calls']} model calls ({u['cache_hits']} from cache), "
        f"{u['input_tokens']} input + {u['output_tokens']} output tokens{spent}. Run directory: {store.path}"
    )
    meta = result.constitution.metadata
    if meta.get("n_invalid_votes") or meta.get("n_invalid_picks"):
        print(
            f"{meta['n_invalid_votes']} of {meta['n_votes']} votes invalid, {meta['n_invalid_picks']} unreadable "
            "answers in all (see the raw column of votes.csv)"
        )
    return 0


def _print_constitution(constitution) -> None:  # type: ignore[no-untyped-def]
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
                f"  [{s.verdict or 'unrated'}{q}; agreement {s.agreement:.2f} ({lo:.2f}-{hi:.2f}), "
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


def provenance(principle) -> str:  # type: ignore[no-untyped-def]
    """Who wrote a principle and from what: "origin llm", "origin llm, hint form:words:less", "origin hint-fallback"."""
    hint = getattr(principle, "hint", "")
    return f"origin {principle.origin}" + (f", hint {hint}" if hint else "")


def _print_scores(evaluation) -> None:  # type: ignore[no-untyped-def]
    print("Held-out agreement (95% bootstrap CI)")
    for s in evaluation.scores:
        print(f"  {s.name:<32} {s.agreement:.3f}  ({s.ci[0]:.3f}-{s.ci[1]:.3f})  n={s.n}")
    for name, (mean, ci) in evaluation.differences.items():
        print(f"  {name} - default: {mean:+.3f} ({ci[0]:+.3f} to {ci[1]:+.3f})")
    surface = evaluation.surface
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
        print(
            f"  constitution - surface: {mean:+.3f} ({lo:+.3f} to {hi:+.3f}): the constitution explains "
            f"{abs(100 * mean):.1f} points {'more' if mean >= 0 else 'fewer'} than surface features"
        )


def cmd_annotate(args: argparse.Namespace) -> int:
    import pandas as pd

    from icai.evaluate import agreement_scores, judge
    from icai.io import load_comparisons
    from icai.types import Constitution, write_text_atomic
    from icai.vote import resolve_vote_mode

    comparisons = load_comparisons(args.data, format=args.data_format)
    constitution = Constitution.load(args.constitution)
    with _executor(args) as executor:
        llm = _make_llm(args, executor)
        mode = resolve_vote_mode(args.vote_mode, llm)
        judgements = judge(comparisons, llm, principles=constitution.texts, desc="annotate", mode=mode)
    frame = pd.DataFrame(
        {
            "id": [c.id for c in comparisons],
            "predicted": [j.predicted for j in judgements],
            "preferred": [c.preferred for c in comparisons],
        }
    )
    write_text_atomic(args.out, frame.to_csv(index=False))
    print(f"wrote {len(frame)} predictions to {args.out}; agreement with labels {agreement_scores(judgements, comparisons).mean():.3f}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from icai.evaluate import evaluate
    from icai.io import load_comparisons
    from icai.types import Constitution
    from icai.vote import resolve_vote_mode

    comparisons = load_comparisons(args.data, format=args.data_format)
    constitution = Constitution.load(args.constitution)
    with _executor(args) as executor:
        llm = _make_llm(args, executor)
        evaluation = evaluate(
            comparisons,
            llm,
            constitution_texts=constitution.texts,
            candidate_texts=constitution.texts,
            seed=args.seed,
            mode=resolve_vote_mode(args.vote_mode, llm),
        )
    _print_scores(evaluation)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from icai.io import load_comparisons_with_report

    comparisons, report = load_comparisons_with_report(args.data, format=args.data_format)
    n_a = sum(c.preferred == "a" for c in comparisons)
    print(
        f"{args.data}: format {report.format}, {report.n_rows} rows, {report.n_loaded} usable comparisons "
        f"({n_a} prefer a, {len(comparisons) - n_a} prefer b); dropped {report.n_dropped_ties} ties "
        f"and {report.n_dropped_missing} without a preference"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from icai.report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from icai.export import export

    text = export(args.constitution, args.export_format, args.out)
    if args.out is None:
        print(text)
    else:
        print(f"wrote {args.out}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "annotate": cmd_annotate,
    "evaluate": cmd_evaluate,
    "validate": cmd_validate,
    "report": cmd_report,
    "export": cmd_export,
}

if __name__ == "__main__":
    sys.exit(main())
