"""Long documents as chapters of paragraphs, ready to be read aloud: plain text, Markdown, EPUB
and PDF.

Chapters come from the document's own structure: the shallowest heading level a Markdown or
EPUB document uses (deeper headings stay in the chapter as paragraphs of their own, read like
any other), a PDF's top-level bookmarks, and "Chapter …"-style lines in plain text. Text before
the first chapter heading is an untitled opening chapter.

EPUB is read with the standard library (zipfile, ElementTree for the package files,
html.parser for the XHTML): an EPUB is a zip of XHTML in a spine order, and the kept EPUB
library (EbookLib) is AGPL-licensed and pulls in lxml for what three small readers do here.
Markdown goes through markdown-it-py (CommonMark), PDF through pypdf.

Everything here is blocking and CPU-bound: callers run it on an executor.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final
from urllib.parse import unquote
from xml.etree import ElementTree

from markdown_it import MarkdownIt

from voicestream.errors import PayloadTooLarge, UnsupportedFormat, ValidationFailed

__all__ = [
    "DOCUMENT_TYPES",
    "Chapter",
    "Document",
    "document_kind",
    "epub_document",
    "html_document",
    "markdown_document",
    "parse_document",
    "pdf_document",
    "pdf_to_text",
    "text_document",
]

DOCUMENT_TYPES: Final = (
    "text/plain",
    "text/markdown",
    "text/html",
    "application/epub+zip",
    "application/pdf",
)
# An EPUB is a zip: what it may expand to, whatever its compressed size says.
MAX_EPUB_UNPACKED_BYTES: Final = 256 * 1024 * 1024
_END_PUNCTUATION: Final = (".", "!", "?", ":", ";", "\u2026", '"', "\u201d", ")")


@dataclass(frozen=True, slots=True)
class Chapter:
    """One chapter: its title (None for an untitled opening) and its paragraphs, each one
    line of plain text."""

    title: str | None
    paragraphs: tuple[str, ...]

    @property
    def characters(self) -> int:
        return len(self.title or "") + sum(len(p) for p in self.paragraphs)

    def speech_text(self) -> str:
        """The chapter as one text for a TTS stream: the title first, every paragraph a
        sentence-ended block of its own (a title or list item without a full stop would
        otherwise run into the next sentence)."""
        parts = [self.title] if self.title else []
        parts.extend(self.paragraphs)
        return "\n\n".join(_sentence(p) for p in parts)


@dataclass(frozen=True, slots=True)
class Document:
    chapters: tuple[Chapter, ...]

    @property
    def characters(self) -> int:
        return sum(c.characters for c in self.chapters)


def _sentence(text: str) -> str:
    return text if text.endswith(_END_PUNCTUATION) else f"{text}."


def _clean(text: str) -> str:
    return " ".join(text.replace("\x00", "").split())


# --- blocks -> chapters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    level: int = 0  # 1-6 for a heading, 0 for a paragraph


def _chapters(blocks: Iterable[_Block]) -> Document:
    kept = [b for b in (_Block(_clean(b.text), b.level) for b in blocks) if b.text]
    levels = [b.level for b in kept if b.level]
    top = min(levels, default=0)
    chapters: list[Chapter] = []
    title: str | None = None
    paragraphs: list[str] = []
    for block in kept:
        if top and block.level == top:
            if title is not None or paragraphs:
                chapters.append(Chapter(title, tuple(paragraphs)))
            title, paragraphs = block.text, []
        else:
            paragraphs.append(block.text)
    if title is not None or paragraphs:
        chapters.append(Chapter(title, tuple(paragraphs)))
    if not chapters:
        raise ValidationFailed("the document has no text to read")
    return Document(tuple(chapters))


# --- plain text -----------------------------------------------------------------------------

_NUMBER_WORDS: Final = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|first|second|third|last"
)
# "Chapter 3", "PART TWO: The Return", "Book IV." or a bare "Prologue": not "Part of the day…".
_PLAIN_HEADING = re.compile(
    rf"^(?:(?:chapter|part|book)\s+(?:\d+|[ivxlcdm]+|{_NUMBER_WORDS})\b[^\n]{{0,60}}"
    r"|(?:prologue|epilogue|preface|introduction|afterword)\b[^\n]{0,60})$",
    re.IGNORECASE,
)


def text_document(text: str) -> Document:
    """Plain text: paragraphs are separated by blank lines; a one-line paragraph that starts
    like "Chapter 3", "PART TWO" or "Prologue" opens a chapter."""
    blocks = []
    for raw in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        paragraph = raw.strip()
        is_heading = "\n" not in paragraph and _PLAIN_HEADING.match(paragraph) is not None
        blocks.append(_Block(paragraph, 1 if is_heading else 0))
    return _chapters(blocks)


# --- Markdown -------------------------------------------------------------------------------

_MARKDOWN = MarkdownIt("commonmark").enable("table")
# Inline tokens whose content is spoken; images, raw HTML and the like are not.
_SPOKEN_INLINE: Final = frozenset({"text", "code_inline"})


def markdown_document(markdown: str) -> Document:
    """Markdown (CommonMark with tables): headings make chapters; code blocks, images and raw
    HTML are left out (read aloud they are noise); a list item or a table row is a paragraph
    of its own."""
    blocks: list[_Block] = []
    level = 0
    row: list[str] = []
    in_row = False
    for token in _MARKDOWN.parse(markdown.replace("\x00", "")):
        if token.type == "heading_open":
            level = int(token.tag[1:])
        elif token.type == "heading_close":
            level = 0
        elif token.type == "tr_open":
            in_row, row = True, []
        elif token.type == "tr_close":
            in_row = False
            blocks.append(_Block(", ".join(cell for cell in row if cell)))
        elif token.type == "inline":
            pieces = []
            for child in token.children or ():
                if child.type in _SPOKEN_INLINE:
                    pieces.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    pieces.append(" ")
            text = "".join(pieces)
            if in_row:
                row.append(_clean(text))
            else:
                blocks.append(_Block(text, level))
    return _chapters(blocks)


# --- EPUB -----------------------------------------------------------------------------------

_BLOCK_TAGS: Final = frozenset(
    {"p", "div", "li", "blockquote", "section", "article", "tr", "dd", "dt", "pre", "figcaption"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "br", "hr", "table", "ul", "ol", "body"}
)
_SILENT_TAGS: Final = frozenset({"script", "style", "head", "title", "svg", "math", "rt"})


class _XhtmlBlocks(HTMLParser):
    """Text blocks of an (X)HTML document: headings with their level, everything else as
    paragraphs split where a block element starts or ends."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = []
        self._text: list[str] = []
        self._level = 0
        self._silent = 0

    def _flush(self) -> None:
        text = "".join(self._text)
        self._text = []
        if text.strip():
            self.blocks.append(_Block(text, self._level))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SILENT_TAGS:
            self._silent += 1
        elif tag in _BLOCK_TAGS:
            self._flush()
            if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
                self._level = int(tag[1])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SILENT_TAGS:
            self._silent = max(0, self._silent - 1)
        elif tag in _BLOCK_TAGS:
            self._flush()
            self._level = 0

    def handle_data(self, data: str) -> None:
        if not self._silent:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def _xml(data: bytes, what: str) -> ElementTree.Element:
    # Package files never need entity declarations; refusing them rules out entity expansion
    # ("billion laughs") whatever the XML parser's own defences are.
    if b"<!ENTITY" in data:
        raise UnsupportedFormat(f"the EPUB's {what} declares XML entities")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise UnsupportedFormat(f"the EPUB's {what} is not valid XML: {exc}") from None


