"""ElevenLabs' text-to-dialogue under ``/elevenlabs``: several voices, one recording.

``POST /v1/text-to-dialogue[/stream]`` answers the audio bytes, ``/with-timestamps`` one JSON
object with the alignment and ``voice_segments``, ``/stream/with-timestamps`` one JSON line per
clause. Each input is spoken by its own voice, in order, with a short pause between turns; every
voice's audio is resampled to the output format's rate before one encoder makes the stream, so
voices of different engines (and rates) mix. Shapes live in ``protocols/elevenlabs_dialogue.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Final

from aiohttp import web

from ..engines.base import Voice
from ..engines.tts_stream import TTSStream
from ..errors import VoiceStreamError
from ..identity import quotas
from ..media.encode import StreamEncoder, make_encoder
from ..media.formats import AudioFormat, Codec, parse_format
from ..media.resample import Resampler
from ..protocols import elevenlabs as el
from ..protocols import elevenlabs_dialogue as dialogue
from ..rest.bodies import read_model
from ..rest.resources import MEDIA_EXECUTOR, METRICS, REGISTRY, SETTINGS, TTS_EXECUTORS, USAGE
from .context import principal_of
from .elevenlabs_http import enable_logging, stream_out
from .elevenlabs_rest import PREFIX
from .elevenlabs_sockets import Handler, elevenlabs_errors
from .tts_output import as_file

__all__ = ["add_elevenlabs_dialogue_routes"]

# The pause between one speaker's last word and the next speaker's first: a brisk but natural
# turn-taking gap (each engine's own trailing silence comes on top).
TURN_GAP_S: Final = 0.25


def add_elevenlabs_dialogue_routes(app: web.Application) -> None:
    """Mount ``/elevenlabs/v1/text-to-dialogue`` and its streamed and timestamped variants."""
    routes: list[tuple[str, Handler]] = [
        ("/v1/text-to-dialogue", dialogue_convert),
        ("/v1/text-to-dialogue/stream", dialogue_convert),
        ("/v1/text-to-dialogue/with-timestamps", dialogue_with_timestamps),
        ("/v1/text-to-dialogue/stream/with-timestamps", dialogue_stream_timestamps),
    ]
    for path, handler in routes:
        app.router.add_post(PREFIX + path, elevenlabs_errors(handler))


@dataclass(frozen=True, slots=True)
class _Turn:
    index: int
    voice: Voice
    text: str
    stream: TTSStream


@dataclass(frozen=True, slots=True)
class _Piece:
    """Encoded audio of one clause (a turn's first carries the pause before it), with the
    alignment of its text in dialogue time; ``turn`` is None for the encoder's final tail."""

    data: bytes
    timing: el.CharTiming | None
    turn: _Turn | None
    start: float  # where this piece's speech starts and ends in the dialogue, seconds
    end: float
    char_start: int  # index of the piece's first alignment character in the whole dialogue


@dataclass(frozen=True, slots=True)
class _Dialogue:
    body: dialogue.DialogueBody
    fmt: AudioFormat
    turns: tuple[_Turn, ...]


async def _start(request: web.Request) -> tuple[web.Application, _Dialogue, quotas.Charge]:
    """Validate everything (every voice included) and charge the characters before any audio
    is made."""
    rt = request.app
    fmt = parse_format(request.query.get("output_format", el.DEFAULT_OUTPUT_FORMAT))
    enable_logging(request)  # checked like the other routes'; dialogue keeps no history
    body = dialogue.check_dialogue_body(
        await read_model(request, dialogue.DialogueBody), max_text_chars=rt[SETTINGS].max_text_chars
    )
    voices = [rt[REGISTRY].voice(item.voice_id) for item in body.inputs]
    characters = sum(len(item.text) for item in body.inputs)
    charge = await quotas.charge(
        rt[USAGE], rt[SETTINGS], principal_of(request), "tts_characters", characters
    )
    turns = []
    for i, (item, (engine, voice)) in enumerate(zip(body.inputs, voices, strict=True)):
        stream = TTSStream(engine, voice, rt[TTS_EXECUTORS][engine.name])
        stream.push_text(item.text)
        stream.end_input()
        turns.append(_Turn(i, voice, item.text, stream))
    try:
        # Every turn meets the content policy before the first turn's audio goes out.
        for turn in turns:
            await turn.stream.screen_queued()
    except VoiceStreamError:
        await charge.refund(principal_of(request).workspace_id)
        raise
    return rt, _Dialogue(body, fmt, tuple(turns)), charge


def _convert(
    encoder: StreamEncoder, resampler: Resampler, pause: bytes, pcm: bytes, tail: bool
) -> bytes:
    """Resample a voice's PCM to the output rate and encode it (on the media executor)."""
    out = resampler.process(pcm)
    if tail:
        out += resampler.flush()
    return encoder.encode(pause + out)


async def _pieces(rt: web.Application, dlg: _Dialogue) -> AsyncIterator[_Piece]:
    """The dialogue's audio clause by clause, turn after turn, as soon as each is made."""
    fmt = dlg.fmt
    encoder = make_encoder(fmt, fmt.sample_rate)
    pause = b"\x00\x00" * round(TURN_GAP_S * fmt.sample_rate)
    clock = 0.0  # seconds of dialogue made so far
    chars = 0
    asked = time.monotonic()
    rt[METRICS].active_streams.labels("tts_elevenlabs").inc()
    try:
        for turn in dlg.turns:
            builder = el.AlignmentBuilder(turn.text)
            resampler: Resampler | None = None
            start = clock + (TURN_GAP_S if clock > 0 else 0.0)
            async for chunk in turn.stream:
                gap = b""
                if resampler is None:
                    resampler = Resampler(chunk.sample_rate, fmt.sample_rate)
                    gap = pause if start > 0 else b""
                convert = partial(_convert, encoder, resampler, gap, chunk.pcm, False)
                data = await rt[MEDIA_EXECUTOR].run(convert)
                if clock == 0.0:
                    rt[METRICS].time_to_first_audio.labels("http").observe(time.monotonic() - asked)
                rt[METRICS].audio_seconds.labels("synthesized").inc(chunk.duration)
                timing = builder.clause(
                    chunk.text,
                    chunk.text_offset,
                    chunk.audio_offset,
                    chunk.duration,
                    chunk.alignment,
                )
                at = start + chunk.audio_offset
                clock = at + chunk.duration
                yield _Piece(data, dialogue.shifted(timing, start), turn, at, clock, chars)
                chars += len(timing.characters)
            rest = builder.rest()  # text no clause covered (e.g. nothing speakable)
            tail = b""
            if resampler is not None:
                tail = await rt[MEDIA_EXECUTOR].run(
                    partial(_convert, encoder, resampler, b"", b"", True)
                )
            if tail or rest is not None:
                end = clock  # the end of the turn's audio (or of the last, if it had none)
                moved = dialogue.shifted(rest, end) if rest is not None else None
                yield _Piece(tail, moved, turn, end, end, chars)
                chars += len(rest.characters) if rest is not None else 0
        final = await rt[MEDIA_EXECUTOR].run(encoder.finish)
        if final:
            yield _Piece(final, None, None, clock, clock, chars)
    finally:
        rt[METRICS].active_streams.labels("tts_elevenlabs").dec()


def _segment(pieces: list[_Piece]) -> dialogue.VoiceSegment:
    """The voice segment of one turn's pieces (or of one piece, its characters from 0)."""
    turn = pieces[0].turn
    assert turn is not None
    chars = sum(len(p.timing.characters) for p in pieces if p.timing is not None)
    return dialogue.VoiceSegment(
        voice_id=turn.voice.id,
        start=pieces[0].start,
        end=pieces[-1].end,
        char_start=pieces[0].char_start,
        char_end=pieces[0].char_start + chars,
        input_index=turn.index,
    )


def _headers(dlg: _Dialogue) -> dict[str, str]:
    return {"X-Audio-Format": dlg.fmt.name}


async def dialogue_convert(request: web.Request) -> web.StreamResponse:
    """``/v1/text-to-dialogue[/stream]``: the audio bytes, streamed per clause.

    WAV from the non-streaming path comes whole, so its header has the real sizes; ``/stream``
    sends it as it is made, its header saying "until EOF" (as text-to-speech does).
    """
    rt, dlg, charge = await _start(request)
    whole_file = dlg.fmt.codec is Codec.WAV and not request.path.endswith("/stream")

    async def data() -> AsyncIterator[bytes]:
        audio = bytearray()
        async for piece in _pieces(rt, dlg):
            if whole_file:
                audio += piece.data
            else:
                yield piece.data
        if whole_file:
            yield as_file(dlg.fmt, bytes(audio))

    return await stream_out(request, dlg.fmt.content_type, data(), _headers(dlg), charge)


async def dialogue_with_timestamps(request: web.Request) -> web.StreamResponse:
    """``/with-timestamps``: all the audio, the whole text's alignment, one segment per turn."""
    rt, dlg, charge = await _start(request)
    audio = bytearray()
    timings: list[el.CharTiming] = []
    turns: dict[int, list[_Piece]] = {}
    async with charge.covering(principal_of(request).workspace_id):
        async for piece in _pieces(rt, dlg):
            audio += piece.data
            if piece.timing is not None:
                timings.append(piece.timing)
            if piece.turn is not None:
                turns.setdefault(piece.turn.index, []).append(piece)
    segments = [_segment(pieces) for pieces in turns.values()]
    audio_file = as_file(dlg.fmt, bytes(audio))  # a WAV with its real sizes
    result = dialogue.timestamps_json(audio_file, el.merge_timings(timings), segments)
    return web.json_response(result, headers=_headers(dlg))


async def dialogue_stream_timestamps(request: web.Request) -> web.StreamResponse:
    """``/stream/with-timestamps``: one JSON line per clause; times from the audio's start,
    the line's voice segment indexing the line's own characters."""
    rt, dlg, charge = await _start(request)

    async def lines() -> AsyncIterator[bytes]:
        async for piece in _pieces(rt, dlg):
            own = _Piece(piece.data, piece.timing, piece.turn, piece.start, piece.end, 0)
            segments = [_segment([own])] if piece.turn is not None else []
            body = dialogue.timestamps_json(piece.data, piece.timing, segments)
            yield json.dumps(body, separators=(",", ":")).encode() + b"\n"

    return await stream_out(request, "application/x-ndjson", lines(), _headers(dlg), charge)
