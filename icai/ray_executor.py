"""Shards on a Ray cluster, and `make_executor`, which picks an executor by name.

A module of its own, above the LLM layer and the embedders: its workers build them
(`ShardWorker`), while `icai.executor` (the protocol and the local executor) sits
below them. Nothing here imports Ray until a RayExecutor is made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from icai.errors import ConfigError
from icai.executor import RAY_INSTALL_HINT, Executor, LocalExecutor, RunHere, WorkerRecipe

log = logging.getLogger(__name__)


class ShardWorker:
    """What a Ray actor runs: builds its model or embedder once, then computes shards.

    It never writes a cache or a file; the driver commits what `run` returns.
    """

    def __init__(self, recipe: WorkerRecipe) -> None:
        self.recipe = recipe
        options = dict(recipe.options)
        if recipe.kind == "llm":
            from icai.llm import get_llm

            self.llm: Any = get_llm(recipe.spec, cache_path=None, progress=False, **options)
            if self.llm.capabilities.in_process:
                from icai.llm.base import InProcessProvider

                cast(InProcessProvider, self.llm.provider).load()  # once per worker, before any shard
        else:
            from icai.embed import get_embedder

            self.embedder: Any = get_embedder(recipe.spec, **options)

    def run(self, shard: Sequence[Any]) -> tuple[list[Any], int]:
        """(one result per item, or one array for an embedding shard; retries made)."""
        if self.recipe.kind == "embed":
            return [self.embedder.encode(list(shard))], 0
        results: list[Any] = [None] * len(shard)
        before = self.llm.usage.retries
        self.llm.run_shard(shard, results.__setitem__)
        return results, self.llm.usage.retries - before

    def pid(self) -> int:
        import os

        return os.getpid()


def actor_options(recipe: WorkerRecipe, resources: dict[str, float]) -> dict[str, Any]:
    """Ray actor options: one GPU per actor when the recipe wants one and the cluster has one.

    Actors are restarted and their calls retried when a worker process dies; the
    driver only commits results that came back, so a retry cannot double-count.
    """
    gpu = recipe.gpu and resources.get("GPU", 0) >= 1
    return {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_restarts": 4, "max_task_retries": 4}


def default_workers(recipe: WorkerRecipe, resources: dict[str, float]) -> int:
    """One actor per GPU for GPU work, else one per CPU (at most 8)."""
    if recipe.gpu and resources.get("GPU", 0) >= 1:
        return int(resources["GPU"])
    return max(1, min(int(resources.get("CPU", 1)), 8))


class RayExecutor:
    """Shards on a Ray cluster: `address` None starts a local one, "auto" joins a running
    one, "ray://host:10001" connects a client. `workers`: actors per recipe (default
    `default_workers`). Extra `init_options` go to `ray.init`.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None, **init_options: Any) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with: {RAY_INSTALL_HINT}") from exc
        self._ray: Any = ray  # typed Any: Ray's stubs do not follow remote classes
        self.workers = workers
        self._started = False
        if not ray.is_initialized():
            init_options.setdefault("include_dashboard", False)
            init_options.setdefault("log_to_driver", True)
            ray.init(address=address, **init_options)
            self._started = True
        self._recipe: WorkerRecipe | None = None
        self._actors: list[Any] = []
        self.pids: list[int] = []
        """Process ids of the current pool's actors, as started."""

    def __repr__(self) -> str:
        return f"RayExecutor(workers={self.workers})"

    def actors(self, recipe: WorkerRecipe) -> list[Any]:
        """The actor pool for a recipe, each actor loading its model once.

        One pool lives at a time: stages alternate between the model and the
        embedder, and a pool that holds every GPU (or CPU) would leave none for the
        other. A new recipe replaces the pool; the same recipe reuses it.
        """
        if recipe != self._recipe:
            self._kill_pool()
            resources = {k: float(v) for k, v in self._ray.cluster_resources().items()}
            options = actor_options(recipe, resources)
            capacity = max(1, int(resources.get("GPU" if options["num_gpus"] else "CPU", 1)))
            n = self.workers or default_workers(recipe, resources)
            if n > capacity:
                log.warning("ray: %d workers asked for, the cluster has room for %d; using %d", n, capacity, capacity)
                n = capacity
            remote = self._ray.remote(**options)(ShardWorker)
            log.info("ray: %d %s workers for %s (%s)", n, recipe.kind, recipe.spec, options)
            actors = [remote.remote(recipe) for _ in range(n)]
            try:
                # Waits for every actor to be built, so a model that cannot load fails here, once.
                self.pids = self._get([a.pid.remote() for a in actors])
            except BaseException:
                for actor in actors:
                    self._ray.kill(actor)
                raise
            self._recipe, self._actors = recipe, actors
        return self._actors

    def _get(self, refs: Any) -> Any:
        """ray.get, raising what the worker raised (an LLMError stays an LLMError)."""
        ray = self._ray
        try:
            return ray.get(refs)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def _kill_pool(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._recipe, self._actors, self.pids = None, [], []

    def run(
        self,
        recipe: WorkerRecipe | None,
        shards: Iterable[Sequence[Any]],
        run_here: RunHere,
        on_result: Callable[[int, int, Any], None],
    ) -> int:
        if recipe is None:
            raise ConfigError("--executor ray needs a model built by icai.llm.get_llm (it has a recipe to rebuild it on workers)")
        ray = self._ray
        free = list(self.actors(recipe))
        in_flight: dict[Any, tuple[int, Any]] = {}
        retries = 0
        source = enumerate(shards)
        exhausted = False
        try:
            while True:
                while free and not exhausted:
                    nxt = next(source, None)
                    if nxt is None:
                        exhausted = True
                        break
                    s, shard = nxt
                    actor = free.pop()
                    in_flight[actor.run.remote(list(shard))] = (s, actor)
                if not in_flight:
                    return retries
                done, _ = ray.wait(list(in_flight), num_returns=1)
                s, actor = in_flight.pop(done[0])
                results, shard_retries = self._get(done[0])
                retries += shard_retries
                for k, result in enumerate(results):
                    on_result(s, k, result)
                free.append(actor)
        finally:
            for ref in in_flight:
                try:
                    ray.cancel(ref)
                except Exception:  # an actor task that cannot be cancelled finishes and is ignored
                    pass

    def close(self) -> None:
        self._kill_pool()
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(name: str = "local", *, address: str | None = None, workers: int | None = None) -> Executor:
    """"local" or "ray" (a ConfigError naming the extra to install when Ray is missing)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, workers=workers)
    raise ConfigError(f"unknown executor {name!r}; use local or ray")