class _Zip:
    """Members of an untrusted zip, read with a budget on what they may expand to."""

    def __init__(self, data: bytes, max_unpacked_bytes: int) -> None:
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError) as exc:
            raise UnsupportedFormat(f"the file is not an EPUB (not a zip: {exc})") from None
        self._limit = self._left = max_unpacked_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the EPUB expands to more than {self._limit} bytes",
            details={"max_bytes": self._limit},
        )

    def read(self, name: str) -> bytes:
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise UnsupportedFormat(f"the EPUB lacks {name!r}") from None
        # file_size is what the archive claims; the read is capped anyway, in case it lies.
        if info.file_size > self._left:
            raise self._too_large()
        try:
            with self._zip.open(info) as member:
                data = member.read(self._left + 1)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
            raise UnsupportedFormat(f"cannot read {name!r} from the EPUB: {exc}") from None
        if len(data) > self._left:
            raise self._too_large()
        self._left -= len(data)
        return data


def _spine(archive: _Zip) -> Iterator[str]:
    """Paths in the archive of the spine's documents, in reading order."""
    container = _xml(archive.read("META-INF/container.xml"), "container.xml")
    rootfile = container.find(".//{*}rootfile")
    package_path = rootfile.get("full-path") if rootfile is not None else None
    if not package_path:
        raise UnsupportedFormat("the EPUB's container.xml names no package document")
    package = _xml(archive.read(package_path), "package document")
    base = posixpath.dirname(package_path)
    manifest = {
        item.get("id"): item.get("href")
        for item in package.iterfind(".//{*}manifest/{*}item")
        if item.get("id") and item.get("href")
    }
    for itemref in package.iterfind(".//{*}spine/{*}itemref"):
        if itemref.get("linear") == "no":
            continue  # notes, pop-ups: not part of the reading order
        href = manifest.get(itemref.get("idref"))
        if href:
            path = posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))
            if not path.startswith("../"):
                yield path


