"""The ``voicestream`` command: serve, migrate, manage API keys, grant credits, list the
models.

Database commands use ``DATABASE_URL`` when it is set, otherwise the embedded PostgreSQL
of ``--data-dir``: they join it if a server (or anything else) already runs it, and start
it just for the command if not.

Exit codes: 0 success, 1 failure (not found, service errors), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar
from uuid import UUID

from voicestream.billing.ledger import MAX_GRANT, CreditPolicy, grant
from voicestream.config import ConfigError, Settings, load_settings
from voicestream.errors import BadRequest, Conflict, NotFound, VoiceStreamError
from voicestream.store import db
from voicestream.store.audit import (
    CLI_ACTOR,
    MAX_PAGE_SIZE,
    AuditEntry,
    AuditFilters,
    AuditLog,
)
from voicestream.store.keys import ROLES, SCOPES, ApiKey, ApiKeyRepository
from voicestream.store.migrate import migrate
from voicestream.store.services import open_database
from voicestream.store.users import Membership, User, UserRepository
from voicestream.store.workspaces import DEFAULT_WORKSPACE, find_workspace

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Handler = Callable[[Settings, argparse.Namespace], int]


class _Key(Protocol):
    """What the key commands need of a key, workspace or operator."""

    @property
    def id(self) -> UUID: ...

    def to_dict(self) -> dict[str, object]: ...


KeyT = TypeVar("KeyT", bound=_Key)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # optional: asyncio's own loop works the same, a little slower
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _run(coro: Coroutine[Any, Any, int]) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)


# --- commands -----------------------------------------------------------------------------


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: the server stack (aiohttp, engines, models) is heavy, and only this
    # command needs it; key management stays quick to start.
    from voicestream.server.main import run_server

    # A crash in native code (an engine's C library) kills the process before any logging
    # can run; this still leaves every thread's Python stack on stderr, beside the log.
    faulthandler.enable()
    run_server(settings)
    return EXIT_OK


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from voicestream.server.worker_main import run_worker

    faulthandler.enable()
    run_worker(settings, concurrency=args.concurrency)
    return EXIT_OK


def _batch_submit(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from voicestream.batch.submit import BatchError, dump, run_batch

    api_key = args.api_key or os.environ.get("VOICESTREAM_API_KEY")
    if not api_key:
        print("voicestream: no API key: pass --api-key or set VOICESTREAM_API_KEY", file=sys.stderr)
        return EXIT_USAGE

    async def go() -> int:
        try:
            jobs = await run_batch(
                args.spec,
                server=args.server or os.environ.get("VOICESTREAM_URL"),
                api_key=api_key,
                wait=args.wait,
                out_dir=args.out,
            )
        except BatchError as exc:
            print(f"voicestream: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(dump(jobs))
        return EXIT_OK

    return _run(go())


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        # migrate_schema=False: the point is to run (and report) the migration here.
        async with open_database(settings, migrate_schema=False) as database:
            applied = await migrate(database.pool)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return EXIT_OK

    return _run(go())


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    if args.operator:
        # Imported here: the admin commands build on this module's helpers.
        from voicestream.cli_admin import create_operator_key

        if args.workspace != DEFAULT_WORKSPACE or args.role != "owner" or args.scopes:
            print(
                "voicestream: an operator key belongs to no workspace and has no role or "
                "scopes: drop --workspace, --role and --scopes",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return create_operator_key(settings, args)

    async def go() -> int:
        async with open_database(settings) as database:
            keys = ApiKeyRepository(database.pool)
            key, plaintext = await keys.create(
                workspace=args.workspace,
                role=args.role,
                name=args.name,
                scopes=args.scopes,
                expires_in=args.expires_in,
            )
            await show_new_key(
                key,
                plaintext,
                audit=partial(_audit_key, database.pool, "key.created"),
                revoke=keys.revoke,
            )
        print(
            f"created key {key.prefix} (workspace {key.workspace_name}, role {key.role}); "
            "it is shown only this once, store it now",
            file=sys.stderr,
        )
        return EXIT_OK

    return _run(go())


def _keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            keys = await ApiKeyRepository(database.pool).list(workspace=args.workspace)
        header = ("PREFIX", "WORKSPACE", "ROLE", "NAME", "CREATED", "LAST USED", "REVOKED")
        print_keys(keys, as_json=args.json, header=header, row=_key_row)
        return EXIT_OK

    return _run(go())


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            key = await ApiKeyRepository(database.pool).revoke(args.key)
            return await report_revoked(
                f"revoked {key.prefix} (workspace {key.workspace_name})",
                partial(_audit_key, database.pool, "key.revoked", key),
            )

    return _run(go())


async def show_new_key(
    key: KeyT,
    plaintext: str,
    *,
    audit: Callable[[KeyT], Awaitable[None]],
    revoke: Callable[[str], Awaitable[object]],
) -> None:
    """Audits a key just created, then prints its plaintext: call it before the services are
    released, so that whatever happens next the only copy of the key is not lost."""
    try:
        await audit(key)
    except BaseException:
        # No key without its entry: this one was never shown, so nobody holds it; revoked as
        # well, so that the list does not show it as live.
        with contextlib.suppress(Exception):
            await revoke(str(key.id))
        raise
    print(plaintext, flush=True)


async def report_revoked(message: str, audit: Callable[[], Awaitable[None]]) -> int:
    """Reports a revocation, then audits it. The revocation does not wait for the audit log
    (a key being revoked may be leaking); a missing entry is reported, and the command fails."""
    print(message, flush=True)
    try:
        await audit()
    except (VoiceStreamError, db.PostgresError) as exc:
        print(
            f"voicestream: the key is revoked, but its audit entry was not written: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def print_keys(
    keys: Sequence[KeyT],
    *,
    as_json: bool,
    header: Sequence[str],
    row: Callable[[KeyT], Sequence[str]],
) -> None:
    if as_json:
        print(json.dumps([key.to_dict() for key in keys], indent=2))
    else:
        print(_columns(header, [row(key) for key in keys]))


async def _audit_key(pool: db.Pool, action: str, key: ApiKey) -> None:
    await AuditLog(pool).record(
        action,
        actor=CLI_ACTOR,
        workspace_id=key.workspace_id,
        target_type="api_key",
        target_id=key.id,
        details={"prefix": key.prefix, "role": key.role, "name": key.name},
    )


def _audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            result = await AuditLog(database.pool).verify()
        if result.ok:
            # The head hash is worth keeping elsewhere: the chain alone cannot show that
            # entries were cut off its end.
            print(f"ok, {result.checked} entries; last hash {result.last_hash.hex()}")
            return EXIT_OK
        print(
            f"broken at entry {result.broken_id}: {result.reason} "
            f"({result.checked} entries before it verified)",
            file=sys.stderr,
        )
        return EXIT_FAILURE

    return _run(go())


def _audit_list(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            workspace_id = await find_workspace(database.pool, args.workspace)
            if workspace_id is None:
                raise NotFound(f"no workspace named {args.workspace!r}")
            page = await AuditLog(database.pool).list(
                workspace_id, limit=args.limit, filters=AuditFilters(action=args.action)
            )
        if args.json:
            print(json.dumps([_audit_dict(e) for e in page.entries], indent=2))
            return EXIT_OK
        header = ("ID", "TIME", "ACTOR", "ACTION", "TARGET", "IP")
        rows = [
            (
                str(e.id),
                e.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                e.actor_display,
                e.action,
                f"{e.target_type}:{e.target_id}" if e.target_type else "-",
                e.ip or "-",
            )
            for e in page.entries
        ]
        print(_columns(header, rows))
        return EXIT_OK

    return _run(go())


def _page_size(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(value)


def _audit_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "created_at": entry.created_at.isoformat(),
        "action": entry.action,
        "actor": entry.actor_display,
        "actor_user_id": str(entry.actor_user_id) if entry.actor_user_id else None,
        "actor_key_id": str(entry.actor_key_id) if entry.actor_key_id else None,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "details": entry.details,
        "hash": entry.hash.hex(),
    }


def _users_create(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: argon2 is only needed by this command.
    from voicestream.identity.accounts import check_email
    from voicestream.identity.passwords import Passwords, check_password_policy

    try:
        email = check_email(args.email)
    except ValueError as exc:
        raise BadRequest(f"--email {exc}") from None
    generated = not args.password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().removesuffix("\n")
    check_password_policy(password, email=email)

    async def go() -> int:
        async with open_database(settings) as database:
            users = UserRepository(database.pool)
            user = await users.by_email(email)
            if user is not None and not generated:
                raise Conflict(
                    f"{email} has an account already; its password is not changed here "
                    "(use a password reset); without --password-stdin it joins the workspace"
                )
            created = user is None
            if user is None:
                password_hash = await Passwords().hash(password)
                # An operator vouches for the address: no verification mail.
                user = await users.create(email, password_hash, verified=True)
                if generated:
                    print(password, flush=True)  # the only copy: printed before anything else
            membership = await users.set_membership(user.id, args.workspace, args.role)
        what = "created user" if created else "existing user"
        note = "; the password above is shown only this once" if created and generated else ""
        print(
            f"{what} {user.email}: {membership.role} of workspace {membership.workspace_name}"
            f"{note}",
            file=sys.stderr,
        )
        return EXIT_OK

    return _run(go())


def _users_list(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            rows = await UserRepository(database.pool).list(workspace=args.workspace)
        if args.json:
            print(json.dumps([_user_dict(u, m) for u, m in rows], indent=2))
        else:
            header = ("EMAIL", "WORKSPACE", "ROLE", "VERIFIED", "CREATED", "DISABLED")
            print(
                _columns(
                    header,
                    [
                        (
                            u.email,
                            m.workspace_name,
                            m.role,
                            "yes" if u.email_verified_at else "no",
                            _when(u.created_at),
                            _when(u.disabled_at),
                        )
                        for u, m in rows
                    ],
                )
            )
        return EXIT_OK

    return _run(go())


def _user_dict(user: User, membership: Membership) -> dict[str, object]:
    return {
        "id": str(user.id),
        "email": user.email,
        "workspace_id": str(membership.workspace_id),
        "workspace": membership.workspace_name,
        "role": membership.role,
        "email_verified": user.email_verified_at is not None,
        "created_at": user.created_at.isoformat(),
        "disabled_at": user.disabled_at.isoformat() if user.disabled_at else None,
    }


def _scopes_arg(value: str) -> list[str]:
    scopes = [part.strip() for part in value.split(",") if part.strip()]
    if not scopes or not set(scopes) <= set(SCOPES):
        raise argparse.ArgumentTypeError(f"use a comma-separated list of {', '.join(SCOPES)}")
    return scopes


_DURATION_UNITS = {"d": 86_400, "h": 3600, "m": 60, "s": 1}


def _duration_arg(value: str) -> timedelta:
    number, unit = value[:-1], value[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError("a positive whole number and d, h, m or s, e.g. 90d")
    return timedelta(seconds=int(number) * _DURATION_UNITS[unit])


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def _key_row(k: ApiKey) -> tuple[str, ...]:
    return (
        k.prefix,
        k.workspace_name,
        k.role,
        k.name or "-",
        _when(k.created_at),
        _when(k.last_used_at),
        _when(k.revoked_at),
    )


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _credits_grant(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            workspace_id = await find_workspace(database.pool, args.workspace)
            if workspace_id is None:
                raise NotFound(f"no workspace named {args.workspace!r}")
            balances = await grant(
                database.pool,
                workspace_id,
                args.amount,
                note=args.note,
                policy=CreditPolicy.from_settings(settings),
            )
            print(
                f"granted {args.amount} credits to {args.workspace}; "
                f"{balances.available} available now",
                flush=True,
            )
            # After the grant, which stands on its own in the ledger; a missing entry is
            # reported, and the command fails.
            try:
                await AuditLog(database.pool).record(
                    "credits.granted",
                    actor=CLI_ACTOR,
                    workspace_id=workspace_id,
                    target_type="workspace",
                    target_id=workspace_id,
                    details={"credits": args.amount, "note": args.note},
                )
            except (VoiceStreamError, db.PostgresError) as exc:
                print(
                    f"voicestream: the credits are granted, but the audit entry was not "
                    f"written: {exc}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
        return EXIT_OK

    return _run(go())


def _credit_amount(value: str) -> int:
    try:
        amount = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= amount <= MAX_GRANT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_GRANT}")
    return amount


def _models_list(settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: loading the engines is the slow part, and only this command needs it.
    from voicestream.engines.catalog import build_default_registry
    from voicestream.engines.model_inventory import inventory

    # Every model is loaded, as the server would: that proves it loads and measures its memory.
    registry = build_default_registry(settings)
    records = inventory(registry, default_voice=settings.default_voice)
    problems = registry.problems()
    if args.json:
        body = {
            "models_dir": str(settings.models_dir.expanduser().resolve()),
            "models": [r.to_dict() for r in records],
            "problems": [{"file": p.file, "reason": p.reason} for p in problems],
        }
        print(json.dumps(body, indent=2))
        return EXIT_OK
    header = ("ID", "KIND", "ENGINE", "LANGUAGE", "SIZE", "MEMORY", "DEVICE", "LICENSE", "ORIGIN")
    rows = [
        (
            r.id + (" *" if r.default else "") + ("" if r.ready else " (not ready)"),
            r.kind,
            r.engine,
            r.language,
            _megabytes(r.bytes),
            _megabytes(r.memory_bytes),
            r.device,
            r.license,
            r.origin,
        )
        for r in records
    ]
    print(_columns(header, rows))
    print("\n* default voice / default STT engine; MEMORY: resident memory added by loading it")
    if problems:
        print(f"\nskipped ({len(problems)}):")
        for problem in problems:
            print(f"  {problem.file}: {problem.reason}")
    return EXIT_OK


def _megabytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f} MB"


# --- argument parsing -----------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    # --data-dir on every subcommand (not the top level), so it goes after the command name.
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir",
        type=Path,
        help="where embedded services and state live (default: $VOICESTREAM_DATA_DIR "
        "or .voicestream)",
    )
    parser = argparse.ArgumentParser(prog="voicestream", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[data_dir], help="run the server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker", parents=[data_dir], help="run background jobs (scale out beside `serve`)"
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        choices=range(1, 257),
        metavar="N",
        help="jobs run at once (default: $VOICESTREAM_JOBS_CONCURRENCY or 1)",
    )
    worker.set_defaults(handler=_worker)

    batch = commands.add_parser("batch", help="submit jobs to a server over its HTTP API")
    batch_commands = batch.add_subparsers(dest="batch_command", metavar="ACTION", required=True)
    batch_submit = batch_commands.add_parser(
        "submit", help="submit a spec's jobs (examples in batch/); prints them as JSON"
    )
    batch_submit.add_argument("spec", type=Path, help='JSON: {"jobs": [{"type", "input"}, ...]}')
    batch_submit.add_argument(
        "--wait", action="store_true", help="follow with a progress bar, then download results"
    )
    batch_submit.add_argument("--server", help="default: $VOICESTREAM_URL or the spec's server")
    batch_submit.add_argument("--api-key", help="default: $VOICESTREAM_API_KEY")
    batch_submit.add_argument(
        "--out", type=Path, default=Path("."), help="where --wait downloads (default: .)"
    )
    batch_submit.set_defaults(handler=_batch_submit)

    mig = commands.add_parser("migrate", parents=[data_dir], help="apply database migrations")
    mig.set_defaults(handler=_migrate)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", parents=[data_dir], help="issue a new key")
    create.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="created if missing")
    create.add_argument("--role", default="owner", choices=ROLES)
    create.add_argument("--name", help="a label to recognise the key by")
    create.add_argument(
        "--scopes",
        type=_scopes_arg,
        help=f"comma-separated, of {','.join(SCOPES)} (default: all)",
    )
    create.add_argument(
        "--expires-in",
        type=_duration_arg,
        metavar="DURATION",
        help="e.g. 90d, 12h, 30m (default: never)",
    )
    create.add_argument(
        "--operator",
        action="store_true",
        help="a server operator's key: reads every workspace (/v1/operator/...), acts in none",
    )
    create.set_defaults(handler=_keys_create)
    listing = key_commands.add_parser("list", parents=[data_dir], help="list keys")
    listing.add_argument("--workspace", help="only keys of this workspace")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_keys_list)
    revoke = key_commands.add_parser("revoke", parents=[data_dir], help="revoke a key")
    revoke.add_argument("key", metavar="ID_OR_PREFIX", help="key id or its displayed prefix")
    revoke.set_defaults(handler=_keys_revoke)

    users = commands.add_parser("users", help="manage people who sign in")
    user_commands = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    user_create = user_commands.add_parser(
        "create",
        parents=[data_dir],
        help="create a user (e-mail counted as verified) as a member of a workspace; an "
        "existing user joins the workspace",
    )
    user_create.add_argument("--email", required=True)
    user_create.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="created if missing")
    user_create.add_argument("--role", default="owner", choices=ROLES)
    user_create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin; without it a random password "
        "is generated and printed once",
    )
    user_create.set_defaults(handler=_users_create)
    user_list = user_commands.add_parser("list", parents=[data_dir], help="list users")
    user_list.add_argument("--workspace", help="only members of this workspace")
    user_list.add_argument("--json", action="store_true", help="machine-readable output")
    user_list.set_defaults(handler=_users_list)

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_commands.add_parser(
        "verify", parents=[data_dir], help="check the hash chain; exit 1 naming a broken entry"
    )
    verify.set_defaults(handler=_audit_verify)
    audit_list = audit_commands.add_parser(
        "list", parents=[data_dir], help="a workspace's entries, newest first"
    )
    audit_list.add_argument("--workspace", required=True, help="the workspace's name")
    audit_list.add_argument(
        "--limit", type=_page_size, default=50, metavar="N", help="at most N entries (1-200)"
    )
    audit_list.add_argument("--action", help="only this action, or a family such as key.*")
    audit_list.add_argument("--json", action="store_true", help="machine-readable output")
    audit_list.set_defaults(handler=_audit_list)

    models = commands.add_parser("models", help="the voices and models this server would load")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    model_list = model_commands.add_parser(
        "list",
        help="load every engine, voice and model as the server would, and list them with "
        "their origin, size, license, device and memory, and the model files skipped",
    )
    model_list.add_argument(
        "--models-dir", type=Path, help="default: $VOICESTREAM_MODELS_DIR or ./models"
    )
    model_list.add_argument("--json", action="store_true", help="machine-readable output")
    model_list.set_defaults(handler=_models_list)

    credits = commands.add_parser("credits", help="workspaces' credits")
    credit_commands = credits.add_subparsers(
        dest="credits_command", metavar="ACTION", required=True
    )
    credit_grant = credit_commands.add_parser(
        "grant", parents=[data_dir], help="give a workspace credits (GET /v1/credits shows them)"
    )
    credit_grant.add_argument("--workspace", required=True, help="the workspace's name")
    credit_grant.add_argument("amount", type=_credit_amount, metavar="AMOUNT", help="credits")
    credit_grant.add_argument("--note", help="why (kept in the ledger and the audit log)")
    credit_grant.set_defaults(handler=_credits_grant)

    # Imported here: the admin commands build on this module's helpers.
    from voicestream.cli_admin import add_admin_commands

    add_admin_commands(commands, data_dir)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    overrides = {
        "data_dir": getattr(args, "data_dir", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "models_dir": getattr(args, "models_dir", None),
    }
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"voicestream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if handler not in (_serve, _worker):
        # The server configures logging itself; commands only surface problems.
        logging.basicConfig(level=logging.WARNING, format="voicestream: %(levelname)s %(message)s")
    try:
        return handler(settings, args)
    except NotFound as exc:
        print(f"voicestream: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except BadRequest as exc:
        print(f"voicestream: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except VoiceStreamError as exc:
        print(f"voicestream: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except (db.PostgresError, OSError) as exc:
        print(f"voicestream: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
