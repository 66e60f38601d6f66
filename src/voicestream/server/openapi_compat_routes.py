"""What the OpenAPI document says about the ElevenLabs- and OpenAI-compatible routes.

Documented more loosely than the native API: their bodies follow the providers' own
references, and their errors come in the providers' shapes (``CompatError``). Merged into
``openapi_routes.OPERATIONS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..rest.openapi import (
    BINARY,
    MULTIPART,
    OBJECT_BODY,
    STRING,
    Op,
    Resp,
    audio,
    websocket,
)
from ..transports.elevenlabs_history import DownloadBody
from .openapi_studio_routes import STUDIO_OPERATIONS

__all__ = ["COMPAT_OPERATIONS"]

_EL: Final = "ElevenLabs"
_OAI: Final = "OpenAI"
_EL_TTS_WS: Final = (
    "ElevenLabs' `stream-input` protocol: text chunks in, base64 audio and alignment out. "
    "The key may come in the `xi-api-key` header, the query or the first message."
)

COMPAT_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    # --- OpenAI-compatible ---------------------------------------------------------------
    ("POST", "/openai/v1/audio/speech"): Op(
        "OpenAI: create speech",
        _OAI,
        compat=True,
        body_media=OBJECT_BODY,
        responses={200: audio()},
    ),
    ("POST", "/openai/v1/audio/transcriptions"): Op(
        "OpenAI: transcribe audio", _OAI, compat=True, body_media=MULTIPART
    ),
    ("POST", "/openai/v1/audio/translations"): Op(
        "OpenAI: translate audio into English", _OAI, compat=True, body_media=MULTIPART
    ),
    ("GET", "/openai/v1/models"): Op("OpenAI: list models", _OAI, compat=True),
    ("GET", "/openai/v1/models/{model}"): Op("OpenAI: a model", _OAI, compat=True),
    ("GET", "/openai/v1/realtime"): websocket(
        "OpenAI Realtime", _OAI, "OpenAI's Realtime protocol (JSON events).", compat=True
    ),
    # --- ElevenLabs-compatible -----------------------------------------------------------
    ("POST", "/elevenlabs/v1/text-to-speech/{voice_id}"): Op(
        "ElevenLabs: text to speech",
        _EL,
        compat=True,
        body_media=OBJECT_BODY,
        params={"output_format": STRING},
        responses={200: audio()},
    ),
    ("POST", "/elevenlabs/v1/text-to-speech/{voice_id}/stream"): Op(
        "ElevenLabs: text to speech, streamed",
        _EL,
        compat=True,
        body_media=OBJECT_BODY,
        params={"output_format": STRING},
        responses={200: audio()},
    ),
    ("POST", "/elevenlabs/v1/text-to-speech/{voice_id}/with-timestamps"): Op(
        "ElevenLabs: text to speech with character timestamps",
        _EL,
        compat=True,
        body_media=OBJECT_BODY,
        params={"output_format": STRING},
    ),
    ("POST", "/elevenlabs/v1/text-to-speech/{voice_id}/stream/with-timestamps"): Op(
        "ElevenLabs: text to speech with timestamps, streamed as JSON lines",
        _EL,
        compat=True,
        body_media=OBJECT_BODY,
        params={"output_format": STRING},
        responses={200: Resp("JSON lines.", media="application/x-ndjson", schema=STRING)},
    ),
    ("GET", "/elevenlabs/v1/text-to-speech/{voice_id}/stream-input"): websocket(
        "ElevenLabs: text to speech over a WebSocket", _EL, _EL_TTS_WS, auth="optional", compat=True
    ),
    ("GET", "/elevenlabs/v1/text-to-speech/{voice_id}/multi-stream-input"): websocket(
        "ElevenLabs: several contexts of text to speech over one WebSocket",
        _EL,
        _EL_TTS_WS,
        auth="optional",
        compat=True,
    ),
    ("POST", "/elevenlabs/v1/speech-to-text"): Op(
        "ElevenLabs: speech to text (Scribe)", _EL, compat=True, body_media=MULTIPART
    ),
    ("GET", "/elevenlabs/v1/speech-to-text/realtime"): websocket(
        "ElevenLabs: realtime speech to text",
        _EL,
        "ElevenLabs' realtime Scribe protocol (base64 audio chunks in, transcripts out).",
        auth="optional",
        compat=True,
    ),
    ("GET", "/elevenlabs/v1/voices"): Op("ElevenLabs: list voices", _EL, compat=True),
    ("GET", "/elevenlabs/v2/voices"): Op("ElevenLabs: search voices", _EL, compat=True),
    ("GET", "/elevenlabs/v1/voices/settings/default"): Op(
        "ElevenLabs: default voice settings", _EL, compat=True
    ),
    ("GET", "/elevenlabs/v1/voices/{voice_id}"): Op("ElevenLabs: a voice", _EL, compat=True),
    ("GET", "/elevenlabs/v1/voices/{voice_id}/settings"): Op(
        "ElevenLabs: a voice's settings", _EL, compat=True
    ),
    ("GET", "/elevenlabs/v1/models"): Op(
        "ElevenLabs: list models",
        _EL,
        compat=True,
        responses={200: Resp("The models.", schema={"type": "array"})},
    ),
    ("GET", "/elevenlabs/v1/user"): Op("ElevenLabs: the user", _EL, compat=True),
    ("GET", "/elevenlabs/v1/user/subscription"): Op(
        "ElevenLabs: the subscription", _EL, compat=True
    ),
    ("GET", "/elevenlabs/v1/convai/conversation"): websocket(
        "ElevenLabs: an Agents conversation",
        _EL,
        "ElevenLabs' Agents protocol; public agents and signed URLs need no key.",
        auth="optional",
        compat=True,
    ),
    ("GET", "/elevenlabs/v1/convai/conversation/get-signed-url"): Op(
        "ElevenLabs: a signed URL for a conversation", _EL, compat=True
    ),
    ("GET", "/elevenlabs/v1/convai/conversation/get_signed_url"): Op(
        "ElevenLabs: a signed URL for a conversation (older spelling)", _EL, compat=True
    ),
    ("GET", "/elevenlabs/v1/history"): Op("ElevenLabs: generation history", _EL, compat=True),
    ("POST", "/elevenlabs/v1/history/download"): Op(
        "ElevenLabs: download history items (one audio file, or a zip)",
        _EL,
        compat=True,
        body=DownloadBody,
        responses={200: Resp("Audio or a zip.", media="application/octet-stream", schema=BINARY)},
    ),
    ("GET", "/elevenlabs/v1/history/{history_item_id}"): Op(
        "ElevenLabs: a history item", _EL, compat=True
    ),
    ("GET", "/elevenlabs/v1/history/{history_item_id}/audio"): Op(
        "ElevenLabs: a history item's audio",
        _EL,
        compat=True,
        responses={200: audio("The audio.")},
    ),
    ("DELETE", "/elevenlabs/v1/history/{history_item_id}"): Op(
        "ElevenLabs: delete a history item", _EL, compat=True
    ),
    ("POST", "/elevenlabs/v1/text-to-dialogue"): Op(
        "ElevenLabs: dialogue of several voices",
        _EL,
        compat=True,
        body_media=OBJECT_BODY,
        responses={200: audio()},
    ),
    ("POST", "/elevenlabs/v1/text-to-dialogue/stream"): Op(
        "ElevenLabs: dialogue, streamed",
        _EL,
        compat=True,
        body_media=OBJECT_BODY,
        responses={200: audio()},
    ),
    ("POST", "/elevenlabs/v1/text-to-dialogue/with-timestamps"): Op(
        "ElevenLabs: dialogue with timestamps", _EL, compat=True, body_media=OBJECT_BODY
    ),
    ("POST", "/elevenlabs/v1/text-to-dialogue/stream/with-timestamps"): Op(
        "ElevenLabs: dialogue with timestamps, streamed as JSON lines",
        _EL,
        compat=True,
        body_media=OBJECT_BODY,
        responses={200: Resp("JSON lines.", media="application/x-ndjson", schema=STRING)},
    ),
    **STUDIO_OPERATIONS,  # /elevenlabs/v1/studio/projects…
}