def epub_document(data: bytes, *, max_unpacked_bytes: int = MAX_EPUB_UNPACKED_BYTES) -> Document:
    """An EPUB 2 or 3 book: the spine's documents in reading order; headings make chapters.

    Raises:
        UnsupportedFormat: not a zip, no package document, broken XML, or entity declarations.
        PayloadTooLarge: the archive expands past ``max_unpacked_bytes``.
        ValidationFailed: a book without text.
    """
    archive = _Zip(data, max_unpacked_bytes)
    blocks: list[_Block] = []
    for path in _spine(archive):
        parser = _XhtmlBlocks()
        parser.feed(archive.read(path).decode("utf-8", errors="replace"))
        parser.close()
        blocks.extend(parser.blocks)
    return _chapters(blocks)


def html_document(text: str) -> Document:
    """A web page or HTML export: its headings make chapters, as in an EPUB's documents."""
    parser = _XhtmlBlocks()
    parser.feed(text)
    parser.close()
    return _chapters(parser.blocks)


# --- PDF ------------------------------------------------------------------------------------

_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


def _pdf_pages(data: bytes) -> tuple[list[str], list[tuple[int, str]]]:
    """Every page's text and the top-level bookmarks as ``(page index, title)``.

    Raises:
        UnsupportedFormat: not a PDF, damaged, or encrypted.
    """
    from pypdf import PdfReader

    if not data.lstrip()[:5].startswith(b"%PDF-"):
        raise UnsupportedFormat("the file is not a PDF (no %PDF- header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnsupportedFormat("encrypted PDFs are not supported")
        pages = [page.extract_text() or "" for page in reader.pages]
        marks: list[tuple[int, str]] = []
        for item in reader.outline:
            if isinstance(item, list):
                continue  # the children of the bookmark before: sections, not chapters
            page = reader.get_destination_page_number(item)
            if page is not None and page >= 0:
                marks.append((page, str(item.title or "")))
    except UnsupportedFormat:
        raise
    except Exception as exc:  # a damaged PDF can fail anywhere inside pypdf, in any way
        raise UnsupportedFormat(f"cannot read the PDF: {exc}") from None
    return [_HYPHEN_BREAK.sub(r"\1\2", page) for page in pages], sorted(marks)


def _page_paragraphs(page: str) -> list[str]:
    # PDF text breaks lines where the layout did, not where the sentences do: lines are joined,
    # blank lines (where the extractor found them) kept as paragraph breaks.
    return [p for p in re.split(r"\n\s*\n", page) if p.strip()]


def pdf_to_text(data: bytes) -> str:
    """The text of every page, paragraphs separated by blank lines.

    Raises:
        UnsupportedFormat: not a PDF, damaged, or encrypted.
        ValidationFailed: a PDF without extractable text (a scan).
    """
    pages, _ = _pdf_pages(data)
    text = "\n\n".join(p for page in pages for p in _page_paragraphs(page)).replace("\x00", "")
    if not text.strip():
        raise ValidationFailed("the PDF has no extractable text (is it a scan?)")
    return text


def pdf_document(data: bytes) -> Document:
    """A PDF: its top-level bookmarks make the chapters (each from its page to the next one's);
    without bookmarks the whole text is one chapter.

    Raises:
        UnsupportedFormat: not a PDF, damaged, or encrypted.
        ValidationFailed: a PDF without extractable text (a scan).
    """
    pages, marks = _pdf_pages(data)
    blocks: list[_Block] = []
    starts = dict(marks)  # two bookmarks on one page: the later one names the chapter
    for index, page in enumerate(pages):
        if index in starts:
            blocks.append(_Block(starts[index] or f"Page {index + 1}", 1))
        blocks.extend(_Block(p) for p in _page_paragraphs(page))
    if not any(b.level == 0 and b.text.strip() for b in blocks):
        raise ValidationFailed("the PDF has no extractable text (is it a scan?)")
    return _chapters(blocks)


# --- any document ---------------------------------------------------------------------------

_KIND_ALIASES: Final = {
    "text/x-markdown": "text/markdown",
    "text/md": "text/markdown",
    "application/x-pdf": "application/pdf",
}
_EXTENSIONS: Final = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".epub": "application/epub+zip",
    ".pdf": "application/pdf",
}


