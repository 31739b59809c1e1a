"""The package's exceptions, in a module that imports nothing else of icai, so any layer can raise them."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used; the message is one sentence naming file, row and column."""


class ConfigError(RuntimeError):
    """Something cannot be used as configured (unknown provider or option, missing key or package).

    Not an LLMError: a bad configuration is the user's to fix, not a failed model call.
    """


class LLMError(RuntimeError):
    """A model call failed for good (after retries, or not retryable)."""


class TransientError(LLMError):
    """A failure worth retrying: rate limit, 5xx, timeout, dropped connection."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceeded(LLMError):
    """The next call would exceed --max-calls or --max-cost; work done so far is kept in the cache."""




# Exit codes of the command line, one table for every command (README, "Exit codes").
EXIT_OK = 0
"""Success (also `validate` with warnings only)."""
EXIT_ERROR = 1
"""An unexpected error: a model call that failed for good, or a bug (one sentence; -v for the traceback)."""
EXIT_USAGE = 2
"""Bad input or option: the data, a flag's value, or a folder that cannot be used; nothing was paid for."""
EXIT_BUDGET = 3
"""--max-calls or --max-cost reached: completed calls are cached; rerun with a larger budget to resume."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT)."""
EXIT_CLOSED_PIPE = 141
"""The reader of stdout went away (128 + SIGPIPE), as a shell reports it."""

__all__ = ["BudgetExceeded", "ConfigError", "DataError", "LLMError", "TransientError"]
