"""Conversation writes that PostgreSQL could not take, kept on local disk until it can.

While the database is unreachable, turns and status changes of live conversations are
appended (and fsynced) to ``<data_dir>/outbox/conversations-<pid>.jsonl`` and replayed in
their original order once it answers again. Each write carries a unique id, so a replay
after a crash half way through, or of a write whose acknowledgement was lost, is stored
once. A process that finds the outbox file of a process that died adopts it at start.

Local disk rather than Redis: an outage of one service must not depend on the other, and
the embedded ones share a host with us anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from voicestream.store._proc import pid_alive

__all__ = ["ConversationOutbox", "PendingWrite"]

log = logging.getLogger(__name__)

WriteKind = Literal["turn", "end", "reopen"]
_FILE = re.compile(r"^conversations-(\d+)(?:-from-\d+)?\.jsonl$")


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """One conversation write, as it will be replayed."""

    kind: WriteKind
    conversation_id: str
    write_id: str
    at: str  # ISO time the write was made: a replayed turn keeps its real time
    role: str = ""
    text: str = ""
    interrupted: bool = False
    status: str = ""

    @classmethod
    def new(
        cls,
        kind: WriteKind,
        conversation_id: str,
        *,
        role: str = "",
        text: str = "",
        interrupted: bool = False,
        status: str = "",
    ) -> PendingWrite:
        return cls(
            kind=kind,
            conversation_id=conversation_id,
            write_id=str(uuid.uuid4()),
            at=datetime.now(UTC).isoformat(),
            role=role,
            text=text,
            interrupted=interrupted,
            status=status,
        )

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.at)

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=True) + "\n"

    @classmethod
    def from_line(cls, line: str) -> PendingWrite | None:
        try:
            raw = json.loads(line)
            write = cls(**raw)
        except (ValueError, TypeError):
            return None  # a line torn by a crash mid-append: everything before it is intact
        return write if write.kind in ("turn", "end", "reopen") else None


class ConversationOutbox:
    """An ordered, durable queue of conversation writes for one process."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._path = directory / f"conversations-{os.getpid()}.jsonl"
        self._pending: list[PendingWrite] = []
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    async def open(self) -> None:
        """Load what an earlier process left behind (it died before replaying it)."""
        async with self._lock:
            self._pending = await asyncio.to_thread(self._adopt)
        if self._pending:
            log.warning(
                "conversation outbox: %d write(s) left by a previous process; replaying them",
                len(self._pending),
            )
            self._changed.set()

    def has_pending(self) -> bool:
        return bool(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    async def append(self, write: PendingWrite) -> None:
        """Queue ``write`` after the others; durable on disk when this returns.

        Raises OSError when the disk refuses it: the caller must then report the loss.
        """
        async with self._lock:
            await asyncio.to_thread(self._append_line, write.to_line())
            self._pending.append(write)
        self._changed.set()

    async def wait_pending(self) -> None:
        while not self._pending:
            self._changed.clear()
            await self._changed.wait()

    async def replay(self, apply: Callable[[PendingWrite], Awaitable[None]]) -> None:
        """Apply the queued writes in order, dropping each once applied.

        Stops at the first failure and raises it; what is left stays queued, in order.
        """
        try:
            while self._pending:
                await apply(self._pending[0])
                self._pending.pop(0)
        finally:
            async with self._lock:
                remaining = [w.to_line() for w in self._pending]
                await asyncio.to_thread(self._rewrite, remaining)

    # --- blocking file work ---------------------------------------------------------------

    def _append_line(self, line: str) -> None:
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._path.open("a", encoding="ascii") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _rewrite(self, lines: list[str]) -> None:
        if not lines:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            return
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        with tmp.open("w", encoding="ascii") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)

    def _adopt(self) -> list[PendingWrite]:
        """Take over the files of dead processes (and our own, after a pid reuse)."""
        try:
            names = sorted(os.listdir(self._dir))
        except FileNotFoundError:
            return []
        writes: list[PendingWrite] = []
        me = os.getpid()
        for name in names:
            match = _FILE.match(name)
            if match is None:
                continue
            owner = int(match.group(1))
            if owner != me and pid_alive(owner):
                continue
            claimed = self._dir / f"conversations-{me}-from-{owner}.jsonl"
            source = self._dir / name
            if source != claimed:
                try:
                    # Atomic: of several processes starting at once, one gets each file.
                    os.rename(source, claimed)
                except FileNotFoundError:
                    continue
            writes.extend(self._read(claimed))
        if writes:
            self._rewrite([w.to_line() for w in writes])
        for name in os.listdir(self._dir):
            if name.startswith(f"conversations-{me}-from-"):
                os.unlink(self._dir / name)
        return writes

    @staticmethod
    def _read(path: Path) -> list[PendingWrite]:
        writes = []
        with path.open(encoding="ascii", errors="replace") as fh:
            for line in fh:
                write = PendingWrite.from_line(line)
                if write is not None:
                    writes.append(write)
        return writes
