"""Which errors of the official clients mean the endpoint itself failed (its breaker counts
them), as opposed to an answer about one request (a 4xx, a rate limit on one key), which must
never open a circuit for everybody else."""

from __future__ import annotations

__all__ = ["openai_endpoint_failed"]


def openai_endpoint_failed(exc: BaseException) -> bool:
    """For the ``openai`` client (chat, translation and moderation endpoints): a 5xx, a refused
    or dropped connection, or a timeout."""
    import openai  # the client is imported where it is used, not by every breaker user

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # APITimeoutError is one
