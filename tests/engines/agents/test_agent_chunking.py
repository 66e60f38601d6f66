"""Documents to speakable passages: sentences, markdown, PDF."""

from __future__ import annotations

import pytest

from fakes.pdf import make_pdf
from voicestream.engines.agents.chunking import (
    MAX_PASSAGE_CHARS,
    Passage,
    chunk_document,
    chunk_text,
    document_text,
    markdown_to_text,
    pdf_to_text,
    split_sentences,
)
from voicestream.errors import UnsupportedFormat, ValidationFailed


def test_sentences_respect_abbreviations_initials_and_lowercase_continuations() -> None:
    text = (
        "We open at 7 a.m. on weekdays. On Saturdays we close at 2 p.m. Dr. Smith runs it, "
        "e.g. the bakery. J. Smith helps! Really? Yes."
    )
    assert split_sentences(text) == [
        "We open at 7 a.m. on weekdays.",
        "On Saturdays we close at 2 p.m.",
        "Dr. Smith runs it, e.g. the bakery.",
        "J. Smith helps!",
        "Really?",
        "Yes.",
    ]


def test_passages_are_one_to_three_sentences_within_a_paragraph() -> None:
    para1 = " ".join(f"Sentence {i} of the first paragraph." for i in range(7))
    para2 = "A second paragraph stands alone."
    passages = chunk_text(f"{para1}\n\n{para2}")
    assert [p.text.count(".") for p in passages] == [3, 3, 1, 1]
    assert passages[-1] == Passage("A second paragraph stands alone.")
    # Lines of one paragraph are joined, not kept apart.
    assert chunk_text("one line\nand its continuation.") == [
        Passage("one line and its continuation.")
    ]


def test_long_sentences_are_cut_at_clauses_within_the_limit() -> None:
    sentence = ", ".join(f"clause number {i} of a sentence that goes on" for i in range(40)) + "."
    passages = chunk_text(sentence)
    assert len(passages) > 1
    assert all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages)
    assert " ".join(p.text for p in passages) == sentence


def test_an_unbroken_token_is_cut_hard() -> None:
    passages = chunk_text("x" * 1500)
    assert all(len(p.text) <= MAX_PASSAGE_CHARS for p in passages)


def test_markdown_loses_its_syntax_and_headings_become_context() -> None:
    md = """# Acme Bakery

Welcome to **Acme** _Bakery_! See [our site](https://example.com) and `the menu`.

## Opening hours
We are open from 7 to 6 on weekdays.

- Sourdough
- Croissants

| Item | Price |
|------|-------|
| Bread | 4 EUR |

```python
print("never spoken")
```

> Quoted wisdom here.

Setext heading
--------------
The end.
"""
    passages = chunk_document(md, "text/markdown")
    texts = [p.text for p in passages]
    assert texts[0] == "Welcome to Acme Bakery! See our site and the menu."
    assert passages[0].heading == "Acme Bakery"
    assert Passage("We are open from 7 to 6 on weekdays.", "Opening hours") in passages
    assert "Sourdough. Croissants." in texts
    assert "Item, Price. Bread, 4 EUR." in texts
    joined = " ".join(texts)
    for syntax in ("#", "**", "`", "](", "|", "never spoken", ">"):
        assert syntax not in joined, syntax
    assert Passage("The end.", "Setext heading") in passages
    # The heading is embedded with the text, but not spoken.
    assert passages[1].embed_text == "Opening hours: We are open from 7 to 6 on weekdays."


def test_markdown_to_text_keeps_plain_prose() -> None:
    assert markdown_to_text("Just a sentence.") == "Just a sentence."


def test_document_text_decodes_and_rejects() -> None:
    assert document_text("héllo\x00".encode(), "text/plain; charset=utf-8") == "héllo"
    assert document_text(b"# T\n\nbody", "text/x-markdown") == "# T\n\nbody"
    with pytest.raises(ValidationFailed):
        document_text(b"\xff\xfe\xfa", "text/plain")
    with pytest.raises(UnsupportedFormat):
        document_text(b"x", "image/png")


def test_pdf_text_is_extracted_and_chunked() -> None:
    pdf = make_pdf(["Parking is free behind the building.", "The museum opens at nine."])
    text = pdf_to_text(pdf)
    assert "Parking is free behind the building." in text
    passages = chunk_document(document_text(pdf, "application/pdf"))
    assert any("museum opens at nine" in p.text for p in passages)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"not a pdf at all", UnsupportedFormat),
        (b"%PDF-1.4\n garbage without any objects", UnsupportedFormat),
    ],
)
def test_bad_pdfs_are_clear_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        pdf_to_text(data)


def test_pdf_without_text_is_rejected() -> None:
    with pytest.raises(ValidationFailed, match="no extractable text"):
        pdf_to_text(make_pdf([]))
