"""Translations for a dub: from any OpenAI-compatible chat endpoint, or supplied by the caller
as ElevenLabs' dubbing CSV (``speaker,start_time,end_time,transcription,translation``).

The chat endpoint gets the segments a batch at a time as a JSON object of numbered lines and
must answer with the same numbers, so every reply maps back to its segment one to one; a reply
that does not (a line merged, dropped or renumbered) is an error, never a shifted dub.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from pydantic import BaseModel

from ..config import Settings
from ..errors import EngineError, ValidationFailed
from ..resilience.circuit_breakers import breaker, endpoint_name
from ..resilience.client_failures import openai_endpoint_failed
from .languages import language_name

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = [
    "ChatTranslator",
    "SuppliedLine",
    "Translator",
    "parse_supplied_csv",
    "translator_from_settings",
]

BATCH_LINES: Final = 40  # segments per request: a few thousand tokens either way
MAX_CSV_ROWS: Final = 20_000
_TIMEOUT_S: Final = 120.0
_CSV_COLUMNS: Final = ("speaker", "start_time", "end_time", "transcription", "translation")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class Translator(Protocol):
    async def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """``texts`` in language ``source`` said in ``target``, one for one."""
        ...


def _prompt(source: str, target: str) -> str:
    return (
        f"You translate the lines of a video's dialogue from {language_name(source)} "
        f"({source}) to {language_name(target)} ({target}) for dubbing. The user sends a JSON "
        'object of numbered lines, {"1": "...", "2": "..."}. Answer with only a JSON object '
        "with exactly the same keys, each holding its line's translation: one line per key, "
        "never merged or split, about as long to speak as the original."
    )


class ChatTranslator:
    """Translation through ``<base_url>/chat/completions`` (the official ``openai`` client)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        batch_lines: int = BATCH_LINES,
        timeout_s: float = _TIMEOUT_S,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self._api_key = api_key
        self._batch = max(1, batch_lines)
        self._timeout_s = timeout_s

    def _client(self) -> AsyncOpenAI:
        import openai

        # Local endpoints want no key, but the SDK insists on one; never the process's own
        # OPENAI_API_KEY, which may belong to someone else's account.
        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key or "unused",
            timeout=self._timeout_s,
            max_retries=1,
        )
        client.platform_headers()  # reads /etc/os-release once: here, off the loop
        return client

    async def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """Raises EngineError (502) when the endpoint fails or answers lines that do not map
        back one to one."""
        out = ["" for _ in texts]
        wanted = [i for i, text in enumerate(texts) if text.strip()]
        if not wanted:
            return out
        client = await asyncio.to_thread(self._client)
        try:
            for first in range(0, len(wanted), self._batch):
                batch = wanted[first : first + self._batch]
                lines = await self._batch_call(client, [texts[i] for i in batch], source, target)
                for index, line in zip(batch, lines, strict=True):
                    out[index] = line
        finally:
            await client.close()
        return out

    async def _batch_call(
        self, client: AsyncOpenAI, texts: list[str], source: str, target: str
    ) -> list[str]:
        import openai

        numbered = {str(n): text for n, text in enumerate(texts, start=1)}
        try:
            completion = await breaker(endpoint_name("translation", self.base_url)).call(
                lambda: client.chat.completions.create(
                    model=self.model,
                    temperature=0,
                    messages=[
                        {"role": "system", "content": _prompt(source, target)},
                        {"role": "user", "content": json.dumps(numbered, ensure_ascii=False)},
                    ],
                ),
                trips=openai_endpoint_failed,
            )
        except openai.APIStatusError as exc:
            status = exc.status_code
            raise EngineError(
                f"the translation endpoint answered {status}: {exc.message[:300]}",
                retryable=status in (408, 409, 429) or status >= 500,
                details={"status": status},
            ) from None
        except openai.OpenAIError as exc:
            raise EngineError(
                f"the translation endpoint failed: {str(exc)[:300]}", retryable=True
            ) from None
        content = completion.choices[0].message.content if completion.choices else None
        return _mapped_reply(content or "", len(texts))


