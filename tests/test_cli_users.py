"""``voicestream users``: the first owner of a fresh install, and who is a member of what."""

from __future__ import annotations

import asyncio
import json

from fixtures_services import CLI, CliResult, cli_env, run_cli, unique_name
from voicestream.identity.passwords import Passwords
from voicestream.store import db
from voicestream.store.embedded import ServiceURLs
from voicestream.store.users import UserRepository


async def _run(*args: str, env: dict[str, str], stdin: bytes) -> CliResult:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 90)
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


async def test_users_create_with_a_password_from_stdin(
    embedded_services: ServiceURLs, db_pool: db.Pool
) -> None:
    env = cli_env(DATABASE_URL=embedded_services.database_url)
    workspace, address = unique_name("people"), f"{unique_name('owner')}@example.com"
    password = "the first owner's password"
    created = await _run(
        "users",
        "create",
        "--email",
        address,
        "--workspace",
        workspace,
        "--password-stdin",
        env=env,
        stdin=password.encode() + b"\n",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == "" and password not in created.stderr
    assert f"owner of workspace {workspace}" in created.stderr

    users = UserRepository(db_pool)
    user = await users.by_email(address.upper())
    assert user is not None and user.email_verified_at is not None  # an operator vouched
    assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
    assert (await Passwords().verify(user.password_hash, password)).ok
    assert [(m.workspace_name, m.role) for m in await users.memberships(user.id)] == [
        (workspace, "owner")
    ]

    # The same address again with a password: refused, nothing changed.
    again = await _run(
        "users",
        "create",
        "--email",
        address,
        "--workspace",
        workspace,
        "--password-stdin",
        env=env,
        stdin=b"another password entirely\n",
    )
    assert again.returncode == 1 and "already" in again.stderr
    weak = await _run(
        "users", "create", "--email", f"x{address}", "--password-stdin", env=env, stdin=b"short\n"
    )
    assert weak.returncode == 2 and "at least 10" in weak.stderr
    bad = await run_cli("users", "create", "--email", "not-an-address", env=env)
    assert bad.returncode == 2 and "e-mail" in bad.stderr


async def test_users_create_generates_a_password_and_list_shows_members(
    embedded_services: ServiceURLs, db_pool: db.Pool
) -> None:
    env = cli_env(DATABASE_URL=embedded_services.database_url)
    first, second = unique_name("people"), unique_name("people")
    address = f"{unique_name('editor')}@example.com"
    created = await run_cli(
        "users", "create", "--email", address, "--workspace", first, "--role", "editor", env=env
    )
    assert created.returncode == 0, created.stderr
    (password,) = created.stdout.splitlines()  # printed once, alone, for $(…)
    assert len(password) >= 20 and password not in created.stderr
    user = await UserRepository(db_pool).by_email(address)
    assert user is not None and user.password_hash is not None
    assert (await Passwords().verify(user.password_hash, password)).ok

    # An existing user joins another workspace; their password stays.
    joined = await run_cli(
        "users", "create", "--email", address, "--workspace", second, "--role", "viewer", env=env
    )
    assert joined.returncode == 0 and joined.stdout == "", joined.stderr
    assert "existing user" in joined.stderr

    listed = await run_cli("users", "list", "--workspace", second, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert (entry["email"], entry["workspace"], entry["role"]) == (address, second, "viewer")
    assert entry["email_verified"] is True and "password" not in listed.stdout
    table = await run_cli("users", "list", env=env)
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["EMAIL", "WORKSPACE", "ROLE"]
    assert sum(address in row for row in rows) == 2
