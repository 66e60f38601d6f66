"""``voicestream audit verify`` and ``audit list`` as a user runs them, and the entries the key
commands leave."""

from __future__ import annotations

import json

from fixtures_services import cli_env, own_database, run_cli, unique_name
from voicestream.store.embedded import ServiceURLs


async def test_key_commands_are_recorded_and_listed(embedded_services: ServiceURLs) -> None:
    env = cli_env(DATABASE_URL=embedded_services.database_url)
    workspace = unique_name("audit-cli")
    created = await run_cli("keys", "create", "--workspace", workspace, "--role", "admin", env=env)
    assert created.returncode == 0, created.stderr
    prefix = created.stdout.strip()[:12]
    revoked = await run_cli("keys", "revoke", prefix, env=env)
    assert revoked.returncode == 0, revoked.stderr

    listed = await run_cli("audit", "list", "--workspace", workspace, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("key.revoked", "cli"),
        ("key.created", "cli"),
    ]
    assert {e["details"]["prefix"] for e in entries} == {prefix}
    assert entries[1]["details"]["role"] == "admin"
    assert created.stdout.strip() not in listed.stdout  # the key itself is never recorded

    table = await run_cli("audit", "list", "--workspace", workspace, "--limit", "1", env=env)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["ID", "TIME", "ACTOR", "ACTION"]
    assert len(rows) == 1 and "key.revoked" in rows[0]


async def test_list_refuses_bad_arguments(embedded_services: ServiceURLs) -> None:
    env = cli_env(DATABASE_URL=embedded_services.database_url)
    unknown = await run_cli("audit", "list", "--workspace", unique_name("nobody"), env=env)
    assert unknown.returncode == 1 and "no workspace" in unknown.stderr
    for limit in ("0", "201", "x"):
        bad = await run_cli("audit", "list", "--workspace", "w", "--limit", limit, env=env)
        assert bad.returncode == 2, (limit, bad.stderr)


async def test_verify_reports_an_intact_chain_then_names_the_changed_entry(
    embedded_services: ServiceURLs,
) -> None:
    async with own_database(embedded_services) as database:
        env = cli_env(DATABASE_URL=database.url)
        for _ in range(3):
            made = await run_cli("keys", "create", "--workspace", "audited", env=env)
            assert made.returncode == 0, made.stderr
        intact = await run_cli("audit", "verify", env=env)
        assert intact.returncode == 0, intact.stderr
        assert intact.stdout.startswith("ok, 3 entries")

        second = await database.pool.fetchval("SELECT id FROM audit_log ORDER BY id OFFSET 1")
        await database.admin.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await database.admin.execute(
            "UPDATE audit_log SET actor_display = 'nobody' WHERE id = $1", second
        )
        broken = await run_cli("audit", "verify", env=env)
        assert broken.returncode == 1
        assert f"broken at entry {second}:" in broken.stderr
        assert "1 entries before it verified" in broken.stderr
