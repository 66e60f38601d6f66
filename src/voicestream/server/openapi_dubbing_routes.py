"""The OpenAPI entries of ``/v1/dubbing`` (rest/dubbing.py) and ElevenLabs' dubbing
(transports/elevenlabs_dubbing.py), merged into ``OPERATIONS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..dubbing.model import DubSegment
from ..rest.dub_actions import SegmentEdit
from ..rest.dubbing import (
    DubListQuery,
    DubModel,
    DubPageModel,
    DubStartedModel,
    RenderBody,
    SegmentsModel,
)
from ..rest.openapi import BINARY, MULTIPART, NO_CONTENT, OBJECT_BODY, STRING, Op, Resp, ok

__all__ = ["DUBBING_OPERATIONS"]

_TAG: Final = "dubbing"
_EL: Final = "ElevenLabs"
_MEDIA: Final = Resp("The dubbed media (mp4 for a video source).", media="video/mp4", schema=BINARY)
_SUBTITLES: Final = {"text/plain": STRING}
_CREATE: Final = (
    "Multipart form: `file` (or `file_id`), `csv_file`, `background_audio_file`, "
    "`foreground_audio_file`, `source_lang` (default auto), `target_lang` (a code or `a,b`), "
    "`num_speakers`, `start_time`, `end_time`, `drop_background_audio`, `name`. A refused "
    "request keeps no dub and no file."
)
_EL_DUB: Final = "/elevenlabs/v1/dubbing/{dub_id}"
_EL_RESOURCE: Final = "/elevenlabs/v1/dubbing/resource/{dub_id}"

DUBBING_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("POST", "/v1/dubbing"): Op(
        "Dub a video or recording into other languages (a dubbing job)",
        _TAG,
        description=_CREATE,
        body_media=MULTIPART,
        responses=ok(DubStartedModel, 202, "The dub, being dubbed."),
    ),
    ("GET", "/v1/dubbing"): Op(
        "The workspace's dubs, newest first", _TAG, query=DubListQuery, responses=ok(DubPageModel)
    ),
    ("GET", "/v1/dubbing/{dub_id}"): Op("A dub", _TAG, responses=ok(DubModel)),
    ("DELETE", "/v1/dubbing/{dub_id}"): Op(
        "Delete a dub with its files", _TAG, responses={204: NO_CONTENT}
    ),
    ("GET", "/v1/dubbing/{dub_id}/segments"): Op(
        "A dub's segments and speakers", _TAG, responses=ok(SegmentsModel)
    ),
    ("PATCH", "/v1/dubbing/{dub_id}/segments/{segment_id}"): Op(
        "Change a segment's text, translations or voices (the next render speaks it anew)",
        _TAG,
        body=SegmentEdit,
        responses=ok(DubSegment),
    ),
    ("POST", "/v1/dubbing/{dub_id}/render"): Op(
        "Render a dub again (a new dubbing job; unchanged segments are reused)",
        _TAG,
        body=RenderBody,
        responses=ok(DubStartedModel, 202, "The dub, being dubbed."),
    ),
    ("GET", "/v1/dubbing/{dub_id}/audio/{language}"): Op(
        "A language's dubbed media (`source`: the original)", _TAG, responses={200: _MEDIA}
    ),
    ("GET", "/v1/dubbing/{dub_id}/transcript/{language}"): Op(
        "A language's subtitles (srt, vtt) or transcript (json)",
        _TAG,
        params={"format": {"type": "string", "enum": ["srt", "vtt", "json"]}},
        responses={200: Resp("SRT, WebVTT or JSON.", media="text/plain", schema=STRING)},
    ),
    ("POST", "/v1/dubbing/{dub_id}/subtitles/{language}"): Op(
        "Import SRT or WebVTT as a language's translation, mapped to segments by time",
        _TAG,
        body_media=_SUBTITLES,
        responses=ok(DubModel),
    ),
    ("POST", "/elevenlabs/v1/dubbing"): Op(
        "ElevenLabs: dub a file", _EL, compat=True, description=_CREATE, body_media=MULTIPART
    ),
    ("GET", "/elevenlabs/v1/dubbing"): Op("ElevenLabs: the dubs", _EL, compat=True),
    ("GET", _EL_DUB): Op("ElevenLabs: a dub's metadata", _EL, compat=True),
    ("DELETE", _EL_DUB): Op("ElevenLabs: delete a dub", _EL, compat=True),
    ("GET", _EL_DUB + "/audio/{language}"): Op(
        "ElevenLabs: a language's dubbed file", _EL, compat=True, responses={200: _MEDIA}
    ),
    ("GET", _EL_DUB + "/transcript/{language}"): Op(
        "ElevenLabs: a language's transcript",
        _EL,
        compat=True,
        params={"format_type": {"type": "string", "enum": ["srt", "webvtt", "json"]}},
    ),
    ("GET", _EL_DUB + "/transcripts/{language}/format/{format}"): Op(
        "ElevenLabs: a language's transcript in a format", _EL, compat=True
    ),
    ("GET", _EL_RESOURCE): Op("ElevenLabs: the Dubbing Studio resource", _EL, compat=True),
    ("PATCH", _EL_RESOURCE + "/segment/{segment_id}/{language}"): Op(
        "ElevenLabs: change a segment in a language", _EL, compat=True, body_media=OBJECT_BODY
    ),
    ("POST", _EL_RESOURCE + "/dub"): Op(
        "ElevenLabs: dub segments again", _EL, compat=True, body_media=OBJECT_BODY
    ),
    ("POST", _EL_RESOURCE + "/render/{language}"): Op(
        "ElevenLabs: render a language", _EL, compat=True, body_media=OBJECT_BODY
    ),
}
