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


__all__ = ["BudgetExceeded", "ConfigError", "DataError", "LLMError", "TransientError"]
