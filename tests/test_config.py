"""RunConfig is the one home of each option: checked when made, the source of `icai run`'s flags, and of the
stage fingerprints (a changed option or prompt re-runs exactly the stages it affects)."""

import dataclasses
import json
import re

import pytest

import icai
import icai.prompts
from icai.cli import build_parser, config_dest, config_flag, main
from icai.config import STAGES, OptionError, RunConfig
from icai.embed import HashingEmbedder
from icai.llm import LLM
from icai.llm.fake import fake_provider
from icai.pipeline import run
from icai.store import RunStore

FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}



def _run_args(argv: list[str]):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(["run", "data.csv", "--out", "x", *argv])


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"n_clusters": 0}, "n_clusters", "must be positive, not 0"),
        ({"vote_batch_size": -3}, "vote_batch_size", "must be positive"),
        ({"test_size": 1.0}, "test_size", "must lie in [0, 1), not 1.0"),
        ({"confidence": 1.0}, "confidence", "must lie in (0, 1)"),
        ({"alpha": 0.0}, "alpha", "must lie in (0, 1)"),
        ({"bootstrap": -1}, "bootstrap", "must not be negative"),
        ({"selection": "best"}, "selection", "must be one of greedy, strength, not 'best'"),
        ({"vote_mode": "guess"}, "vote_mode", "must be one of auto, generate, logprob, embedding"),
        ({"max_principles": 2.5}, "max_principles", "must be an integer"),
        ({"adaptive": "yes"}, "adaptive", "must be true or false"),
        ({"propose_sample": 0}, "propose_sample", "must be positive"),
    ],
)
def test_run_config_refuses_bad_values_naming_the_option(options, field, words):
    with pytest.raises(OptionError) as err:
        RunConfig(**options)
    assert err.value.option == field
    assert str(err.value).startswith(field) and words in str(err.value)


