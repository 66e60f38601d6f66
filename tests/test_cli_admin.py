"""``voicestream admin ...`` and ``keys create --operator`` as the server's operator runs them.

The key the command line mints reads the operator's API and nothing else; the workspace
commands show what ``/v1/operator/...`` shows; bad arguments exit 2, an unknown workspace 1.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from fixtures_services import cli_env, run_cli, unique_name
from helpers import StartedServer
from voicestream.rest.resources import POOL, USAGE
from voicestream.store.workspaces import find_workspace


async def _status(server: StartedServer, path: str, key: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + path, headers=server.headers(key)) as r:
            return r.status


async def test_an_operator_key_from_the_command_line_reads_the_operator_api_only(
    server: StartedServer,
) -> None:
    env = cli_env(DATABASE_URL=server.settings.database_url or "")
    name = unique_name("ops")
    created = await run_cli("keys", "create", "--operator", "--name", name, env=env)
    assert created.returncode == 0, created.stderr
    (key,) = created.stdout.splitlines()
    assert key not in created.stderr
    assert await _status(server, "/v1/operator/workspaces?limit=1", key) == 200
    assert await _status(server, "/v1/voices", key) == 403

    listed = await run_cli("admin", "keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (entry,) = [k for k in json.loads(listed.stdout) if k["name"] == name]
    assert entry["prefix"] == key[:12] and entry["role"] == "operator"
    assert entry["revoked_at"] is None

    revoked = await run_cli("admin", "keys", "revoke", key[:12], env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert await _status(server, "/v1/operator/usage", key) == 401
    actions = await server.app[POOL].fetch(
        "SELECT action, workspace_id FROM audit_log WHERE target_id = $1 ORDER BY id",
        entry["id"],
    )
    assert [(r["action"], r["workspace_id"]) for r in actions] == [
        ("operator_key.created", None),
        ("operator_key.revoked", None),
    ]


async def test_workspaces_and_their_usage_from_the_command_line(server: StartedServer) -> None:
    env = cli_env(DATABASE_URL=server.settings.database_url or "")
    workspace = unique_name("tenant")
    made = await run_cli("keys", "create", "--workspace", workspace, env=env)
    assert made.returncode == 0, made.stderr
    workspace_id = await find_workspace(server.app[POOL], workspace)
    assert workspace_id is not None
    await server.app[USAGE].record(workspace_id, "stt_seconds", 9)

    listed = await run_cli("admin", "workspaces", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = [w for w in json.loads(listed.stdout) if w["name"] == workspace]
    assert row["id"] == str(workspace_id) and row["live_keys"] == 1 and row["members"] == 0
    assert row["usage"]["stt_seconds"] == 9 and row["plan"] == "free"

    for ident in (workspace, str(workspace_id)):
        one = await run_cli("admin", "workspace", "usage", ident, "--json", env=env)
        assert one.returncode == 0, one.stderr
        summary: dict[str, Any] = json.loads(one.stdout)
        assert summary["usage"]["stt_seconds"] == 9, summary
    past = await run_cli(
        "admin",
        "workspace",
        "usage",
        workspace,
        "--since",
        "2020-01-01",
        "--until",
        "2020-02-01",
        env=env,
    )
    assert past.returncode == 0 and workspace in past.stdout, past.stderr
    assert past.stdout.split("\n")[1].split()[5:] == ["0", "0", "0"], past.stdout


async def test_admin_commands_refuse_bad_arguments(server: StartedServer) -> None:
    env = cli_env(DATABASE_URL=server.settings.database_url or "")
    unknown = await run_cli("admin", "workspace", "usage", unique_name("nobody"), env=env)
    assert unknown.returncode == 1 and "no workspace" in unknown.stderr
    for args in (
        ("admin", "workspaces", "list", "--since", "last week"),
        ("admin", "workspaces", "list", "--since", "2026-02-01", "--until", "2026-01-01"),
        ("keys", "create", "--operator", "--role", "admin"),
        ("admin", "keys", "create", "--expires-in", "0d"),
    ):
        bad = await run_cli(*args, env=env)
        assert bad.returncode == 2, (args, bad.stderr)
    missing = await run_cli("admin", "keys", "revoke", "vs_nothing12", env=env)
    assert missing.returncode == 1, missing.stderr
