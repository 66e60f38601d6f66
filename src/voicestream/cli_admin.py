"""``voicestream admin ...``: the server operator's commands, mirroring ``/v1/operator/...``.

- ``admin keys create|list|revoke``: operator keys (server-wide, read-only, for the operator's
  API; ``voicestream keys create --operator`` is the same as ``admin keys create``). Only the
  command line mints them, and each creation and revocation is in the audit log (under no
  workspace, the command line as the actor).
- ``admin workspaces list``: every workspace with its members, live keys, plan and usage.
- ``admin workspace usage WORKSPACE``: one workspace (by name or id) over a period.

Usage periods are ``--since``/``--until`` (ISO 8601 dates or times, UTC when no zone is given;
default: this calendar month so far).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

from voicestream.cli import (
    EXIT_OK,
    _columns,
    _duration_arg,
    _run,
    _when,
    print_keys,
    report_revoked,
    show_new_key,
)
from voicestream.config import Settings
from voicestream.errors import BadRequest, NotFound
from voicestream.identity.quotas import month_start
from voicestream.store import db
from voicestream.store.audit import CLI_ACTOR, AuditLog
from voicestream.store.operator_keys import OperatorKey, OperatorKeyRepository
from voicestream.store.operator_views import (
    Period,
    WorkspaceSummary,
    list_workspaces,
    workspace_summary,
)
from voicestream.store.services import open_database
from voicestream.store.workspaces import find_workspace

__all__ = ["add_admin_commands", "create_operator_key"]

_PAGE = 500


async def _audit(pool: db.Pool, action: str, key: OperatorKey) -> None:
    await AuditLog(pool).record(
        action,
        actor=CLI_ACTOR,
        target_type="operator_key",
        target_id=key.id,
        details={"prefix": key.prefix, "role": "operator", "name": key.name},
    )


def create_operator_key(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            keys = OperatorKeyRepository(database.pool)
            key, plaintext = await keys.create(args.name, expires_in=args.expires_in)
            await show_new_key(
                key,
                plaintext,
                audit=partial(_audit, database.pool, "operator_key.created"),
                revoke=keys.revoke,
            )
        print(
            f"created operator key {key.prefix}: it reads every workspace's summary and usage "
            "(/v1/operator/...) and nothing else; it is shown only this once, store it now",
            file=sys.stderr,
        )
        return EXIT_OK

    return _run(go())


def _list_keys(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            keys = await OperatorKeyRepository(database.pool).list()
        header = ("PREFIX", "NAME", "CREATED", "LAST USED", "EXPIRES", "REVOKED")
        print_keys(keys, as_json=args.json, header=header, row=_key_row)
        return EXIT_OK

    return _run(go())


def _key_row(k: OperatorKey) -> tuple[str, ...]:
    return (
        k.prefix,
        k.name or "-",
        _when(k.created_at),
        _when(k.last_used_at),
        _when(k.expires_at),
        _when(k.revoked_at),
    )


def _revoke_key(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            key = await OperatorKeyRepository(database.pool).revoke(args.key)
            return await report_revoked(
                f"revoked operator key {key.prefix}",
                partial(_audit, database.pool, "operator_key.revoked", key),
            )

    return _run(go())


def _period(args: argparse.Namespace) -> Period:
    since: datetime = args.since or month_start()
    if args.until is not None and args.until <= since:
        raise BadRequest("--until must be later than --since")
    return Period(since, args.until)


def _summary_dict(summary: WorkspaceSummary, period: Period) -> dict[str, object]:
    return {
        "id": str(summary.id),
        "name": summary.name,
        "created_at": summary.created_at.isoformat(),
        "members": summary.members,
        "live_keys": summary.live_keys,
        "plan": summary.plan,
        "billing_status": summary.billing_status,
        "since": period.since.isoformat(),
        "until": period.until.isoformat() if period.until else None,
        "usage": summary.usage,
    }


def _summary_rows(summaries: list[WorkspaceSummary]) -> str:
    header = ("WORKSPACE", "ID", "MEMBERS", "KEYS", "PLAN", "TTS CHARS", "STT S", "CONV S")
    rows = [
        (
            s.name,
            str(s.id),
            str(s.members),
            str(s.live_keys),
            s.plan,
            f"{s.usage['tts_characters']:g}",
            f"{s.usage['stt_seconds']:g}",
            f"{s.usage['conversation_seconds']:g}",
        )
        for s in summaries
    ]
    return _columns(header, rows)


def _list_workspaces(settings: Settings, args: argparse.Namespace) -> int:
    period = _period(args)

    async def go() -> int:
        summaries: list[WorkspaceSummary] = []
        async with open_database(settings) as database:
            after: str | None = None
            while True:
                page, cursor = await list_workspaces(
                    database.pool, period, limit=_PAGE, after=after
                )
                summaries += page
                if cursor is None:
                    break
                after = page[-1].name
        if args.json:
            print(json.dumps([_summary_dict(s, period) for s in summaries], indent=2))
        else:
            print(_summary_rows(summaries))
        return EXIT_OK

    return _run(go())


def _workspace_usage(settings: Settings, args: argparse.Namespace) -> int:
    period = _period(args)

    async def go() -> int:
        async with open_database(settings) as database:
            workspace_id = await _workspace_id(database.pool, args.workspace)
            summary = await workspace_summary(database.pool, workspace_id, period)
        if args.json:
            print(json.dumps(_summary_dict(summary, period), indent=2))
        else:
            print(_summary_rows([summary]))
        return EXIT_OK

    return _run(go())


async def _workspace_id(pool: db.Pool, workspace: str) -> UUID:
    with contextlib.suppress(ValueError):
        return UUID(workspace)
    found = await find_workspace(pool, workspace)
    if found is None:
        raise NotFound(f"no workspace named {workspace!r}")
    return found


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("an ISO 8601 date or time, e.g. 2026-01-01") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _add_period(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_moment, help="default: the start of this month (UTC)")
    parser.add_argument("--until", type=_moment, help="default: now")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_expiry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expires-in",
        type=_duration_arg,
        metavar="DURATION",
        help="e.g. 90d, 12h, 30m (default: never)",
    )


def add_admin_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir: argparse.ArgumentParser,
) -> None:
    """The ``admin`` command group, added to the ``voicestream`` command's subparsers."""
    admin = commands.add_parser("admin", help="the server operator: operator keys, workspaces")
    groups = admin.add_subparsers(dest="admin_command", metavar="AREA", required=True)

    keys = groups.add_parser("keys", help="operator keys (read every workspace, act in none)")
    key_commands = keys.add_subparsers(dest="admin_keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", parents=[data_dir], help="issue an operator key")
    create.add_argument("--name", help="a label to recognise the key by")
    add_expiry(create)
    create.set_defaults(handler=create_operator_key)
    listing = key_commands.add_parser("list", parents=[data_dir], help="list operator keys")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list_keys)
    revoke = key_commands.add_parser("revoke", parents=[data_dir], help="revoke an operator key")
    revoke.add_argument("key", help="the key's id or prefix")
    revoke.set_defaults(handler=_revoke_key)

    workspaces = groups.add_parser("workspaces", help="every workspace")
    workspace_commands = workspaces.add_subparsers(
        dest="admin_workspaces_command", metavar="ACTION", required=True
    )
    all_workspaces = workspace_commands.add_parser(
        "list", parents=[data_dir], help="members, keys, plan and usage of every workspace"
    )
    _add_period(all_workspaces)
    all_workspaces.set_defaults(handler=_list_workspaces)

    workspace = groups.add_parser("workspace", help="one workspace")
    one_commands = workspace.add_subparsers(
        dest="admin_workspace_command", metavar="ACTION", required=True
    )
    usage = one_commands.add_parser(
        "usage", parents=[data_dir], help="one workspace's members, keys, plan and usage"
    )
    usage.add_argument("workspace", help="its name or id")
    _add_period(usage)
    usage.set_defaults(handler=_workspace_usage)
