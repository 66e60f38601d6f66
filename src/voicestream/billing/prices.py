"""What work costs, in whole credits.

One credit is one character of synthesized speech, the unit everything else is priced in:

======================  =====================================================
TTS (request, stream,   1 credit per character of text
job ``tts``)
STT (request, stream,   1 credit per started second of audio
job ``transcription``)
conversation            2 credits per started second (it transcribes and speaks)
dub (job ``dubbing``)   2 credits per started second of source, per language
======================  =====================================================

Seconds round up per posting (a 0.2 s transcription costs 1 credit), so a price is always a
whole, non-negative number of credits and the ledger holds integers only.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal
from typing import Final

from ..errors import ValidationFailed
from ..store.usage import UsageKind

__all__ = [
    "CREDITS_PER_UNIT",
    "DUBBING_CREDITS_PER_SECOND",
    "dubbing_credits",
    "transcription_credits",
    "tts_credits",
    "usage_credits",
]

CREDITS_PER_UNIT: Final[dict[UsageKind, int]] = {
    "tts_characters": 1,
    "stt_seconds": 1,
    "conversation_seconds": 2,
}
# A dub transcribes its source and speaks it again, like a conversation.
DUBBING_CREDITS_PER_SECOND: Final = 2


def usage_credits(kind: UsageKind, quantity: float | Decimal) -> int:
    """The credits ``quantity`` of ``kind`` (characters or seconds) costs."""
    if isinstance(quantity, float) and not math.isfinite(quantity):
        raise ValidationFailed(f"usage quantity must be finite, got {quantity!r}")
    amount = quantity if isinstance(quantity, Decimal) else Decimal(str(quantity))
    if amount < 0:
        raise ValidationFailed(f"usage quantity must be >= 0, got {quantity!r}")
    # Started units: a second begun is a second billed.
    units = int(amount.to_integral_value(rounding=ROUND_CEILING))
    return units * CREDITS_PER_UNIT[kind]


def tts_credits(characters: int) -> int:
    """A TTS job's or request's price for ``characters`` of text."""
    return usage_credits("tts_characters", characters)


def transcription_credits(seconds: float) -> int:
    """A transcription's price for ``seconds`` of audio."""
    return usage_credits("stt_seconds", seconds)


def dubbing_credits(seconds: float) -> int:
    """A dub's price for ``seconds`` of source media, for one target language."""
    return usage_credits("stt_seconds", seconds) * DUBBING_CREDITS_PER_SECOND