def _mapped_reply(content: str, count: int) -> list[str]:
    """The reply's lines in order, or EngineError when they are not exactly ``1..count``."""
    fenced = _FENCE.match(content)
    body = fenced.group(1) if fenced else content.strip()
    try:
        reply: Any = json.loads(body)
    except ValueError:
        reply = None
    expected = [str(n) for n in range(1, count + 1)]
    if (
        not isinstance(reply, dict)
        or sorted(reply, key=lambda k: (len(k), k)) != expected
        or not all(isinstance(v, str) for v in reply.values())
    ):
        raise EngineError(
            f"the translation endpoint's reply does not map back to the {count} numbered "
            f"lines sent (expected a JSON object with keys 1..{count}): {content[:200]!r}",
            retryable=True,
            details={"lines": count},
        )
    return [reply[key].strip() for key in expected]


def translator_from_settings(settings: Settings) -> ChatTranslator | None:
    """The server's translator: the translation endpoint when set, else the agents' LLM
    endpoint, else None (only same-language or supplied-translation dubs then)."""
    if settings.translation_base_url and settings.translation_model:
        return ChatTranslator(
            settings.translation_base_url,
            settings.translation_model,
            settings.translation_api_key,
        )
    if settings.llm_base_url and settings.llm_model:
        return ChatTranslator(settings.llm_base_url, settings.llm_model, settings.llm_api_key)
    return None


# --- supplied translations --------------------------------------------------------------------


class SuppliedLine(BaseModel):
    """One row of a dubbing CSV: who says what, when, and its translation."""

    speaker: str
    start: float
    end: float
    text: str
    translation: str


_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?$")


def _time(value: str, column: str, row: int) -> float:
    raw = value.strip()
    seconds: float | None = None
    clock = _CLOCK.match(raw)
    if clock:
        hours, minutes, secs, fraction = clock.groups()
        if int(minutes) < 60 and int(secs) < 60:
            seconds = int(hours or 0) * 3600 + int(minutes) * 60 + int(secs)
            seconds += int(fraction.ljust(3, "0")) / 1000 if fraction else 0.0
    elif re.fullmatch(r"\d+(?:\.\d+)?", raw):
        seconds = float(raw)
    if seconds is None:
        raise ValidationFailed(
            f"row {row}: bad {column} {value!r}: give seconds (12.5) or HH:MM:SS.mmm",
            details={"row": row, "column": column},
        )
    return seconds


def parse_supplied_csv(data: bytes) -> list[SuppliedLine]:
    """ElevenLabs' dubbing CSV as lines. Rows count from 1 at the first row after the header.

    Raises:
        ValidationFailed: not UTF-8 text, a column missing, a bad time or an end not after its
            start (the message and ``details["row"]`` name the row), or no rows at all.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the CSV file is not UTF-8 text", details={"row": 0}) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [column for column in _CSV_COLUMNS if column not in header]
    if missing:
        raise ValidationFailed(
            f"the CSV header lacks {', '.join(missing)}: it needs {','.join(_CSV_COLUMNS)}",
            details={"row": 0, "missing": missing},
        )
    reader.fieldnames = header
    lines: list[SuppliedLine] = []
    try:
        for row_number, row in enumerate(reader, start=1):
            if row_number > MAX_CSV_ROWS:
                raise ValidationFailed(
                    f"the CSV has more than {MAX_CSV_ROWS} rows",
                    details={"row": row_number, "max_rows": MAX_CSV_ROWS},
                )
            lines.append(_line(row, row_number))
    except csv.Error as exc:
        raise ValidationFailed(
            f"row {reader.line_num}: the CSV cannot be read: {exc}",
            details={"row": reader.line_num},
        ) from None
    if not lines:
        raise ValidationFailed("row 1: the CSV has a header but no rows", details={"row": 1})
    return lines


def _line(row: dict[str | Any, str | Any], number: int) -> SuppliedLine:
    cells = {column: row.get(column) for column in _CSV_COLUMNS}
    absent = [column for column, value in cells.items() if value is None]
    if absent:
        raise ValidationFailed(
            f"row {number}: missing {', '.join(absent)}",
            details={"row": number, "missing": absent},
        )
    values = {column: str(value) for column, value in cells.items()}
    start = _time(values["start_time"], "start_time", number)
    end = _time(values["end_time"], "end_time", number)
    if end <= start:
        raise ValidationFailed(
            f"row {number}: end_time {values['end_time']!r} is not after start_time "
            f"{values['start_time']!r}",
            details={"row": number},
        )
    text, translation = values["transcription"].strip(), values["translation"].strip()
    if not text and not translation:
        raise ValidationFailed(
            f"row {number}: both transcription and translation are empty",
            details={"row": number},
        )
    speaker = values["speaker"].strip() or "speaker_0"
    return SuppliedLine(speaker=speaker, start=start, end=end, text=text, translation=translation)