def document_kind(data: bytes, content_type: str | None, filename: str | None = None) -> str:
    """Which of ``DOCUMENT_TYPES`` an upload is: its content type when that is one of them,
    else its file name's extension, else its first bytes (a generic ``application/
    octet-stream`` upload of a PDF is still a PDF).

    Raises:
        UnsupportedFormat: none of the supported kinds.
    """
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    kind = _KIND_ALIASES.get(kind, kind)
    if kind in DOCUMENT_TYPES:
        return kind
    extension = posixpath.splitext((filename or "").lower())[1]
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if data.lstrip()[:5].startswith(b"%PDF-"):
        return "application/pdf"
    if data[:4] == b"PK\x03\x04" and b"application/epub+zip" in data[:100]:
        return "application/epub+zip"
    if kind in ("", "application/octet-stream") or kind.startswith("text/"):
        return "text/plain"
    raise UnsupportedFormat(
        f"unsupported document type {content_type!r}; use {', '.join(DOCUMENT_TYPES)}",
        details={"content_type": content_type, "supported": list(DOCUMENT_TYPES)},
    )


def parse_document(data: bytes, content_type: str | None, filename: str | None = None) -> Document:
    """An uploaded document as chapters (see ``document_kind`` for how its kind is decided).

    Raises:
        UnsupportedFormat: an unknown kind, or a PDF or EPUB that cannot be read.
        PayloadTooLarge: an EPUB that expands past ``MAX_EPUB_UNPACKED_BYTES``.
        ValidationFailed: text that is not UTF-8, or a document without text.
    """
    kind = document_kind(data, content_type, filename)
    if kind == "application/pdf":
        return pdf_document(data)
    if kind == "application/epub+zip":
        return epub_document(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the document is not UTF-8 text") from None
    if kind == "text/html":
        return html_document(text)
    return markdown_document(text) if kind == "text/markdown" else text_document(text)
