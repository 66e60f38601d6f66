"""The ``voicestream`` command: serve, migrate, manage API keys, list the models.

Database commands use ``DATABASE_URL`` when it is set, otherwise the embedded PostgreSQL
of ``--data-dir``: they join it if a server (or anything else) already runs it, and start
it just for the command if not.

Exit codes: 0 success, 1 failure (not found, service errors), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from voicestream.config import ConfigError, Settings, load_settings
from voicestream.errors import BadRequest, NotFound, VoiceStreamError
from voicestream.store import db
from voicestream.store.keys import ROLES, ApiKey, ApiKeyRepository
from voicestream.store.migrate import migrate
from voicestream.store.services import open_database
from voicestream.store.workspaces import DEFAULT_WORKSPACE

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Handler = Callable[[Settings, argparse.Namespace], int]


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


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        # migrate_schema=False: the point is to run (and report) the migration here.
        async with open_database(settings, migrate_schema=False) as database:
            applied = await migrate(database.pool)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return EXIT_OK

    return _run(go())


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            key, plaintext = await ApiKeyRepository(database.pool).create(
                workspace=args.workspace, role=args.role, name=args.name
            )
            # Printed before the services are released: whatever happens next, the only copy
            # of the key must not be lost.
            print(plaintext, flush=True)
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
        if args.json:
            print(json.dumps([key.to_dict() for key in keys], indent=2))
        else:
            print(_table(keys))
        return EXIT_OK

    return _run(go())


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_database(settings) as database:
            key = await ApiKeyRepository(database.pool).revoke(args.key)
        print(f"revoked {key.prefix} (workspace {key.workspace_name})")
        return EXIT_OK

    return _run(go())


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def _table(keys: Sequence[ApiKey]) -> str:
    header = ("PREFIX", "WORKSPACE", "ROLE", "NAME", "CREATED", "LAST USED", "REVOKED")
    rows = [
        (
            k.prefix,
            k.workspace_name,
            k.role,
            k.name or "-",
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    return _columns(header, rows)


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


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

    mig = commands.add_parser("migrate", parents=[data_dir], help="apply database migrations")
    mig.set_defaults(handler=_migrate)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", parents=[data_dir], help="issue a new key")
    create.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="created if missing")
    create.add_argument("--role", default="owner", choices=ROLES)
    create.add_argument("--name", help="a label to recognise the key by")
    create.set_defaults(handler=_keys_create)
    listing = key_commands.add_parser("list", parents=[data_dir], help="list keys")
    listing.add_argument("--workspace", help="only keys of this workspace")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_keys_list)
    revoke = key_commands.add_parser("revoke", parents=[data_dir], help="revoke a key")
    revoke.add_argument("key", metavar="ID_OR_PREFIX", help="key id or its displayed prefix")
    revoke.set_defaults(handler=_keys_revoke)

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
    if handler is not _serve:
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
