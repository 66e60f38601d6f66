"""Speech history against the real session database: paging, scoping, atomic writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from fixtures_services import unique_name
from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store.history import (
    HistoryRepository,
    NewHistoryItem,
    is_history_id,
    new_history_id,
)
from voicestream.store.keys import ApiKeyRepository, Principal
from voicestream.store.usage import UsageRepository


@pytest.fixture
def history(db_pool: db.Pool) -> HistoryRepository:
    return HistoryRepository(db_pool)


async def _principal(db_pool: db.Pool, prefix: str) -> Principal:
    _, plain = await ApiKeyRepository(db_pool).create(workspace=unique_name(prefix))
    principal = await ApiKeyRepository(db_pool).authenticate(plain)
    assert principal is not None
    return principal


def _new(text: str, **kwargs: object) -> NewHistoryItem:
    fields: dict[str, object] = {
        "voice_id": "slt",
        "voice_name": "slt",
        "voice_category": "premade",
        "model_id": "eleven_flash_v2_5",
        "output_format": "mp3_44100_128",
        "content_type": "audio/mpeg",
        "settings": {"stability": 0.5},
        **kwargs,
    }
    return NewHistoryItem(text=text, **fields)  # type: ignore[arg-type]


def test_ids_look_like_elevenlabs_ids() -> None:
    ids = {new_history_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 20 and i.isalnum() and is_history_id(i) for i in ids)
    for bad in ("", "a/b", "x" * 65, "ab-cd", "é"):
        assert not is_history_id(bad)


async def test_add_get_audio_and_counts(db_pool: db.Pool, history: HistoryRepository) -> None:
    who = await _principal(db_pool, "hist-add")
    usage = UsageRepository(db_pool)
    await usage.record(who, "tts_characters", 100)
    await usage.record(who, "tts_characters", len("Hello there."))
    item = await history.add(who, _new("Hello there.", request_id="req1"), b"ID3audio")
    assert is_history_id(item.id)
    assert item.workspace_id == who.workspace_id and item.api_key_id == who.key_id
    assert (item.character_count_change_from, item.character_count_change_to) == (100, 112)
    assert item.characters == len("Hello there.")
    assert item.audio_bytes == 8 and item.settings == {"stability": 0.5}

    got = await history.get(who.workspace_id, item.id)
    assert got == item
    same, audio = await history.get_audio(who.workspace_id, item.id)
    assert same == item and audio == b"ID3audio"
    assert got.to_dict()["text"] == "Hello there."


async def test_id_given_up_front_is_kept(db_pool: db.Pool, history: HistoryRepository) -> None:
    who = await _principal(db_pool, "hist-id")
    wanted = new_history_id()
    item = await history.add(who, _new("Up front.", id=wanted), b"x")
    assert item.id == wanted
    with pytest.raises(ValidationFailed):
        await history.add(who, _new("Bad id.", id="not/an/id"), b"x")


async def test_failed_add_leaves_nothing(db_pool: db.Pool, history: HistoryRepository) -> None:
    """The item and its audio go in one transaction: a failure keeps neither."""
    who = await _principal(db_pool, "hist-atomic")
    first = await history.add(who, _new("First."), b"one")
    with pytest.raises(db.UniqueViolationError):
        # Same id again: the item insert fails, so the audio insert must not survive either.
        await history.add(who, _new("Second.", id=first.id), b"two")
    _, audio = await history.get_audio(who.workspace_id, first.id)
    assert audio == b"one"
    rows = await db_pool.fetchval(
        "SELECT count(*) FROM history_items WHERE workspace_id = $1", who.workspace_id
    )
    assert rows == 1

    # The item row is written, then the audio cannot be (a str is no bytea): both roll back.
    broken_id = new_history_id()
    with pytest.raises((db.PostgresError, ValueError, TypeError)):
        await history.add(who, _new("Broken.", id=broken_id), "not bytes")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await history.get(who.workspace_id, broken_id)


async def test_paging_newest_first_with_cursor(
    db_pool: db.Pool, history: HistoryRepository
) -> None:
    who = await _principal(db_pool, "hist-page")
    added = [await history.add(who, _new(f"Item number {n}."), bytes([n])) for n in range(7)]
    newest_first = [i.id for i in reversed(added)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await history.list(who.workspace_id, page_size=3, start_after=cursor)
        seen += [i.id for i in page.items]
        pages += 1
        if not page.has_more:
            break
        cursor = page.items[-1].id
    assert seen == newest_first and pages == 3

    oldest = await history.list(who.workspace_id, page_size=2, sort_direction="asc")
    assert [i.id for i in oldest.items] == [added[0].id, added[1].id] and oldest.has_more
    after = await history.list(
        who.workspace_id, page_size=100, sort_direction="asc", start_after=added[4].id
    )
    assert [i.id for i in after.items] == [added[5].id, added[6].id] and not after.has_more


async def test_filters(db_pool: db.Pool, history: HistoryRepository) -> None:
    who = await _principal(db_pool, "hist-filter")
    a = await history.add(who, _new("The weather is nice."), b"a")
    b = await history.add(who, _new("Call me 100% back_now.", voice_id="rms"), b"b")
    c = await history.add(who, _new("Weather again.", model_id="eleven_v3", source="STS"), b"c")
    ws = who.workspace_id

    async def ids(**kwargs: object) -> set[str]:
        page = await history.list(ws, **kwargs)  # type: ignore[arg-type]
        return {i.id for i in page.items}

    assert await ids(voice_id="rms") == {b.id}
    assert await ids(model_id="eleven_v3") == {c.id}
    assert await ids(search="WEATHER") == {a.id, c.id}
    assert await ids(search="100%") == {b.id}  # LIKE wildcards are literal
    assert await ids(search="0%_") == set()
    assert await ids(search="k_n") == {b.id}
    assert await ids(source="STS") == {c.id}
    assert await ids(source="TTS") == {a.id, b.id}
    now = datetime.now(UTC)
    assert await ids(date_after=now + timedelta(minutes=5)) == set()
    assert await ids(date_before=now + timedelta(minutes=5)) == {a.id, b.id, c.id}
    assert await ids(date_before=a.created_at) == set()  # exclusive
    assert a.id in await ids(date_after=a.created_at)  # inclusive


async def test_workspaces_are_isolated(db_pool: db.Pool, history: HistoryRepository) -> None:
    owner = await _principal(db_pool, "hist-owner")
    other = await _principal(db_pool, "hist-other")
    item = await history.add(owner, _new("Private words."), b"secret")
    for call in (history.get, history.get_audio, history.delete):
        with pytest.raises(NotFound):
            await call(other.workspace_id, item.id)
    with pytest.raises(NotFound) as info:
        await history.get_audios(other.workspace_id, [item.id])
    assert info.value.details == {"history_item_ids": [item.id]}
    assert (await history.list(other.workspace_id)).items == []
    with pytest.raises(ValidationFailed):
        await history.list(other.workspace_id, start_after=item.id)
    # Still there for its owner.
    assert (await history.get(owner.workspace_id, item.id)).text == "Private words."


async def test_get_audios_in_order_and_missing_named(
    db_pool: db.Pool, history: HistoryRepository
) -> None:
    who = await _principal(db_pool, "hist-many")
    x = await history.add(who, _new("X."), b"xx")
    y = await history.add(who, _new("Y."), b"yy")
    got = await history.get_audios(who.workspace_id, [y.id, x.id, y.id])
    assert [(i.id, a) for i, a in got] == [(y.id, b"yy"), (x.id, b"xx")]
    with pytest.raises(NotFound) as info:
        await history.get_audios(who.workspace_id, [x.id, "nope", "bad/id"])
    assert set(info.value.details["history_item_ids"]) == {"nope", "bad/id"}


async def test_delete_removes_item_and_audio(db_pool: db.Pool, history: HistoryRepository) -> None:
    who = await _principal(db_pool, "hist-del")
    item = await history.add(who, _new("Gone soon."), b"bye")
    await history.delete(who.workspace_id, item.id)
    with pytest.raises(NotFound):
        await history.get(who.workspace_id, item.id)
    with pytest.raises(NotFound):
        await history.delete(who.workspace_id, item.id)
    left = await db_pool.fetchval(
        "SELECT count(*) FROM history_audio WHERE history_item_id = $1", item.id
    )
    assert left == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page_size": 0},
        {"page_size": 1001},
        {"page_size": True},
        {"sort_direction": "sideways"},
        {"start_after": "doesNotExist123"},
        {"start_after": "../etc"},
    ],
)
async def test_bad_list_arguments(
    db_pool: db.Pool, history: HistoryRepository, kwargs: dict[str, object]
) -> None:
    who = await _principal(db_pool, "hist-bad")
    with pytest.raises(ValidationFailed):
        await history.list(who.workspace_id, **kwargs)  # type: ignore[arg-type]


async def test_malformed_ids_are_not_found(history: HistoryRepository) -> None:
    ws = UUID(int=0)
    for bad in ("", "a/b", "x" * 65, "'; DROP TABLE history_items; --"):
        with pytest.raises(NotFound):
            await history.get(ws, bad)
        with pytest.raises(NotFound):
            await history.delete(ws, bad)
