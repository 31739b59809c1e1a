"""icai: recover a short, ranked constitution of principles that reconstructs pairwise preferences."""

from icai import datasets  # noqa: E402
from icai._version import __version__
from icai.annotated_pairs import AnnotatedPairs, annotated_pairs_stats, read_annotated_pairs  # noqa: E402
from icai.cluster import Clustering, cluster  # noqa: E402
from icai.config import RunConfig  # noqa: E402
from icai.embed import Embedder, HashingEmbedder, SentenceTransformerEmbedder, get_embedder  # noqa: E402
from icai.errors import DataError  # noqa: E402
from icai.io import load_comparisons  # noqa: E402
from icai.lifetime import DirectoryRun, GroupOptions, run_to_directory  # noqa: E402
from icai.llm import LLM, get_llm  # noqa: E402
from icai.llm.fake import FakeProvider  # noqa: E402
from icai.pipeline import RunResult, run  # noqa: E402
from icai.propose import propose  # noqa: E402
from icai.ray_executor import make_executor  # noqa: E402
from icai.select import select  # noqa: E402
from icai.store import RunStore  # noqa: E402
from icai.types import (  # noqa: E402
    Comparison,
    Constitution,
    Principle,
    PrincipleStats,
    Vote,
)
from icai.validate import validate_file  # noqa: E402
from icai.vote import vote  # noqa: E402

__all__ = [
    "LLM",
    "AnnotatedPairs",
    "Clustering",
    "Comparison",
    "Constitution",
    "DirectoryRun",
    "DataError",
    "Embedder",
    "FakeProvider",
    "GroupOptions",
    "HashingEmbedder",
    "Principle",
    "PrincipleStats",
    "RunConfig",
    "RunResult",
    "RunStore",
    "SentenceTransformerEmbedder",
    "Vote",
    "__version__",
    "annotated_pairs_stats",
    "cluster",
    "datasets",
    "get_embedder",
    "get_llm",
    "load_comparisons",
    "make_executor",
    "propose",
    "read_annotated_pairs",
    "run",
    "run_to_directory",
    "select",
    "validate_file",
    "vote",
]
