"""Vectors in Qdrant: agents' knowledge passages and end users' long-term memory.

Two collections, both 384-dim cosine (the MiniLM embedder's space):

``knowledge``  payload: workspace_id, agent_id, document_id, chunk, text
``memory``     payload: workspace_id, end_user_id, agent_id, conversation_id, text, at (unix s)

Every query filters on ``workspace_id``: tenant isolation is enforced here, not by callers
remembering to pass a filter.

Why the synchronous client on threads rather than ``AsyncQdrantClient``: in local mode the async
client is the sync implementation with ``async def`` in front (SQLite writes, file locks, brute
force search all run on the calling thread), which would block the event loop. So every call
runs the sync ``QdrantClient`` on a dedicated executor: one thread in local mode (SQLite
connections are tied to the thread that opened them, and local mode is not concurrent anyway),
a few in server mode (plain blocking HTTP).

Local mode (``QdrantClient(path=<data_dir>/qdrant)``) takes an exclusive file lock on its folder:
one process, and one ``VectorStore``, per folder. Several server processes must share a Qdrant
server (``QDRANT_URL``) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID

import numpy as np
import numpy.typing as npt

from voicestream.errors import EngineError, ValidationFailed

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm

__all__ = ["KNOWLEDGE", "MEMORY", "KnowledgeHit", "MemoryHit", "VectorStore"]

log = logging.getLogger(__name__)

KNOWLEDGE: Final = "knowledge"
MEMORY: Final = "memory"
DIMENSION: Final = 384  # engines.embedder.DIMENSION; store/ does not import engines/
_REMOTE_THREADS: Final = 4
_REMOTE_TIMEOUT_S: Final = 10
_UPSERT_BATCH: Final = 64
# Fixed namespace so a memory's id is a pure function of who said what: saying the same thing
# twice refreshes one point instead of piling up duplicates.
_MEMORY_NS: Final = UUID("6f3a1c52-0f9e-4d3b-9a57-1a4c3f0e2b71")
_KNOWLEDGE_NS: Final = UUID("0b8e2d41-7c5a-4f16-8e3d-52a9c7f1d604")

T = TypeVar("T")
Id = UUID | str


@dataclass(frozen=True, slots=True)
class KnowledgeHit:
    text: str
    score: float  # cosine similarity, -1..1
    agent_id: str
    document_id: str
    chunk: int


@dataclass(frozen=True, slots=True)
class MemoryHit:
    text: str
    score: float
    end_user_id: str
    agent_id: str | None
    at: datetime


def _vector(vector: npt.ArrayLike) -> list[float]:
    arr = np.asarray(vector, dtype=np.float32)
    if arr.shape != (DIMENSION,):
        raise ValidationFailed(f"expected a {DIMENSION}-dim vector, got shape {arr.shape}")
    return [float(x) for x in arr]


class VectorStore:
    """Knowledge and memory vectors in Qdrant (local folder or server).

    Nothing is opened until the first call (so a server that never uses agents never touches
    the folder); collections are created then if missing.

    Raises (from every method):
        EngineError: Qdrant failed (retryable when a server could not be reached).
    """

    def __init__(
        self, *, path: Path | None = None, url: str | None = None, api_key: str | None = None
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path (local mode) or url (Qdrant server)")
        self._path = path
        self._url = url
        self._api_key = api_key
        self._client: QdrantClient | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1 if path is not None else _REMOTE_THREADS, thread_name_prefix="qdrant"
        )
        self._closed = False

    @property
    def local(self) -> bool:
        return self._path is not None

    # -- knowledge ---------------------------------------------------------------------------

    async def add_chunks(
        self,
        workspace_id: Id,
        agent_id: Id,
        document_id: Id,
        texts: Sequence[str],
        vectors: npt.NDArray[np.float32],
    ) -> int:
        """Store one point per passage; returns how many. Re-adding a document overwrites."""
        qm = await self._models()

        if len(texts) != len(vectors):
            raise ValidationFailed(f"{len(texts)} texts but {len(vectors)} vectors")
        doc = str(document_id)
        points = [
            qm.PointStruct(
                # Deterministic ids: a retried upload replaces its points rather than doubling.
                id=str(uuid.uuid5(_KNOWLEDGE_NS, f"{workspace_id}:{doc}:{i}")),
                vector=_vector(vec),
                payload={
                    "workspace_id": str(workspace_id),
                    "agent_id": str(agent_id),
                    "document_id": doc,
                    "chunk": i,
                    "text": text,
                },
            )
            for i, (text, vec) in enumerate(zip(texts, vectors, strict=True))
        ]
        try:
            # In batches: local mode commits to SQLite point by point (~3 ms each), and a live
            # conversation's search queued on the same thread should wait for one batch, not
            # for a whole handbook.
            for start in range(0, len(points), _UPSERT_BATCH):
                batch = points[start : start + _UPSERT_BATCH]
                await self._run(functools.partial(_upsert, collection=KNOWLEDGE, points=batch))
        except BaseException:
            # Whatever part was written must not outlive the failed upload.
            with contextlib.suppress(Exception):
                await self.delete_document(workspace_id, agent_id, document_id)
            raise
        return len(points)

    async def search_knowledge(
        self, workspace_id: Id, agent_id: Id, vector: npt.ArrayLike, limit: int = 3
    ) -> list[KnowledgeHit]:
        """The agent's passages nearest to ``vector``, best first."""
        query = _vector(vector)
        flt = _filter(workspace_id=workspace_id, agent_id=agent_id)
        points = await self._run(
            lambda c: (
                c.query_points(
                    KNOWLEDGE, query=query, query_filter=flt, limit=limit, with_payload=True
                ).points
            )
        )
        hits = []
        for p in points:
            payload = p.payload or {}
            hits.append(
                KnowledgeHit(
                    text=str(payload.get("text", "")),
                    score=float(p.score),
                    agent_id=str(payload.get("agent_id")),
                    document_id=str(payload.get("document_id")),
                    chunk=int(payload.get("chunk", 0)),
                )
            )
        return hits

    async def delete_document(self, workspace_id: Id, agent_id: Id, document_id: Id) -> None:
        flt = _filter(workspace_id=workspace_id, agent_id=agent_id, document_id=document_id)
        await self._run(lambda c: c.delete(KNOWLEDGE, points_selector=flt, wait=True))

    async def delete_agent(self, workspace_id: Id, agent_id: Id) -> None:
        """Drop the agent's knowledge and the memories made in its conversations."""
        flt = _filter(workspace_id=workspace_id, agent_id=agent_id)
        await self._run(lambda c: c.delete(KNOWLEDGE, points_selector=flt, wait=True))
        await self._run(lambda c: c.delete(MEMORY, points_selector=flt, wait=True))

    # -- memory ------------------------------------------------------------------------------

    async def remember(
        self,
        workspace_id: Id,
        end_user_id: str,
        agent_id: Id | None,
        text: str,
        vector: npt.ArrayLike,
        *,
        conversation_id: Id | None = None,
    ) -> None:
        """Keep something an end user said, for later sessions (same text: refreshed)."""
        qm = await self._models()

        if not end_user_id:
            raise ValidationFailed("end_user_id is required to remember anything")
        words = " ".join(re.findall(r"[\w']+", text.lower()))  # case and punctuation aside
        key = f"{workspace_id}\x00{end_user_id}\x00{words}"
        point = qm.PointStruct(
            id=str(uuid.uuid5(_MEMORY_NS, key)),
            vector=_vector(vector),
            payload={
                "workspace_id": str(workspace_id),
                "end_user_id": end_user_id,
                "agent_id": str(agent_id) if agent_id is not None else None,
                "conversation_id": str(conversation_id) if conversation_id is not None else None,
                "text": text,
                "at": time.time(),
            },
        )
        await self._run(lambda c: c.upsert(MEMORY, points=[point], wait=True))

    async def recall(
        self,
        workspace_id: Id,
        end_user_id: str,
        vector: npt.ArrayLike,
        limit: int = 3,
        *,
        agent_id: Id | None = None,
    ) -> list[MemoryHit]:
        """What this end user said before that is nearest to ``vector``, best first."""
        query = _vector(vector)
        flt = _filter(workspace_id=workspace_id, end_user_id=end_user_id, agent_id=agent_id)
        points = await self._run(
            lambda c: (
                c.query_points(
                    MEMORY, query=query, query_filter=flt, limit=limit, with_payload=True
                ).points
            )
        )
        hits = []
        for p in points:
            payload = p.payload or {}
            agent = payload.get("agent_id")
            hits.append(
                MemoryHit(
                    text=str(payload.get("text", "")),
                    score=float(p.score),
                    end_user_id=str(payload.get("end_user_id")),
                    agent_id=str(agent) if agent is not None else None,
                    at=datetime.fromtimestamp(float(payload.get("at", 0.0)), UTC),
                )
            )
        return hits

    async def forget(self, workspace_id: Id, end_user_id: str) -> None:
        """Erase everything remembered about one end user (a deletion request)."""
        flt = _filter(workspace_id=workspace_id, end_user_id=end_user_id)
        await self._run(lambda c: c.delete(MEMORY, points_selector=flt, wait=True))

    # -- a workspace's whole data (retention, export, deletion) --------------------------------

    async def forget_conversations(self, workspace_id: Id, conversation_ids: Sequence[Id]) -> None:
        """Erase the memories made in these conversations (their transcripts expired)."""
        if not conversation_ids:
            return
        qm = await self._models()
        flt = _filter(workspace_id=workspace_id)
        flt.must.append(  # type: ignore[union-attr]  # _filter always builds a list
            qm.FieldCondition(
                key="conversation_id",
                match=qm.MatchAny(any=[str(cid) for cid in conversation_ids]),
            )
        )
        await self._run(lambda c: c.delete(MEMORY, points_selector=flt, wait=True))

    async def count_workspace(self, workspace_id: Id) -> dict[str, int]:
        """Points per collection that belong to the workspace."""
        flt = _filter(workspace_id=workspace_id)
        counts: dict[str, int] = {}
        for name in (KNOWLEDGE, MEMORY):
            counts[name] = await self._run(functools.partial(_count, collection=name, flt=flt))
        return counts

    async def workspace_payloads(self, workspace_id: Id) -> list[tuple[str, str, dict[str, Any]]]:
        """Every point of the workspace as (collection, point id, payload), vectors left out
        (they are derived from the texts in the payloads)."""
        flt = _filter(workspace_id=workspace_id)
        found: list[tuple[str, str, dict[str, Any]]] = []
        for name in (KNOWLEDGE, MEMORY):
            offset: Any = None
            while True:
                points, offset = await self._run(
                    functools.partial(_scroll, collection=name, flt=flt, offset=offset)
                )
                found.extend((name, str(p.id), dict(p.payload or {})) for p in points)
                if offset is None:
                    break
        return found

    async def delete_workspace(self, workspace_id: Id) -> None:
        """Erase every point of the workspace, in both collections."""
        flt = _filter(workspace_id=workspace_id)
        for name in (KNOWLEDGE, MEMORY):
            await self._run(functools.partial(_delete, collection=name, flt=flt))

    # -- lifetime ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_client)
        await asyncio.to_thread(self._executor.shutdown, True)

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _models(self) -> Any:
        """qdrant's model classes. Its first import reads dozens of modules from disk, which
        must not happen on the event loop; later calls find it in ``sys.modules`` at once."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, importlib.import_module, "qdrant_client.http.models"
        )

    async def _run(self, fn: Callable[[QdrantClient], T]) -> T:
        if self._closed:
            raise EngineError("the vector store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn))

    def _call(self, fn: Callable[[QdrantClient], T]) -> T:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            return fn(self._open())
        except ResponseHandlingException as exc:
            raise EngineError(f"Qdrant unreachable: {exc}", retryable=True) from exc
        except UnexpectedResponse as exc:
            status = exc.status_code or 0
            retryable = status in (408, 429) or status >= 500
            raise EngineError(f"Qdrant error {status}", retryable=retryable) from exc
        except (OSError, RuntimeError) as exc:
            # Local mode: the folder is locked by another process, or is not writable.
            raise EngineError(f"Qdrant storage failed: {exc}") from exc

    def _open(self) -> QdrantClient:
        """On the executor thread: the client, opened and its collections ensured on first use."""
        if self._client is not None:
            return self._client
        from qdrant_client import QdrantClient

        if self._path is not None:
            self._path.mkdir(parents=True, exist_ok=True)
            client = QdrantClient(path=str(self._path))
        else:
            client = QdrantClient(url=self._url, api_key=self._api_key, timeout=_REMOTE_TIMEOUT_S)
        try:
            for name, keys in (
                (KNOWLEDGE, ("workspace_id", "agent_id", "document_id")),
                (MEMORY, ("workspace_id", "end_user_id", "agent_id")),
            ):
                self._ensure_collection(client, name, keys)
        except BaseException:
            client.close()
            raise
        self._client = client
        return client

    def _ensure_collection(self, client: QdrantClient, name: str, keys: Sequence[str]) -> None:
        from qdrant_client.http import models as qm
        from qdrant_client.http.exceptions import UnexpectedResponse

        if client.collection_exists(name):
            return
        try:
            client.create_collection(
                name, vectors_config=qm.VectorParams(size=DIMENSION, distance=qm.Distance.COSINE)
            )
        except UnexpectedResponse as exc:
            # Another process created it between our check and our create.
            if exc.status_code != 409:
                raise
            return
        if not self.local:
            # Local mode ignores payload indexes (and warns); a server uses them for filtering.
            for key in keys:
                client.create_payload_index(name, key, qm.PayloadSchemaType.KEYWORD)
        log.info("created Qdrant collection %s", name)


def _upsert(client: QdrantClient, *, collection: str, points: list[qm.PointStruct]) -> None:
    client.upsert(collection, points=points, wait=True)


def _count(client: QdrantClient, *, collection: str, flt: qm.Filter) -> int:
    return int(client.count(collection, count_filter=flt, exact=True).count)


def _scroll(
    client: QdrantClient, *, collection: str, flt: qm.Filter, offset: Any
) -> tuple[list[Any], Any]:
    points, next_offset = client.scroll(
        collection, scroll_filter=flt, limit=256, offset=offset, with_payload=True
    )
    return list(points), next_offset


def _delete(client: QdrantClient, *, collection: str, flt: qm.Filter) -> None:
    client.delete(collection, points_selector=flt, wait=True)


def _filter(**fields: Any) -> qm.Filter:
    """All given (non-None) payload fields must match exactly; workspace_id is required."""
    from qdrant_client.http import models as qm

    if fields.get("workspace_id") is None:
        raise ValueError("every vector query is scoped to a workspace")
    return qm.Filter(
        must=[
            qm.FieldCondition(key=key, match=qm.MatchValue(value=str(value)))
            for key, value in fields.items()
            if value is not None
        ]
    )
