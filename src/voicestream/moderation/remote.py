"""An OpenAI-compatible moderation endpoint (``POST /v1/moderations``) through the official
``openai`` client and the endpoint's circuit breaker.

Only the endpoint's own failures (no connection, a timeout, a 5xx, a 429) count towards
opening the circuit; a 4xx says our request or key is wrong, which retrying elsewhere will not
mend, and must not take moderation down for everybody. Any failure still reaches the caller,
whose policy decides whether the text passes unchecked (fail open) or is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import openai

from ..resilience.circuit_breakers import breaker, endpoint_name

__all__ = ["RemoteModerator", "RemoteVerdict"]

_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RemoteVerdict:
    flagged: bool
    scores: dict[str, float]  # category -> 0..1, as the endpoint names them


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code == 429
    return isinstance(exc, openai.APIConnectionError)  # timeouts included


class RemoteModerator:
    def __init__(self, base_url: str, api_key: str | None, model: str) -> None:
        self.model = model
        self.breaker_name = endpoint_name("moderation", base_url)
        # No retries inside the client: the breaker counts each failure, and a caller waiting
        # for its first audio must not sit through the client's backoff.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "unused",
            max_retries=0,
            timeout=_TIMEOUT_S,
        )

    async def check(self, text: str) -> RemoteVerdict:
        """Raises the client's error (``openai.OpenAIError``) or ``CircuitOpen``."""
        response = await breaker(self.breaker_name).call(
            lambda: self._client.moderations.create(model=self.model, input=text),
            trips=_is_outage,
        )
        flagged = False
        scores: dict[str, float] = {}
        for result in response.results:
            flagged = flagged or bool(result.flagged)
            raw = result.to_dict().get("category_scores")
            for category, score in (raw if isinstance(raw, dict) else {}).items():
                if isinstance(score, int | float):
                    scores[category] = max(scores.get(category, 0.0), float(score))
        return RemoteVerdict(flagged, scores)

    async def close(self) -> None:
        await self._client.close()
