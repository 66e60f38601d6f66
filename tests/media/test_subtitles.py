from __future__ import annotations

from collections.abc import Callable

import pytest

from voicestream.errors import ValidationFailed
from voicestream.media.subtitles import Cue, cues_from_words, parse_srt, parse_vtt, to_srt, to_vtt

CUES = [
    Cue(0.0, 1.5, "Hello there."),
    Cue(1.75, 3.2004, "General <Kenobi> & co"),
    Cue(3661.25, 3662.0, "  an hour\n\nlater  "),
]


def test_srt() -> None:
    assert to_srt(CUES) == (
        "1\n"
        "00:00:00,000 --> 00:00:01,500\n"
        "Hello there.\n"
        "\n"
        "2\n"
        "00:00:01,750 --> 00:00:03,200\n"
        "General <Kenobi> & co\n"
        "\n"
        "3\n"
        "01:01:01,250 --> 01:01:02,000\n"
        "an hour\n"
        "later\n"
    )


def test_vtt() -> None:
    assert to_vtt(CUES) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.500\n"
        "Hello there.\n"
        "\n"
        "00:00:01.750 --> 00:00:03.200\n"
        "General &lt;Kenobi&gt; &amp; co\n"
        "\n"
        "01:01:01.250 --> 01:01:02.000\n"
        "an hour\n"
        "later\n"
    )


def test_empty_documents() -> None:
    assert to_srt([]) == ""
    assert to_vtt([]) == "WEBVTT\n"


def test_words_group_into_cues_by_length_pause_and_sentence() -> None:
    words = [
        ("The", 0.0, 0.2),
        ("quick", 0.25, 0.5),
        ("brown", 0.55, 0.8),
        ("fox", 0.85, 1.0),
        ("jumps", 1.05, 1.3),
        ("over", 1.35, 1.5),
        ("the", 1.55, 1.6),
        ("lazy", 1.65, 1.9),
        ("dog.", 1.95, 2.3),
        ("Then", 2.4, 2.6),
        ("it", 2.65, 2.7),
        ("slept", 4.0, 4.4),  # a long pause before this word
        ("", 4.5, 4.5),
    ]
    assert cues_from_words(words, max_chars=20) == [
        Cue(0.0, 1.0, "The quick brown fox"),  # "... fox jumps" would be 25 characters
        Cue(1.05, 1.9, "jumps over the lazy"),
        Cue(1.95, 2.3, "dog."),
        Cue(2.4, 2.7, "Then it"),
        Cue(4.0, 4.4, "slept"),
    ]


def test_long_word_gets_its_own_cue_and_defaults_fit_one_line() -> None:
    words = [("a", 0.0, 0.1), ("supercalifragilistic", 0.2, 0.9), ("b", 1.0, 1.1)]
    assert cues_from_words(words, max_chars=10) == [
        Cue(0.0, 0.1, "a"),
        Cue(0.2, 0.9, "supercalifragilistic"),
        Cue(1.0, 1.1, "b"),
    ]
    line = [(f"w{i}", i * 0.1, i * 0.1 + 0.05) for i in range(30)]
    cues = cues_from_words(line)
    assert all(len(c.text) <= 42 for c in cues)
    assert " ".join(c.text for c in cues) == " ".join(w for w, _, _ in line)
    assert cues[0].start == 0.0 and cues[-1].end == line[-1][2]


CLEANED = [
    Cue(0.0, 1.5, "Hello there."),
    Cue(1.75, 3.2, "General <Kenobi> & co"),
    Cue(3661.25, 3662.0, "an hour\nlater"),
]


def test_our_srt_and_vtt_read_back_as_the_cues_written() -> None:
    assert parse_srt(to_srt(CUES)) == CLEANED
    assert parse_vtt(to_vtt(CUES)) == CLEANED
    assert parse_srt("") == []
    assert parse_vtt("WEBVTT\n") == []


def test_srt_as_other_tools_write_it() -> None:
    document = (
        "\ufeff1\r\n00:00:01,5 --> 00:00:02.250\r\n<i>Windows</i> line ends\r\n\r\n"
        "\r\n\r\n"  # extra blank lines between blocks
        "00:01:00,000 --> 00:01:01,000\r\nno counter line\r\n"
    )
    assert parse_srt(document) == [
        Cue(1.5, 2.25, "<i>Windows</i> line ends"),
        Cue(60.0, 61.0, "no counter line"),
    ]


def test_vtt_markup_identifiers_notes_and_short_timestamps() -> None:
    document = (
        "WEBVTT - a title\n\n"
        "NOTE written by hand\nover two lines\n\n"
        "STYLE\n::cue { color: yellow }\n\n"
        "intro\n00:01.000 --> 00:02.500 align:start position:10%\n"
        "<v Roger Bingham>We are in <b>New</b> York&nbsp;City &amp; more\n\n"
        "01:00:00.000 --> 01:00:01.000\n<c.loud>Two</c>\n<00:00:00.500>lines\n"
    )
    assert parse_vtt(document) == [
        Cue(1.0, 2.5, "We are in New York\u00a0City & more"),
        Cue(3600.0, 3601.0, "Two\nlines"),
    ]


