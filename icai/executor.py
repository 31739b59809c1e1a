"""Where shards of model and embedding work run: the Executor protocol and the in-process executor.

The stages never see this module. `LLM.map` and `ShardedEmbedder.encode` cut their
uncached work into shards (whole pairs, via `cut_shards`) and hand them to an
Executor:

- `LocalExecutor` runs each shard here, one after another (threads inside a shard for
  API models; what icai did before executors existed);
- `RayExecutor` (`icai.ray_executor`) sends each shard to a pool of Ray actors, each
  of which builds its model or embedder once from a picklable `WorkerRecipe` (on a
  GPU when the cluster has one) and returns results only.

Either way the driver is the single writer of the response cache and the run
directory: a worker never touches them, so a Ray task retried after a worker died
cannot count a call twice, and resume works as in a local run. This module imports
nothing else of icai, so the LLM client and the embedders can use it; the Ray
executor, which builds models and embedders, lives above them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

DEFAULT_SHARD_SIZE = 256
"""Requests (or texts) per shard; a shard never splits one pair's requests."""

RAY_INSTALL_HINT = "pip install 'icai[ray]'"

OnResult = Callable[[int, Any], None]
"""on_result(item index within the shard, result)."""

RunHere = Callable[[Sequence[Any], OnResult], None]
"""Runs one shard in this process, reporting each item's result as soon as it is done."""


@dataclass(frozen=True)
class WorkerRecipe:
    """How a worker process builds the object that does the work; picklable, hashable.

    kind "llm": `icai.llm.get_llm(spec, **options)` without a cache; kind "embed":
    `icai.embed.get_embedder(spec, **options)`. `gpu`: the worker wants a GPU when
    the cluster has one (local models, sentence-transformers embedders).
    """

    kind: Literal["llm", "embed"]
    spec: str
    options: tuple[tuple[str, Any], ...] = ()
    gpu: bool = False


class Executor(Protocol):
    name: str

    def run(
        self,
        recipe: WorkerRecipe | None,
        shards: Iterable[Sequence[Any]],
        run_here: RunHere,
        on_result: Callable[[int, int, Any], None],
    ) -> int:
        """Run every shard; `on_result(shard index, item index, result)` is called in the
        calling thread (or, locally, from `run_here`'s threads) once per item.

        `shards` is read lazily, one shard as it is dispatched, so the caller can hold
        budgets per shard. Returns the retries made in remote workers (0 locally: local
        retries are counted where they happen). The first failure is raised.
        """
        ...

    def close(self) -> None: ...


def cut_shards(keys: Sequence[Hashable], size: int = DEFAULT_SHARD_SIZE) -> list[list[int]]:
    """Positions 0..len(keys)-1 cut into consecutive shards of about `size`.

    A shard closes at the first key change after it holds `size` items, so a run of
    equal keys (one pair's requests) is never split; a shard is larger than `size`
    only by the rest of that run.
    """
    if size < 1:
        raise ValueError("shard size must be at least 1")
    shards: list[list[int]] = []
    current: list[int] = []
    for i, key in enumerate(keys):
        if current and len(current) >= size and key != keys[i - 1]:
            shards.append(current)
            current = []
        current.append(i)
    if current:
        shards.append(current)
    return shards


class LocalExecutor:
    """Every shard in this process, in order."""

    name = "local"

    def run(
        self,
        recipe: WorkerRecipe | None,
        shards: Iterable[Sequence[Any]],
        run_here: RunHere,
        on_result: Callable[[int, int, Any], None],
    ) -> int:
        for s, shard in enumerate(shards):

            def report(k: int, result: Any, s: int = s) -> None:
                on_result(s, k, result)

            run_here(shard, report)
        return 0

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalExecutor()"
