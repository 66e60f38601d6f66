"""Knowledge documents to passages: plain text, markdown or PDF in, short speakable passages out.

A passage is what the knowledge agent says back, so it is cut for the ear: one to three whole
sentences (about 300-500 characters), never across a paragraph or a section, never mid-sentence
unless a single sentence is too long to speak in one breath. Markdown loses its syntax (nobody
wants to hear "hash hash Opening hours"); a section's heading travels with each of its passages
as ``heading``, which is embedded with the text (it says what the passage is about) but not
spoken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from voicestream.errors import UnsupportedFormat, ValidationFailed
from voicestream.media.documents import pdf_to_text  # one PDF reader for agents and TTS jobs

__all__ = [
    "CONTENT_TYPES",
    "MAX_PASSAGE_CHARS",
    "Passage",
    "chunk_document",
    "chunk_text",
    "document_text",
    "markdown_to_text",
    "pdf_to_text",
    "split_sentences",
]

TARGET_PASSAGE_CHARS: Final = 300  # a passage this long is complete; start the next one
MAX_PASSAGE_CHARS: Final = 500
MAX_SENTENCES: Final = 3
CONTENT_TYPES: Final = ("text/plain", "text/markdown", "application/pdf")


@dataclass(frozen=True, slots=True)
class Passage:
    text: str  # spoken as the answer
    heading: str | None = None  # the section it came from: context for retrieval only

    @property
    def embed_text(self) -> str:
        return f"{self.heading}: {self.text}" if self.heading else self.text


# --- sentences ------------------------------------------------------------------------------

# Words whose trailing period never ends a sentence (they precede a name or a number). Other
# abbreviations ("etc.", "p.m.") end one exactly when a capital follows, like any word.
_TITLES: Final = frozenset("mr mrs ms dr prof sr jr st vs no nr tel fig approx ca".split())
_SENTENCE_END = re.compile(r"([.!?…]+[\"')\]]*)\s+")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:—–])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (whitespace normalized), punctuation kept."""
    text = " ".join(text.split())
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end(1)
        candidate = text[start:end]
        last_word = candidate.rsplit(" ", 1)[-1].rstrip(".").lower()
        following = text[match.end() : match.end() + 1]
        if last_word in _TITLES or (following and following.islower()):
            continue  # "Dr. Smith", "e.g. this": not an end
        if len(last_word) == 1 and last_word.isalpha() and match.group(1) == ".":
            continue  # an initial: "J. Smith"
        sentences.append(candidate.strip())
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _split_long(sentence: str, limit: int) -> list[str]:
    """A sentence too long to speak as one passage, cut at clause breaks, else at words."""
    if len(sentence) <= limit:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for part in _CLAUSE_BREAK.split(sentence):
        for word_chunk in _wrap_words(part, limit):
            joined = f"{current} {word_chunk}".strip()
            if current and len(joined) > limit:
                pieces.append(current)
                current = word_chunk
            else:
                current = joined
    if current:
        pieces.append(current)
    return pieces


