"""Providers from outside icai: registered in code or found through the `icai.providers` entry points,
and run through `get_llm` by a whole pipeline; stages follow what a provider declares, not its name."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_server import keyword_logprobs

from icai.cli import main
from icai.config import RunConfig
from icai.embed import HashingEmbedder
from icai.llm import (
    ENTRY_POINT_GROUP,
    Capabilities,
    Completion,
    ConfigError,
    Request,
    capabilities_for,
    get_llm,
    register_provider,
)
from icai.llm.fake import keyword_responder
from icai.llm.registry import provider_names, unregister_provider
from icai.pipeline import run
from icai.types import Constitution

RULES = {"cat": re.compile(r"\bcat\b|feline|kitten"), "blue": re.compile(r"\bblue\b"), "lemon": re.compile(r"\blemon")}


def recovered(texts: list[str]) -> set[str]:
    return {rule for rule, pattern in RULES.items() if any(pattern.search(t.lower()) for t in texts)}


class SuiteProvider:
    """A provider defined here, not in icai: the keyword annotator, answering log-prob requests too."""

    capabilities = Capabilities(choice_logprobs=True, logprob_votes=True)

    def __init__(self, name: str, *, base_url: str | None = None, timeout: float = 60.0, **options: Any) -> None:
        self.model = f"suite/{name}"
        self.options = options
        self.requests: list[Request] = []

    def complete(self, request: Request) -> Completion:
        self.requests.append(request)
        if request.choices:
            logprobs = keyword_logprobs(request)
            return Completion(max(logprobs, key=logprobs.__getitem__), choice_logprobs=logprobs)
        return Completion(keyword_responder(request))


@pytest.fixture
def suite_registered() -> Iterator[None]:
    register_provider("suite", SuiteProvider)
    yield
    unregister_provider("suite")



def test_a_registered_provider_runs_a_whole_pipeline_through_get_llm(suite_registered: None, orthogonal: list[Any]) -> None:
    llm = get_llm("suite/keyword", progress=False)
    assert isinstance(llm.provider, SuiteProvider) and llm.model == "suite/keyword"
    # the keyword rules only: on this set the style principle "is shorter" takes the cat rule's place (test_style.py)
    result = run(orthogonal, llm=llm, embedder=HashingEmbedder(), config=RunConfig(model="suite/keyword", style_principles=False))
    assert recovered(result.constitution.texts) == {"cat", "blue", "lemon"}
    # its capabilities chose log-prob votes under vote_mode "auto"; the packaged fake, declaring none, votes with JSON
    assert any(r.choices for r in llm.provider.requests)
    fake = get_llm("fake/keyword", progress=False)
    reference = run(orthogonal, llm=fake, embedder=HashingEmbedder(), config=RunConfig(model="fake/keyword", style_principles=False))
    assert not any(r.choices for r in fake.provider.requests)  # type: ignore[attr-defined]
    assert result.constitution.texts == reference.constitution.texts
    # the static declaration, for estimates made before a provider is built
    assert capabilities_for("suite/anything") == SuiteProvider.capabilities


def test_capabilities_not_the_name_decide_the_stages(orthogonal: list[Any]) -> None:
    """A provider called "local/..." that declares nothing is treated as a plain API model, and the other way round."""

    class Plain(SuiteProvider):
        capabilities = Capabilities()

    class Small(SuiteProvider):
        capabilities = Capabilities(small_model=True, gpu=True)

    register_provider("local", Plain, replace=True)
    try:
        llm = get_llm("local/smollm2", progress=False)
        assert llm.recipe is not None and not llm.recipe.gpu  # a Ray worker would not ask for a GPU
        run(orthogonal[:8], llm=llm, embedder=HashingEmbedder(), config=RunConfig(n_clusters=4))
        prompts = [r.prompt_text for r in llm.provider.requests]
        assert not any(r.choices for r in llm.provider.requests)  # generated votes
        assert any("[PREFERRED]" in p for p in prompts)  # the standard proposal prompt, which shows both sides
    finally:
        from icai.llm.registry import _local, _local_capabilities

        register_provider("local", _local, capabilities=_local_capabilities, replace=True)
    register_provider("tiny", Small)
    try:
        llm = get_llm("tiny/model", progress=False)
        assert llm.recipe is not None and llm.recipe.gpu
        run(orthogonal[:8], llm=llm, embedder=HashingEmbedder(), config=RunConfig(model="tiny/model", n_clusters=4))
        assert not any("[PREFERRED]" in r.prompt_text for r in llm.provider.requests)  # the small-model style
    finally:
        unregister_provider("tiny")
    assert capabilities_for("local/smollm2").small_model


def test_a_taken_prefix_is_refused_unless_replaced(suite_registered: None) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_provider("suite", SuiteProvider)
    with pytest.raises(ConfigError, match="without '/'"):
        register_provider("a/b", SuiteProvider)


PLUGIN = textwrap.dedent(
    '''
    """An icai provider shipped in its own distribution; it declares no capabilities."""
    from icai.llm.base import Completion
    from icai.llm.fake import keyword_responder


    class PluginProvider:
        def __init__(self, name, *, base_url=None, timeout=60.0, **options):
            if name != "keyword":
                raise ValueError(f"no model {name}")
            self.model = f"suiteplugin/{name}"

        def complete(self, request):
            return Completion(keyword_responder(request))
    '''
)


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real distribution on sys.path: a module and a dist-info whose entry_points.txt names it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "icai_suite_plugin.py").write_text(PLUGIN)
    info = site / "icai_suite_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: icai-suite-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nsuiteplugin = icai_suite_plugin:PluginProvider\nbroken = icai_suite_plugin:Missing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in ("suiteplugin", "broken"):
        unregister_provider(name)
    sys.modules.pop("icai_suite_plugin", None)


def test_an_entry_point_provider_runs_icai_run(installed_plugin: Path, orthogonal_csv: Path, tmp_path: Path) -> None:
    assert "suiteplugin" in provider_names()
    assert capabilities_for("suiteplugin/keyword") == Capabilities()  # declares none: the safe defaults
    out = tmp_path / "run"
    args = ["run", str(orthogonal_csv), "--out", str(out), "--model", "suiteplugin/keyword", "--embedder", "hash", "--no-style-principles"]
    assert main([*args, "--dry-run"]) == 0
    assert not out.exists()
    assert main(args) == 0
    saved = Constitution.load(out / "constitution.json")
    assert recovered(saved.texts) == {"cat", "blue", "lemon"}
    assert json.loads((out / "constitution.json").read_text())["model"] == "suiteplugin/keyword"


def test_a_broken_or_unknown_provider_is_one_clear_error(installed_plugin: Path) -> None:
    with pytest.raises(ConfigError, match=r"provider 'broken' \(entry point 'icai_suite_plugin:Missing'\) could not be loaded"):
        get_llm("broken/x", progress=False)
    with pytest.raises(ConfigError, match=r"unknown model provider 'nosuch'; use one of openai, anthropic, local, fake.*suiteplugin"):
        get_llm("nosuch/x", progress=False)
