"""Long documents to chapters of paragraphs: plain text, Markdown, EPUB (built here with
zipfile, as a publisher's tool lays it out) and PDF (with bookmarks, written with pypdf)."""

from __future__ import annotations

import io
import zipfile

import pytest
from pypdf import PdfReader, PdfWriter

from fakes.pdf import make_pdf
from voicestream.errors import PayloadTooLarge, UnsupportedFormat, ValidationFailed
from voicestream.media.documents import (
    Chapter,
    document_kind,
    epub_document,
    markdown_document,
    parse_document,
    pdf_document,
    text_document,
)


def test_plain_text_chapters_from_chapter_lines() -> None:
    text = (
        "A short opening note.\r\n\r\n"
        "Chapter 1\n\nIt was a dark\nand stormy night.\n\n"
        "Part of the day was bright.\n\n"  # starts like a heading, but is a sentence
        "CHAPTER TWO: The Return\n\nShe came back.\n"
    )
    document = text_document(text)
    assert document.chapters == (
        Chapter(None, ("A short opening note.",)),
        Chapter("Chapter 1", ("It was a dark and stormy night.", "Part of the day was bright.")),
        Chapter("CHAPTER TWO: The Return", ("She came back.",)),
    )
    assert document.chapters[1].speech_text() == (
        "Chapter 1.\n\nIt was a dark and stormy night.\n\nPart of the day was bright."
    )


def test_text_without_structure_is_one_chapter_and_empty_text_is_refused() -> None:
    assert text_document("One.\n\nTwo.").chapters == (Chapter(None, ("One.", "Two.")),)
    with pytest.raises(ValidationFailed):
        text_document(" \n\n\t")


def test_markdown_headings_make_chapters_and_markup_is_not_read() -> None:
    markdown = """Front matter line.

# The First Chapter

Some *emphasis*, a [link](https://example.com) and `code`,
over two lines. ![a picture](cover.png) <span>inline html</span>

```python
print("never read aloud")
```

## A section

- first item
- second item

| Name | Age |
|------|-----|
| Ann  | 31  |

The First Chapter Ends
======================

Done.
"""
    chapters = markdown_document(markdown).chapters
    assert [c.title for c in chapters] == [None, "The First Chapter", "The First Chapter Ends"]
    assert chapters[0].paragraphs == ("Front matter line.",)
    assert chapters[1].paragraphs == (
        "Some emphasis, a link and code, over two lines. inline html",
        "A section",  # a deeper heading is read in its place
        "first item",
        "second item",
        "Name, Age",
        "Ann, 31",
    )
    assert chapters[2].paragraphs == ("Done.",)
    assert "print" not in " ".join(p for c in chapters for p in c.paragraphs)


def _epub(
    chapters: dict[str, str], *, package_extra: str = "", opf_name: str = "OEBPS/content.opf"
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            f'<rootfile full-path="{opf_name}" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        items = "".join(
            f'<item id="c{i}" href="text/{name}" media-type="application/xhtml+xml"/>'
            for i, name in enumerate(chapters)
        )
        # The spine lists the chapters in reverse file order: reading order is the spine's.
        spine = "".join(f'<itemref idref="c{i}"/>' for i in reversed(range(len(chapters))))
        archive.writestr(
            opf_name,
            f'<?xml version="1.0"?>{package_extra}<package xmlns="http://www.idpf.org/2007/opf" '
            f'version="3.0"><manifest>{items}'
            '<item id="notes" href="notes.xhtml" media-type="application/xhtml+xml"/>'
            f'</manifest><spine>{spine}<itemref idref="notes" linear="no"/></spine></package>',
        )
        for name, body in chapters.items():
            archive.writestr(
                f"OEBPS/text/{name}",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                "<head><title>ignored</title><style>p {}</style></head>"
                f"<body>{body}</body></html>",
            )
        archive.writestr("OEBPS/notes.xhtml", "<html><body><p>A footnote.</p></body></html>")
    return buffer.getvalue()


def test_epub_chapters_in_spine_order_from_headings() -> None:
    data = _epub(
        {
            "two.xhtml": "<h1>Chapter Two</h1><p>Second &amp; last.</p>",
            "one.xhtml": (
                "<section><h1>Chapter One</h1><p>It begins<br/>here.</p>"
                "<h2>A scene</h2><div><p>Nested <em>text</em>.</p></div>"
                "<script>alert('no')</script></section>"
            ),
        }
    )
    assert document_kind(data, "application/octet-stream", "book.bin") == "application/epub+zip"
    chapters = parse_document(data, "application/epub+zip").chapters
    assert chapters == (
        Chapter("Chapter One", ("It begins", "here.", "A scene", "Nested text.")),
        Chapter("Chapter Two", ("Second & last.",)),
    )


def test_epub_defences() -> None:
    with pytest.raises(UnsupportedFormat, match="not a zip"):
        epub_document(b"PK\x03\x04 but not really a zip")
    entity = '<!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">]>'
    with pytest.raises(UnsupportedFormat, match="entities"):
        epub_document(_epub({"one.xhtml": "<p>x</p>"}, package_extra=entity))
    big = _epub({"one.xhtml": "<p>" + "word " * 20_000 + "</p>"})
    with pytest.raises(PayloadTooLarge):
        epub_document(big, max_unpacked_bytes=50_000)
    no_container = io.BytesIO()
    with zipfile.ZipFile(no_container, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
    with pytest.raises(UnsupportedFormat, match=r"container\.xml"):
        epub_document(no_container.getvalue())


def _pdf_with_bookmarks(pages: list[list[str]], bookmarks: dict[int, str]) -> bytes:
    writer = PdfWriter()
    for lines in pages:
        writer.add_page(PdfReader(io.BytesIO(make_pdf(lines))).pages[0])
    for page, title in bookmarks.items():
        writer.add_outline_item(title=title, page_number=page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_bookmarks_make_chapters() -> None:
    data = _pdf_with_bookmarks(
        [["Title page."], ["The first chapter text."], ["More of it."], ["The end."]],
        {1: "One", 3: "Two"},
    )
    assert document_kind(data, None) == "application/pdf"
    chapters = pdf_document(data).chapters
    assert [c.title for c in chapters] == [None, "One", "Two"]
    assert chapters[1].paragraphs == ("The first chapter text.", "More of it.")
    assert chapters[2].paragraphs == ("The end.",)


def test_pdf_without_bookmarks_or_text() -> None:
    assert [c.title for c in pdf_document(make_pdf(["Just text."])).chapters] == [None]
    with pytest.raises(ValidationFailed, match="scan"):
        pdf_document(make_pdf([]))
    with pytest.raises(UnsupportedFormat, match="not a PDF"):
        pdf_document(b"hello")


def test_document_kinds() -> None:
    assert document_kind(b"# x", "text/x-markdown; charset=utf-8") == "text/markdown"
    assert document_kind(b"# x", "application/octet-stream", "notes.md") == "text/markdown"
    assert document_kind(b"plain", None) == "text/plain"
    with pytest.raises(UnsupportedFormat):
        document_kind(b"\x89PNG", "image/png")
    with pytest.raises(ValidationFailed, match="UTF-8"):
        parse_document(b"\xff\xfe\x00bad", "text/plain")
