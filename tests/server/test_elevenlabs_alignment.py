"""Alignment on ElevenLabs' TTS sockets as the two big agent frameworks read it.

Pipecat (no ``sync_alignment``) adds each message's chunk-relative times to a running clock and
closes a word only on the space after it. LiveKit (``sync_alignment=true``) joins every
message's characters and times and reads them as offsets from the start of its context. Each
test replays one client's reading over what the server sent and checks every word gets a time,
in order, inside the audio.
"""

from __future__ import annotations

from typing import Any

from server.test_elevenlabs_streams import INIT, MULTI, STREAM, Message, _audio, _exchange

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture
PCM = "output_format=pcm_16000"


def _alignments(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["alignment"] for m in received if m.get("alignment")]


def _seconds(received: list[dict[str, Any]]) -> float:
    return len(_audio(received)) / 2 / 16000


def _pipecat_words(received: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Words and start times as Pipecat's socket service derives them: a word whose space has
    not come by the end is never timed."""
    clock = 0.0
    words: list[tuple[str, float]] = []
    word, word_at = "", 0.0
    for a in _alignments(received):
        for char, start_ms in zip(a["chars"], a["charStartTimesMs"], strict=True):
            if char == " ":
                if word:
                    words.append((word, word_at))
                word = ""
            else:
                if not word:
                    word_at = clock + start_ms / 1000
                word += char
        if a["chars"]:
            clock += (a["charStartTimesMs"][-1] + a["charDurationsMs"][-1]) / 1000
    return words


def _livekit_timeline(received: list[dict[str, Any]]) -> tuple[str, list[int], list[int]]:
    """The context's text with each character's start and end, read as LiveKit does."""
    text, starts, ends = "", [], []
    for a in _alignments(received):
        text += "".join(a["chars"])
        starts += a["charStartTimesMs"]
        ends += [s + d for s, d in zip(a["charStartTimesMs"], a["charDurationsMs"], strict=True)]
    return text, starts, ends


async def test_multi_stream_pipecat_times_every_word(server: RunningServer) -> None:
    # Pipecat's flow: a context opened with a space, sentences without trailing spaces, flush,
    # close_context.
    said = ["The weather is nice today.", " Please call me back tomorrow morning."]
    msgs: list[Message] = [{"text": " ", "context_id": "c1"}]
    msgs += [{"text": s, "context_id": "c1"} for s in said]
    msgs += [{"context_id": "c1", "flush": True}, {"context_id": "c1", "close_context": True}]
    msgs.append({"close_socket": True})
    received, code = await _exchange(server, MULTI, msgs, query=f"{PCM}&model_id=eleven_v3")
    assert code == 1000 and received[-1] == {"isFinal": True, "contextId": "c1"}
    audio_msgs = [m for m in received if m.get("audio")]
    assert len(audio_msgs) >= 2 and len(audio_msgs) == len(received) - 1
    for m in audio_msgs:
        a = m["alignment"]
        assert a["charStartTimesMs"][0] < 400, "each message's times start near 0"
        end = a["charStartTimesMs"][-1] + a["charDurationsMs"][-1]
        assert end <= len(_audio([m])) / 32 + 1, "and stay inside its own audio"
    assert _alignments(received)[-1]["chars"][-1] == " ", "the last word is closed"
    words = _pipecat_words(received)
    assert [w for w, _ in words] == "".join(said).split()
    times = [t for _, t in words]
    assert times == sorted(times) and times[-1] < _seconds(received)


async def test_multi_stream_sync_alignment_runs_on_through_the_context(
    server: RunningServer,
) -> None:
    # LiveKit's flow: sync_alignment=true, one word a message (each with its space), flush,
    # close_context.
    text = "Hello there, this is a test. The weather is nice today. "
    msgs: list[Message] = [{"text": " ", "context_id": "lk", "voice_settings": None}]
    msgs += [{"text": w + " ", "context_id": "lk"} for w in text.split()]
    msgs += [{"context_id": "lk", "flush": True}, {"context_id": "lk", "close_context": True}]
    msgs.append({"close_socket": True})
    query = f"{PCM}&sync_alignment=true&auto_mode=false&inactivity_timeout=30"
    received, code = await _exchange(server, MULTI, msgs, query=query)
    assert code == 1000
    assert len([m for m in received if m.get("audio")]) >= 3
    chars, starts, ends = _livekit_timeline(received)
    assert chars == text
    assert starts == sorted(starts), "times never run backwards"
    duration_ms = _seconds(received) * 1000
    assert duration_ms * 0.6 < ends[-1] <= duration_ms + 1, (ends[-1], duration_ms)
    assert starts[chars.index("weather")] > 600, "later sentences at their place in the audio"


async def test_stream_input_sync_alignment_and_the_closing_space(server: RunningServer) -> None:
    said = "Hello there. How are you"  # no space at the end: closing adds it
    msgs: list[Message] = [INIT, {"text": said, "try_trigger_generation": True}, {"text": ""}]
    plain, code = await _exchange(server, STREAM, msgs)
    assert code == 1000 and plain[-1] == {"isFinal": True}
    assert [w for w, _ in _pipecat_words(plain)] == said.split()
    synced, code = await _exchange(server, STREAM, msgs, query=f"{PCM}&sync_alignment=true")
    assert code == 1000
    chars, starts, ends = _livekit_timeline(synced)
    assert chars == said + " "
    assert starts == sorted(starts) and ends[-1] <= _seconds(synced) * 1000 + 1
    assert starts[chars.index("How")] > 300


async def test_flush_without_a_space_keeps_words_apart(server: RunningServer) -> None:
    msgs: list[Message] = [
        {"text": "Good morning", "context_id": "f"},
        {"context_id": "f", "flush": True},
        {"text": "everyone", "context_id": "f"},
        {"context_id": "f", "close_context": True},
        {"close_socket": True},
    ]
    received, code = await _exchange(server, MULTI, msgs)
    assert code == 1000
    assert "".join("".join(a["chars"]) for a in _alignments(received)) == "Good morning everyone "
    assert [w for w, _ in _pipecat_words(received)] == ["Good", "morning", "everyone"]