def _wrap_words(text: str, limit: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    out: list[str] = []
    line = ""
    for word in text.split():
        word = word[:limit]  # a "word" longer than a passage (a URL, a hash) is cut
        if line and len(line) + 1 + len(word) > limit:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        out.append(line)
    return out


# --- passages -------------------------------------------------------------------------------

# Internal: markdown_to_text marks heading lines with it so chunk_text can see them. NUL never
# survives into document text (document_text and chunk_document remove it).
_HEADING_MARK = "\x00H"


def chunk_text(text: str, *, max_chars: int = MAX_PASSAGE_CHARS) -> list[Passage]:
    """Passages of a plain text (or of ``markdown_to_text`` output), in document order."""
    passages: list[Passage] = []
    heading: str | None = None
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        body: list[str] = []
        for line in lines:
            if line.startswith(_HEADING_MARK):
                passages.extend(_passages(body, heading, max_chars))
                body = []
                heading = line[len(_HEADING_MARK) :].strip() or None
            else:
                body.append(line)
        passages.extend(_passages(body, heading, max_chars))
    return passages


def _passages(lines: list[str], heading: str | None, max_chars: int) -> list[Passage]:
    if not lines:
        return []
    sentences: list[str] = []
    for sentence in split_sentences(" ".join(lines)):
        sentences.extend(_split_long(sentence, max_chars))
    out: list[Passage] = []
    current: list[str] = []
    length = 0
    for sentence in sentences:
        if current and (
            length + 1 + len(sentence) > max_chars
            or len(current) >= MAX_SENTENCES
            or length >= TARGET_PASSAGE_CHARS
        ):
            out.append(Passage(" ".join(current), heading))
            current, length = [], 0
        current.append(sentence)
        length += len(sentence) + (1 if length else 0)
    if current:
        out.append(Passage(" ".join(current), heading))
    return out


# --- markdown -------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1[^\n]*$", re.MULTILINE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>\n]+>")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_LINK_DEF = re.compile(r"^\s*\[[^\]]+\]:\s+\S+.*$", re.MULTILINE)
_INLINE_CODE = re.compile(r"`+([^`]+)`+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def markdown_to_text(markdown: str) -> str:
    """Markdown as text to be spoken: syntax removed, headings marked for ``chunk_text``.

    Code blocks are dropped (read aloud they are noise); links keep their words; list items
    and table rows become sentences of their own.
    """
    text = _FENCE.sub("", markdown.replace("\r\n", "\n"))
    text = _LINK_DEF.sub("", text)
    out: list[str] = []
    lines = text.split("\n")
    for i, raw in enumerate(lines):
        line = raw.rstrip()
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _TABLE_SEPARATOR.match(line) and "|" in line:
            continue  # a table's header rule; its rows follow as sentences
        if _RULE.match(line):
            out.append("")
            continue
        if _SETEXT_UNDERLINE.match(line) and out and out[-1].startswith(_HEADING_MARK):
            continue  # the underline of the heading emitted on the previous line
        heading = _ATX_HEADING.match(line)
        if heading is None and line.strip() and _SETEXT_UNDERLINE.match(nxt):
            heading = re.match(r"^\s*(.*?)\s*$", line)
        if heading is not None:
            out.extend(["", _HEADING_MARK + _inline(heading.group(1))])
            continue
        line = _QUOTE.sub("", line)
        is_item = bool(_LIST_ITEM.match(line))
        line = _LIST_ITEM.sub("", line)
        if line.strip().startswith("|") or line.count("|") >= 2:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            line = ", ".join(c for c in cells if c)
            is_item = True
        line = _inline(line)
        if is_item and line and line[-1] not in ".!?:;":
            line += "."  # an item is a sentence of its own, not glued to the next one
        out.append(line)
    return "\n".join(out)


def _inline(text: str) -> str:
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    for _ in range(2):  # nested emphasis: ***bold italic***
        text = _EMPHASIS.sub(r"\2", text)
    return text.replace("\\", "").strip()


# --- documents ------------------------------------------------------------------------------


def document_text(data: bytes, content_type: str) -> str:
    """Blocking for PDFs. The text of an uploaded document (markdown still marked up).

    Raises:
        UnsupportedFormat: an unknown content type, or a PDF that cannot be read.
        ValidationFailed: text that is not UTF-8, or a document without text.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("text/x-markdown", "text/md"):
        kind = "text/markdown"
    if kind == "application/pdf":
        return pdf_to_text(data)
    if kind not in CONTENT_TYPES:
        raise UnsupportedFormat(
            f"unsupported document type {content_type!r}; use {', '.join(CONTENT_TYPES)}",
            details={"content_type": content_type, "supported": list(CONTENT_TYPES)},
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the document is not UTF-8 text") from None
    return text.replace("\x00", "")  # PostgreSQL text cannot hold NUL; nor should speech


def chunk_document(text: str, content_type: str = "text/plain") -> list[Passage]:
    """Passages of a decoded document (markdown syntax stripped when it is markdown)."""
    text = text.replace("\x00", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("text/markdown", "text/x-markdown", "text/md"):
        text = markdown_to_text(text)
    return chunk_text(text)
