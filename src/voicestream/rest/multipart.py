"""Reading a multipart/form-data upload, the same way on every route that takes one.

aiohttp's multipart reader reports a malformed body with whatever its parsing step raises
(ValueError for a missing or wrong boundary, AssertionError for a non-multipart type, HTTP parser
errors for bad part headers, and more). ``read_form`` turns each of them into one 400 JSON error,
and bounds what it buffers: the file part by the caller's limit, every other field by its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam
from multidict import MultiDict

from ..errors import BadRequest, PayloadTooLarge, VoiceStreamError
from ..protocols.json_messages import invalid_text_reason

__all__ = [
    "MALFORMED_MULTIPART",
    "MAX_FIELD_BYTES",
    "Form",
    "UploadedFile",
    "read_form",
    "read_form_fields",
]

MAX_FIELD_BYTES = 64 * 1024  # any field but the file: names, options, prompts

# Everything aiohttp's reader raises for a malformed body. Its Content-Disposition warnings are
# listed too: where warnings are errors (the test suite), a bad header raises them.
_MALFORMED: tuple[type[Exception], ...] = (
    ValueError,
    AssertionError,
    LookupError,
    RuntimeError,
    HttpProcessingError,
    BadContentDispositionHeader,
    BadContentDispositionParam,
)
# For routes that stream a part rather than read it whole (rest/files.py).
MALFORMED_MULTIPART = _MALFORMED


@dataclass(frozen=True, slots=True)
class UploadedFile:
    data: bytes
    filename: str | None
    content_type: str  # as the part declared it, lower case, without parameters; "" if none


@dataclass(frozen=True, slots=True)
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)  # every value, in order
    file: UploadedFile | None = None

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


async def read_form(
    request: web.Request,
    *,
    file_limit: int,
    too_large: VoiceStreamError,
    file_field: str = "file",
) -> Form:
    """The ``file_field`` part and every other named field (UTF-8 text) of a form upload.

    Nested multiparts and unnamed parts are skipped.

    Raises:
        BadRequest: the body is not a well-formed multipart form, or a field is not UTF-8 text
            (``details.param`` names it).
        PayloadTooLarge: a field passed ``MAX_FIELD_BYTES``; ``too_large`` when the file passed
            ``file_limit``.
    """
    fields: dict[str, list[str]] = {}
    upload: UploadedFile | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            name = part.name
            if name == file_field:
                declared = part.headers.get("Content-Type", "")
                data = await _read_part(part, file_limit, too_large)
                content_type = declared.split(";")[0].strip().lower()
                filename = part.filename
                if filename is not None and (reason := invalid_text_reason(filename)):
                    raise BadRequest(f"file name: {reason}", details={"param": name})
                upload = UploadedFile(data, filename, content_type)
                continue
            field_too_large = PayloadTooLarge(
                f"field {name!r} exceeds {MAX_FIELD_BYTES} bytes", details={"param": name}
            )
            raw = await _read_part(part, MAX_FIELD_BYTES, field_too_large)
            fields.setdefault(name, []).append(_field_text(name, raw))
    except _MALFORMED as exc:
        raise BadRequest(f"malformed multipart body: {_describe(exc)}") from None
    return Form(fields, upload)


async def read_form_fields(request: web.Request) -> MultiDict[str]:
    """The text fields of a form POST, urlencoded or multipart, as carriers' webhooks send them;
    any other body has none. What ``request.post()`` gives, without its failure modes: a
    malformed body is a BadRequest, and file parts are neither kept nor spooled to disk.

    Raises:
        BadRequest: a malformed body, or a field that is not valid text.
        PayloadTooLarge: a multipart field passed ``MAX_FIELD_BYTES``.
    """
    fields: MultiDict[str] = MultiDict()
    if request.content_type.startswith("multipart/"):
        too_large = PayloadTooLarge(f"form files are limited to {MAX_FIELD_BYTES} bytes")
        form = await read_form(request, file_limit=MAX_FIELD_BYTES, too_large=too_large)
        for name, values in form.fields.items():
            for value in values:
                fields.add(name, value)
        return fields
    try:
        posted = await request.post()
    except _MALFORMED as exc:
        raise BadRequest(f"malformed form body: {_describe(exc)}") from None
    for name, posted_value in posted.items():
        if isinstance(posted_value, str):
            reason = invalid_text_reason(name) or invalid_text_reason(posted_value)
            if reason is not None:
                raise BadRequest(f"form field: {reason}")
            fields.add(name, posted_value)
    return fields


async def _read_part(part: BodyPartReader, limit: int, too_large: VoiceStreamError) -> bytes:
    # aiohttp's body limit does not apply to parts read from the stream: count here.
    buf = bytearray()
    while chunk := await part.read_chunk():
        buf += chunk
        if len(buf) > limit:
            raise too_large
    return bytes(buf)


def _field_text(name: str, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"field {name!r} is not UTF-8 text", details={"param": name}) from None
    if (reason := invalid_text_reason(text)) is not None:
        raise BadRequest(f"field {name!r}: {reason}", details={"param": name})
    return text


def _describe(exc: Exception) -> str:
    text = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    # The parser quotes what it choked on, which can be a whole line of the client's bytes.
    return (text or type(exc).__name__)[:200]