GOOD_SRT = "1\n00:00:00,000 --> 00:00:01,000\nfirst\n\n"
GOOD_VTT = "WEBVTT\n\n00:00.000 --> 00:01.000\nfirst\n\n"


@pytest.mark.parametrize(
    ("parse", "document", "line", "message"),
    [
        (parse_srt, "1\nnot a timing\nhello\n", 2, "line 2: bad timing 'not a timing'"),
        (
            parse_srt,
            GOOD_SRT + "\n2\n00:00:01,000 -> 00:00:02\nhello\n",
            7,
            "line 7: bad timing '00:00:01,000 -> 00:00:02'",
        ),
        (parse_srt, GOOD_SRT + "2\n00:00:02,000 --> 00:00:01,000\nback\n", 6, "before it starts"),
        (parse_srt, GOOD_SRT + "two\n00:00:01,000 --> 00:00:02,000\nx\n", 5, "'two' is not a"),
        (parse_srt, GOOD_SRT + "2\n00:00:01,000 --> 00:00:02,000\n", 6, "has no text"),
        (parse_srt, GOOD_SRT + "just some words\n", 5, "expected a cue number or a timing"),
        (parse_srt, GOOD_SRT + "2\n", 5, "not followed by a timing line"),
        (parse_srt, "\r\n\r\n" + GOOD_SRT.replace("00:00:00", "00:00:05"), 4, "before"),
        (parse_vtt, "00:01.000 --> 00:02.000\nno header\n", 1, "must start with WEBVTT"),
        (parse_vtt, "WEBVTTX\n", 1, "WEBVTT"),
        (parse_vtt, "\ufeff\n\nhello\n", 3, "must start with WEBVTT"),
        (parse_vtt, GOOD_VTT + "00:03.000 --> 00:02.000\nbackwards\n", 6, "before it starts"),
        (parse_vtt, GOOD_VTT + "cue-2\n00:03.000 --> 00:0x.000\nbad\n", 7, "bad timing"),
        (parse_vtt, GOOD_VTT + "00:03.000 --> 00:04.000\n", 6, "has no text"),
        (parse_vtt, GOOD_VTT + "just words\nmore words\n", 6, "expected a cue timing line"),
    ],
)
def test_bad_subtitles_are_refused_naming_the_line(
    parse: Callable[[str], list[Cue]], document: str, line: int, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message) as caught:
        parse(document)
    assert str(caught.value).startswith(f"line {line}: ")
    assert caught.value.details == {"line": line}


def test_cues_out_of_time_order_are_refused_and_overlap_only_on_request() -> None:
    unsorted = "00:00:05,000 --> 00:00:06,000\nlate\n\n00:00:01,000 --> 00:00:02,000\nearly\n"
    with pytest.raises(ValidationFailed, match=r"line 4: .*time order"):
        parse_srt(unsorted)
    with pytest.raises(ValidationFailed, match=r"line 6: .*time order"):
        parse_vtt("WEBVTT\n\n" + unsorted.replace(",", "."))
    overlapping = "1\n00:00:01,000 --> 00:00:03,000\na\n\n2\n00:00:02,000 --> 00:00:04,000\nb\n"
    # Overlaps are legal in both formats (two speakers at once), so only callers that need
    # one line at a time refuse them.
    assert [c.text for c in parse_srt(overlapping)] == ["a", "b"]
    with pytest.raises(ValidationFailed, match=r"line 6: .*before the cue above it ends"):
        parse_srt(overlapping, allow_overlap=False)
    with pytest.raises(ValidationFailed, match="before the cue above it ends"):
        parse_vtt("WEBVTT\n\n" + overlapping.replace(",", "."), allow_overlap=False)


def test_valid_documents_with_loose_layout_still_parse() -> None:
    # No cue numbers, CRLF line ends, whitespace-only separator lines, a VTT header with
    # metadata, NOTE blocks and cue identifiers.
    srt = "00:00:01,000 --> 00:00:02,000\r\nhi\r\n \r\n00:00:03,000 --> 00:00:04,5\r\nthere\r\n"
    assert parse_srt(srt) == [Cue(1.0, 2.0, "hi"), Cue(3.0, 4.5, "there")]
    vtt = (
        "WEBVTT - a title\nKind: captions\n\nNOTE a comment\nover lines\n\n"
        "intro\n00:01.000 --> 00:02.000 align:start\n<v Bob>hi</v> &amp; bye\n"
    )
    assert parse_vtt(vtt) == [Cue(1.0, 2.0, "hi & bye")]


def test_cue_times_follow_the_words_they_hold() -> None:
    words = [(f"w{i}.", i * 0.5, i * 0.5 + 0.3) for i in range(20)]
    cues = parse_vtt(to_vtt(cues_from_words(words)))
    spans = {w: (s, e) for w, s, e in words}
    for cue in cues:
        held = cue.text.split()
        first, last = held[0], held[-1]
        assert cue.start == pytest.approx(spans[first][0], abs=0.001)
        assert cue.end == pytest.approx(spans[last][1], abs=0.001)
