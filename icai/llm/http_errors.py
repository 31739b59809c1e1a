"""HTTP error handling shared by the API providers: retryable or final, and never leaking a key."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from icai.llm.base import LLMError, TransientError


def status_error(model: str, status: int, headers: Mapping[str, str], message: str, secret: str) -> LLMError:
    """Map an HTTP error status to a retryable or a final error (529 is Anthropic's "overloaded")."""
    text = f"{model}: HTTP {status}: {redact(message, secret)}"
    if status in (408, 409, 429) or status >= 500:
        return TransientError(text, retry_after=retry_after_seconds(headers))
    return LLMError(text)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from retry-after-ms or Retry-After (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def redact(message: str, secret: str) -> str:
    """`message` with `secret` replaced by ***; secrets under 4 characters are left alone."""
    return message.replace(secret, "***") if len(secret) >= 4 else message
