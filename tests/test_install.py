"""A light, honest install: no heavy stack needed to import icai or run the fakes, a one-line hint
for a missing extra, dependencies that match the imports, and an API embedder for API-only installs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from icai.config import RunConfig
from icai.embed import HashingEmbedder, get_embedder
from icai.io import load_comparisons
from icai.llm import LLMError, get_llm
from icai.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers", "safetensors", "gguf", "accelerate", "openai", "anthropic", "ray")

BLOCKER = f"""
import sys
BLOCKED = {HEAVY!r}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None
sys.meta_path.insert(0, Blocker())
"""


def python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where none of the heavy packages can be imported."""
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args], capture_output=True, text=True, timeout=300, cwd=cwd or ROOT
    )


def test_import_icai_and_a_fake_run_need_no_model_stack(orthogonal_csv: Path, tmp_path: Path) -> None:
    code = """
import sys
import icai
from icai.cli import main
rc = main(["run", sys.argv[1], "--out", sys.argv[2], "--model", "fake/keyword", "--embedder", "hash", "--test-size", "0.3"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("LOADED", loaded)
sys.exit(rc)
"""
    done = python(code, str(orthogonal_csv), str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout
    assert (tmp_path / "run" / "constitution.json").is_file() and (tmp_path / "run" / "report.html").is_file()


@pytest.mark.parametrize(
    ("call", "extra"),
    [
        ("get_llm('openai/gpt-4o-mini', base_url='http://127.0.0.1:9/v1')", "openai"),
        ("get_llm('anthropic/claude-3-5-haiku-latest')", "anthropic"),
        ("get_llm('local/smollm2')", "local"),
        ("get_embedder('minilm')", "local"),
        ("get_embedder('openai/text-embedding-3-small')", "openai"),
    ],
)
def test_a_missing_extra_is_one_sentence_with_the_install_command(call: str, extra: str) -> None:
    code = f"""
from icai.embed import get_embedder
from icai.llm import ConfigError, get_llm
try:
    {call}
except ConfigError as exc:
    print("ERROR", exc)
"""
    done = python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip()
    assert line.startswith("ERROR ") and "\n" not in line
    assert line.endswith(f"install with: pip install 'icai[{extra}]'")
    assert "not installed" in line


def test_the_cli_stops_with_the_hint_and_exit_code_2(orthogonal_csv: Path, tmp_path: Path) -> None:
    code = """
import sys
from icai.cli import main
sys.exit(main(["run", sys.argv[1], "--out", sys.argv[2], "--model", "anthropic/claude-3-5-haiku-latest", "--embedder", "hash"]))
"""
    done = python(code, str(orthogonal_csv), str(tmp_path / "run"))
    assert done.returncode == 2
    assert "pip install 'icai[anthropic]'" in done.stderr
    assert not (tmp_path / "run").exists()


def test_python_dash_m_icai_is_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "icai", "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout and "usage:" in done.stdout


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower()


def test_no_exact_pins_in_the_package_metadata_and_make_pins_torch() -> None:
    project = _pyproject()["project"]
    requirements = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert not [r for r in requirements if "==" in r]
    assert "torch" not in {_name(r) for r in project["dependencies"]}
    assert "torch>=2.6" in project["optional-dependencies"]["local"]
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().split()
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()


IMPORT_TO_DIST = {"sklearn": "scikit-learn", "yaml": "pyyaml", "sentence_transformers": "sentence-transformers"}


def _third_party_imports() -> set[str]:
    """Top-level names icai imports anywhere (also inside functions), other than itself and the standard library."""
    names: set[str] = set()
    for path in (ROOT / "icai").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    stdlib = set(sys.stdlib_module_names)
    return {n for n in names if n not in stdlib and n != "icai"}


def test_every_import_is_declared_and_every_dependency_is_imported() -> None:
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    runtime = set(project["dependencies"]) | {r for name, extra in extras.items() if name not in ("dev", "all") for r in extra}
    declared = {_name(r) for r in runtime}
    imported = {IMPORT_TO_DIST.get(n, n) for n in _third_party_imports()}
    # gguf and accelerate are used by transformers to load GGUF files (icai.llm.local checks that they are installed)
    assert imported - declared == set()
    assert declared - imported - {"gguf", "accelerate"} == set()


def test_py_typed_ships_as_package_data() -> None:
    assert (ROOT / "icai" / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["icai"]
    assert sysconfig.get_path("purelib")  # a sane interpreter for the subprocess tests above


class EmbeddingServer:
    """An OpenAI-compatible /v1/embeddings answering with the hashing embedder's vectors, in reversed order."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.fail = False
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                texts = body["input"]
                state.batches.append(texts)
                if state.fail:
                    status, reply = 400, {"error": {"message": "model not found", "type": "invalid_request_error"}}
                else:
                    vectors = HashingEmbedder().encode(texts) * 3.0  # not unit length: the client normalises
                    data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
                    status, reply = 200, {"object": "list", "data": data[::-1], "model": body["model"], "usage": {}}
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def embedding_server() -> Iterator[EmbeddingServer]:
    state = EmbeddingServer()
    thread = threading.Thread(target=state.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.server.shutdown()
        state.server.server_close()
        thread.join(timeout=5)


def test_an_api_embedder_clusters_like_the_same_vectors_computed_here(embedding_server: EmbeddingServer, orthogonal_csv: Path) -> None:
    embedder = get_embedder("openai/hash-embed", base_url=embedding_server.base_url)
    embedder.batch_size = 7  # type: ignore[attr-defined]
    texts = [f"Select the response that mentions word {i}." for i in range(20)]
    vectors = embedder.encode(texts)
    assert [len(b) for b in embedding_server.batches] == [7, 7, 6]
    np.testing.assert_allclose(vectors, HashingEmbedder().encode(texts), atol=1e-6)
    pairs = load_comparisons(orthogonal_csv)
    config = RunConfig(model="fake/keyword", embedder="openai/hash-embed")
    through_api = run(pairs, llm=get_llm("fake/keyword", progress=False), embedder=embedder, config=config)
    here = run(pairs, llm=get_llm("fake/keyword", progress=False), embedder=HashingEmbedder(), config=config)
    assert through_api.constitution.texts == here.constitution.texts


def test_an_api_embedder_failure_is_an_error_not_a_vector(embedding_server: EmbeddingServer) -> None:
    embedding_server.fail = True
    embedder = get_embedder("openai/missing", base_url=embedding_server.base_url)
    with pytest.raises(LLMError, match="openai/missing: embedding 2 texts failed"):
        embedder.encode(["a", "b"])
