"""Agents and their knowledge documents.

Every read and write takes the workspace id and filters on it: an id from another workspace
behaves exactly like an id that does not exist (``NotFound``), so ids never leak across tenants.
Ids arrive from URLs as strings; a malformed one is also ``NotFound``, never a 500.

Writes that must stay in step with the vector store take a ``before_commit`` callback, run
inside the database transaction: if the vectors cannot be written (or deleted), the rows roll
back too, and no half-made agent or document remains.

An agent's LLM ``api_key`` is a third-party secret: it is sealed (``SecretBox``, bound to the
workspace, the agent and the field) before it is written and opened when the row is read, so
the database never holds it in clear and a sealed key opens only in its own agent; responses
show only a hint of it.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID, uuid4

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store._records import MAX_LIST, Id, clean, iso, limit_rows, parse_id
from voicestream.store.secrets import SecretBox, SecretUnreadable

__all__ = [
    "Agent",
    "AgentDocument",
    "AgentRepository",
    "AgentSpec",
    "Id",
    "NewDocument",
    "parse_id",
]

_UPDATABLE: Final = frozenset(
    {"name", "instructions", "voice", "language", "first_message", "llm", "public"}
)
_SECRET_LLM_KEYS: Final = frozenset({"api_key"})

log = logging.getLogger(__name__)


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What a client sets on an agent (validated by the REST layer)."""

    name: str
    voice: str
    instructions: str = ""
    language: str = "en"
    first_message: str | None = None
    llm: dict[str, Any] | None = None
    public: bool = False


@dataclass(frozen=True, slots=True)
class Agent:
    id: UUID
    workspace_id: UUID
    name: str
    instructions: str
    voice: str
    language: str
    first_message: str | None
    llm: dict[str, Any] | None
    public: bool
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, secrets withheld: an LLM api_key shows as ``"api_key_set": true`` and
        a hint (``"sk-…abcd"``) that tells keys apart without revealing them."""
        llm: dict[str, Any] | None = None
        if self.llm is not None:
            llm = {k: v for k, v in self.llm.items() if k not in _SECRET_LLM_KEYS}
            api_key = self.llm.get("api_key")
            llm["api_key_set"] = bool(api_key)
            llm["api_key_hint"] = _hint(api_key) if isinstance(api_key, str) and api_key else None
        return {
            "id": str(self.id),
            "workspace_id": str(self.workspace_id),
            "name": self.name,
            "instructions": self.instructions,
            "voice": self.voice,
            "language": self.language,
            "first_message": self.first_message,
            "llm": llm,
            "public": self.public,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class NewDocument:
    name: str
    content_type: str
    text: str
    chunks: int


@dataclass(frozen=True, slots=True)
class AgentDocument:
    id: UUID
    agent_id: UUID
    workspace_id: UUID
    name: str
    content_type: str
    characters: int
    chunks: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "agent_id": str(self.agent_id),
            "name": self.name,
            "content_type": self.content_type,
            "characters": self.characters,
            "chunks": self.chunks,
            "created_at": iso(self.created_at),
        }


_AGENT_COLUMNS = """
    id, workspace_id, name, instructions, voice, language, first_message, llm, public,
    created_at, updated_at
"""
_DOCUMENT_COLUMNS = """
    id, agent_id, workspace_id, name, content_type, char_length(text) AS characters, chunks,
    created_at