def test_good_values_pass_and_none_is_allowed_only_where_typed():
    RunConfig(test_size=0.0, propose_sample=None, bootstrap=0, min_gain=0.0, duplicate_agreement=1.0)
    with pytest.raises(OptionError, match="n_clusters must be set"):
        RunConfig(n_clusters=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be positive, not 0"),
        (["--confidence", "1.5"], "--confidence must lie in (0, 1), not 1.5"),
        (["--max-principles", "-1"], "--max-principles must be positive"),
    ],
)
def test_cli_reports_a_refused_value_under_its_flag(argv, message, orthogonal_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(orthogonal_csv), "--out", str(out), "--model", "fake/keyword", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"icai: error: {message}" or (err.startswith(f"icai: error: {message}") and "\n" not in err)
    assert not out.exists()


def test_every_flagged_field_is_an_icai_run_option_with_the_field_default():
    args = _run_args([])
    for name, f in FIELDS.items():
        if config_flag(name) is None:
            assert not hasattr(args, config_dest(name)), name
        else:
            assert getattr(args, config_dest(name)) == f.default, name


def test_flag_names_and_their_fields_are_kept():
    args = _run_args(["--batch-size", "7", "--one-order", "--select", "strength", "--adaptive", "--propose-sample", "9"])
    assert (args.batch_size, args.one_order, args.selection, args.adaptive) == (7, True, "strength", True)
    assert args.propose_sample == 9
    assert _run_args(["--no-adaptive"]).adaptive is False
    assert isinstance(_run_args(["--test-size", "0.3"]).test_size, float)


def test_run_help_has_one_group_per_stage():
    sub = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    titles = [g.title for g in sub._action_groups]
    assert all(any(t and t.split(",")[-1].strip().startswith(stage) or (t and stage in t) for t in titles) for stage in STAGES)
    text = sub.format_help()
    assert "--batch-size VOTE_BATCH_SIZE" not in text and "--batch-size BATCH_SIZE" in text
    assert "(default 40)" in text


def test_every_field_but_the_model_names_affects_a_stage():
    """A new field must say which stages it changes, or resuming would silently ignore it."""
    config = RunConfig(adaptive=True, propose_style="small")
    for name, f in FIELDS.items():
        if name in ("model", "embedder"):  # fingerprints use the model and embedder that ran
            assert f.metadata["affects"] == {}
            continue
        assert any(name in config.group(stage) for stage in ("propose", "cluster", "vote", "select", "evaluate")), name


def test_every_prompt_constant_is_claimed_by_a_stage():
    constants = re.findall(r"^([A-Z][A-Z_0-9]*)\s*(?::[^=\n]*)?=", open(icai.prompts.__file__).read(), re.M)
    claimed = {n for names in icai.prompts.STAGE_PROMPTS.values() for n in names}
    # BLOCK_TAG is the pattern that neutralises block tags inside texts, not a prompt text of its own
    assert set(constants) - {"STAGE_PROMPTS", "BLOCK_TAG"} <= claimed
    assert all(hasattr(icai.prompts, n) for n in claimed)


def test_python_api_records_the_model_and_embedder_that_ran(orthogonal, tmp_path):
    store = RunStore(tmp_path / "run")
    result = icai.run(
        orthogonal,
        llm=icai.get_llm("fake/keyword", progress=False),
        embedder=icai.get_embedder("hash"),
        config=RunConfig(),
        store=store,
    )
    for config in (result.constitution.metadata["config"], json.loads((store.path / "config.json").read_text())["config"]):
        assert (config["model"], config["embedder"]) == ("fake/keyword", HashingEmbedder().name)
    saved = json.loads((store.path / "constitution.json").read_text())
    assert (saved["config"]["model"], saved["config"]["embedder"]) == ("fake/keyword", HashingEmbedder().name)


def _provider_run(comparisons, store, **options):  # type: ignore[no-untyped-def]
    provider = fake_provider("keyword")
    result = run(
        comparisons,
        llm=LLM(provider, progress=False),
        embedder=HashingEmbedder(),
        config=RunConfig(model="fake/keyword", **options),
        store=store,
    )
    return provider, result


def _is_propose(request) -> bool:  # type: ignore[no-untyped-def]
    return "[PREFERRED]" in request.prompt_text


def test_a_changed_propose_prompt_reruns_proposals(orthogonal, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    _provider_run(orthogonal, store)
    provider, _ = _provider_run(orthogonal, store)
    assert provider.requests == []
    monkeypatch.setattr(icai.prompts, "PROPOSE_SYSTEM", icai.prompts.PROPOSE_SYSTEM + " Be brief.")
    provider, result = _provider_run(orthogonal, store)
    assert any(_is_propose(r) for r in provider.requests)
    assert result.constitution.principles


def test_a_changed_vote_prompt_reruns_votes_and_keeps_proposals(orthogonal, tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    _provider_run(orthogonal, store)
    monkeypatch.setattr(icai.prompts, "VOTE_SYSTEM", icai.prompts.VOTE_SYSTEM + " Be careful.")
    provider, _ = _provider_run(orthogonal, store)
    assert provider.requests and not any(_is_propose(r) for r in provider.requests)


def test_a_changed_max_principles_reruns_only_selection(orthogonal, tmp_path):
    store = RunStore(tmp_path / "run")
    _, first = _provider_run(orthogonal, store)
    marks = json.loads((store.path / "checkpoints.json").read_text())
    provider, second = _provider_run(orthogonal, store, max_principles=1)
    assert provider.requests == []  # propose, cluster and vote came from their checkpoints
    assert json.loads((store.path / "checkpoints.json").read_text()) == marks
    assert len(first.constitution.principles) > 1 and len(second.constitution.principles) == 1
    assert json.loads((store.path / "constitution.json").read_text())["config"]["max_principles"] == 1


def test_adaptive_voting_depends_on_max_principles_and_seed():
    plain, adaptive = RunConfig(), RunConfig(adaptive=True)
    assert "max_principles" not in plain.group("vote") and "seed" not in plain.group("vote")
    assert {"max_principles", "seed", "confidence", "min_pairs"} <= set(adaptive.group("vote"))