"""


def _hint(secret: str) -> str | None:
    # Four characters of a long random key say which key it is, not what it is; of a short
    # one they would say too much.
    if len(secret) < 16:
        return None
    return f"{secret[:3]}…{secret[-4:]}"


def _agent(row: db.Record, secrets: SecretBox) -> Agent:
    llm = row["llm"]
    # No JSON codec is registered on the pool: jsonb arrives as its text.
    llm = json.loads(llm) if isinstance(llm, str) else llm
    if isinstance(llm, dict) and isinstance(llm.get("api_key"), str):
        try:
            llm["api_key"] = secrets.open(
                llm["api_key"],
                context=_api_key_context(row["workspace_id"], row["id"]),
                legacy_context=str(row["workspace_id"]),
            )
        except SecretUnreadable:
            # The server's secret changed since the key was stored: the agent runs without
            # it (its endpoint will refuse) until someone sets the key again.
            log.warning("agent %s: its LLM api_key cannot be decrypted; set it again", row["id"])
            del llm["api_key"]
    return Agent(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        instructions=row["instructions"],
        voice=row["voice"],
        language=row["language"],
        first_message=row["first_message"],
        llm=llm,
        public=row["public"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _document(row: db.Record) -> AgentDocument:
    return AgentDocument(
        id=row["id"],
        agent_id=row["agent_id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        content_type=row["content_type"],
        characters=row["characters"],
        chunks=row["chunks"],
        created_at=row["created_at"],
    )


def _api_key_context(workspace_id: UUID, agent_id: UUID) -> str:
    return f"{workspace_id}:{agent_id}:llm.api_key"


def _llm_json(
    llm: Mapping[str, Any] | None, secrets: SecretBox, workspace_id: UUID, agent_id: UUID
) -> str | None:
    """The settings as stored. Whatever ``api_key`` the caller sends is plaintext by
    definition, even one that looks sealed: a client must not be able to plant a value
    sealed for another row, so it is always sealed here."""
    if llm is None:
        return None
    stored = dict(llm)
    api_key = stored.get("api_key")
    if isinstance(api_key, str):
        stored["api_key"] = secrets.seal(api_key, context=_api_key_context(workspace_id, agent_id))
    return json.dumps(stored)


# --- agents ---------------------------------------------------------------------------------

AgentHook = Callable[[Agent, list[AgentDocument]], Awaitable[None]]
DocumentHook = Callable[[AgentDocument], Awaitable[None]]
DeleteHook = Callable[[], Awaitable[None]]


class AgentRepository:
    def __init__(self, pool: db.Pool, secrets: SecretBox) -> None:
        self._pool = pool
        self._secrets = secrets

    def _agent(self, row: db.Record) -> Agent:
        return _agent(row, self._secrets)

    async def seal_plaintext_secrets(self) -> int:
        """Seal LLM keys stored in clear, or sealed the older way; returns how many.

        Run at start-up: each row is rewritten only if it still holds the same value, so
        two servers starting at once, or a concurrent edit, cannot clobber each other.
        """
        rows = await self._pool.fetch(
            "SELECT id, workspace_id, llm->>'api_key' AS api_key FROM agents "
            "WHERE llm ? 'api_key' AND jsonb_typeof(llm->'api_key') = 'string' "
            "AND NOT starts_with(llm->>'api_key', $1)",
            SecretBox.CURRENT_PREFIX,
        )
        sealed = 0
        for row in rows:
            context = _api_key_context(row["workspace_id"], row["id"])
            try:
                plaintext = self._secrets.open(
                    row["api_key"], context=context, legacy_context=str(row["workspace_id"])
                )
            except SecretUnreadable:
                continue  # reading the agent says so; resealing cannot make it readable
            value = self._secrets.seal(plaintext, context=context)
            status = await self._pool.execute(
                "UPDATE agents SET llm = jsonb_set(llm, '{api_key}', to_jsonb($3::text)) "
                "WHERE id = $1 AND llm->>'api_key' = $2",
                row["id"],
                row["api_key"],
                value,
            )
            sealed += status == "UPDATE 1"
        return sealed

    async def create(
        self,
        workspace_id: Id,
        spec: AgentSpec,
        documents: Sequence[NewDocument] = (),
        *,
        before_commit: AgentHook | None = None,
    ) -> tuple[Agent, builtins.list[AgentDocument]]:
        """Insert an agent with its documents in one transaction.

        ``before_commit`` runs inside it (store the vectors there): if it raises, nothing of
        the agent remains and the error propagates.
        """
        ws = parse_id(workspace_id, "workspace")
        # Chosen here rather than by the database: the sealed api_key is bound to it.
        aid = uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                INSERT INTO agents (id, workspace_id, name, instructions, voice, language,
                                    first_message, llm, public)
                VALUES ($9, $1, $2, $3, $4, $5, $6, $7::jsonb, $8)
                RETURNING {_AGENT_COLUMNS}
                """,
                ws,
                clean(spec.name),
                clean(spec.instructions),
                spec.voice,
                spec.language,
                clean(spec.first_message) if spec.first_message is not None else None,
                _llm_json(spec.llm, self._secrets, ws, aid),
                spec.public,
                aid,
            )
            agent = self._agent(row)
            docs = [await self._insert_document(conn, agent, doc) for doc in documents]
            if before_commit is not None:
                await before_commit(agent, docs)
            return agent, docs

    async def get(self, workspace_id: Id, agent_id: Id) -> Agent:
        """Raises NotFound for an unknown id or one of another workspace."""
        ws = parse_id(workspace_id, "workspace")
        aid = parse_id(agent_id, "agent")
        row = await self._pool.fetchrow(
            f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = $1 AND workspace_id = $2", aid, ws
        )
        if row is None:
            raise NotFound(f"no agent with id {str(agent_id)!r}")
        return self._agent(row)

    async def get_public(self, agent_id: Id) -> Agent:
        """A public agent by id alone (the widget's path). Raises NotFound if not public."""
        aid = parse_id(agent_id, "agent")
        row = await self._pool.fetchrow(
            f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = $1 AND public", aid
        )
        if row is None:
            raise NotFound(f"no public agent with id {str(agent_id)!r}")
        return self._agent(row)

    async def list(self, workspace_id: Id, *, limit: int = MAX_LIST) -> builtins.list[Agent]:
        """The workspace's agents, oldest first."""
        ws = parse_id(workspace_id, "workspace")
        rows = await self._pool.fetch(
            f"SELECT {_AGENT_COLUMNS} FROM agents WHERE workspace_id = $1 "
            "ORDER BY created_at, id LIMIT $2",
            ws,
            limit_rows(limit),
        )
        return [self._agent(row) for row in rows]

    async def update(self, workspace_id: Id, agent_id: Id, changes: Mapping[str, Any]) -> Agent:
        """Set the given fields (a subset of AgentSpec's); ``llm`` is replaced as a whole.

        Raises:
            NotFound: unknown agent (or another workspace's).
            ValidationFailed: a field that cannot be changed.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValidationFailed(f"cannot change {', '.join(sorted(unknown))}")
        ws = parse_id(workspace_id, "workspace")
        aid = parse_id(agent_id, "agent")
        if not changes:
            return await self.get(ws, aid)
        # Column names come from the whitelist above, never from the client.
        sets: list[str] = []
        args: list[Any] = [aid, ws]
        for i, (column, value) in enumerate(sorted(changes.items()), start=3):
            if column == "llm":
                sets.append(f"llm = ${i}::jsonb")
                args.append(_llm_json(value, self._secrets, ws, aid))
            else:
                sets.append(f"{column} = ${i}")
                args.append(clean(value) if isinstance(value, str) else value)
        row = await self._pool.fetchrow(
            f"UPDATE agents SET {', '.join(sets)}, updated_at = now() "
            f"WHERE id = $1 AND workspace_id = $2 RETURNING {_AGENT_COLUMNS}",
            *args,
        )
        if row is None:
            raise NotFound(f"no agent with id {str(agent_id)!r}")
        return self._agent(row)

    async def delete(
        self, workspace_id: Id, agent_id: Id, *, before_commit: DeleteHook | None = None
    ) -> None:
        """Delete an agent and its documents; its conversations stay (agent_id set NULL)."""
        ws = parse_id(workspace_id, "workspace")
        aid = parse_id(agent_id, "agent")
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                "DELETE FROM agents WHERE id = $1 AND workspace_id = $2 RETURNING id", aid, ws
            )
            if deleted is None:
                raise NotFound(f"no agent with id {str(agent_id)!r}")
            if before_commit is not None:
                await before_commit()

    # -- documents ---------------------------------------------------------------------------

    async def add_document(
        self,
        workspace_id: Id,
        agent_id: Id,
        document: NewDocument,
        *,
        before_commit: DocumentHook | None = None,
    ) -> AgentDocument:
        """Add a document to an agent; ``before_commit`` as in ``create``."""
        ws = parse_id(workspace_id, "workspace")
        aid = parse_id(agent_id, "agent")
        async with self._pool.acquire() as conn, conn.transaction():
            # FOR SHARE: the agent cannot be deleted between this check and the insert.
            row = await conn.fetchrow(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = $1 AND workspace_id = $2 "
                "FOR SHARE",
                aid,
                ws,
            )
            if row is None:
                raise NotFound(f"no agent with id {str(agent_id)!r}")
            doc = await self._insert_document(conn, self._agent(row), document)
            if before_commit is not None:
                await before_commit(doc)
            return doc

    async def list_documents(
        self, workspace_id: Id, agent_id: Id, *, limit: int = MAX_LIST
    ) -> builtins.list[AgentDocument]:
        """The agent's documents, oldest first. Raises NotFound for an unknown agent."""
        agent = await self.get(workspace_id, agent_id)
        rows = await self._pool.fetch(
            f"SELECT {_DOCUMENT_COLUMNS} FROM agent_documents "
            "WHERE agent_id = $1 AND workspace_id = $2 ORDER BY created_at, id LIMIT $3",
            agent.id,
            agent.workspace_id,
            limit_rows(limit),
        )
        return [_document(row) for row in rows]

    async def document_text(self, workspace_id: Id, agent_id: Id, document_id: Id) -> str:
        """The stored text of one document (to chunk and embed it again)."""
        row = await self._pool.fetchrow(
            "SELECT text FROM agent_documents "
            "WHERE id = $1 AND agent_id = $2 AND workspace_id = $3",
            parse_id(document_id, "document"),
            parse_id(agent_id, "agent"),
            parse_id(workspace_id, "workspace"),
        )
        if row is None:
            raise NotFound(f"no document with id {str(document_id)!r}")
        text: str = row["text"]
        return text

    async def delete_document(
        self,
        workspace_id: Id,
        agent_id: Id,
        document_id: Id,
        *,
        before_commit: DeleteHook | None = None,
    ) -> None:
        ws = parse_id(workspace_id, "workspace")
        aid = parse_id(agent_id, "agent")
        did = parse_id(document_id, "document")
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                "DELETE FROM agent_documents WHERE id = $1 AND agent_id = $2 AND workspace_id = $3 "
                "RETURNING id",
                did,
                aid,
                ws,
            )
            if deleted is None:
                raise NotFound(f"no document with id {str(document_id)!r}")
            if before_commit is not None:
                await before_commit()

    @staticmethod
    async def _insert_document(
        conn: db.Connection, agent: Agent, document: NewDocument
    ) -> AgentDocument:
        row = await conn.fetchrow(
            f"""
            INSERT INTO agent_documents (agent_id, workspace_id, name, content_type, text, chunks)
            VALUES ($1, $2, $3, $4, $5, $6)
            RETURNING {_DOCUMENT_COLUMNS}
            """,
            agent.id,
            agent.workspace_id,
            clean(document.name),
            document.content_type,
            clean(document.text),
            document.chunks,
        )
        return _document(row)
