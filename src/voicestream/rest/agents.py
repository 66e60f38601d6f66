"""``/v1/agents``: agents as workspace resources, and their knowledge documents.

Any key of the workspace may read; writing takes the editor role or above. Ids from another
workspace, and malformed ids, are 404s. Knowledge is chunked and embedded off the event loop,
and an agent or document is committed only together with its vectors: a failed embedding or
vector write leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ..engines.agents.chunking import CONTENT_TYPES, Passage, chunk_document, document_text
from ..engines.agents.openai_chat import SEARCH_KNOWLEDGE
from ..errors import (
    Forbidden,
    PayloadTooLarge,
    UnsupportedFormat,
    ValidationFailed,
)
from ..identity.audit_trail import audit
from ..identity.request_principal import principal_of
from ..store.agents import Agent, AgentDocument, AgentSpec, NewDocument
from ..store.keys import Principal, Role
from .bodies import read_model
from .multipart import read_form
from .resources import AGENTS, KNOWLEDGE, MEDIA_EXECUTOR, REGISTRY, SETTINGS
from .secret_fields import optional_secret

__all__ = [
    "AGENTS_PREFIX",
    "MAX_DOCUMENT_CHARS",
    "MAX_KNOWLEDGE_CHARS",
    "AgentCreateBody",
    "AgentDetail",
    "AgentList",
    "AgentModel",
    "AgentPatchBody",
    "DocumentBody",
    "DocumentList",
    "DocumentModel",
    "agents_app",
]

log = logging.getLogger(__name__)

MAX_KNOWLEDGE_CHARS: Final = 100_000  # one inline knowledge text or JSON document
MAX_DOCUMENT_CHARS: Final = 500_000  # the text extracted from one uploaded file
MAX_DOCUMENT_BYTES: Final = 20 * 1024 * 1024  # an uploaded file (a PDF is mostly not text)
MAX_KNOWLEDGE_ITEMS: Final = 50
_TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_EXTENSIONS: Final = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".pdf": "application/pdf",
}

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Language = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
KnowledgeText = Annotated[str, StringConstraints(max_length=MAX_KNOWLEDGE_CHARS)]


# --- request bodies -------------------------------------------------------------------------


class FunctionSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(pattern=_TOOL_NAME)]
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, v: str) -> str:
        if v == SEARCH_KNOWLEDGE:
            raise ValueError(f"{SEARCH_KNOWLEDGE} is built in; do not declare it")
        return v


class ToolSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"] = "function"
    function: FunctionSchema


class LLMBody(BaseModel):
    """A chat-completions endpoint for one agent."""

    model_config = ConfigDict(extra="forbid")
    base_url: str | None = Field(None, max_length=2000)
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    api_key: Annotated[str, StringConstraints(max_length=4000)] | None = optional_secret()
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32_000)
    tools: list[ToolSchema] = Field(default_factory=list, max_length=32)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    def stored(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        if not data.get("tools"):
            data.pop("tools", None)
        return data


class AgentCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    instructions: Annotated[str, StringConstraints(max_length=20_000)] = ""
    voice: str | None = Field(None, max_length=200)
    language: Language = "en"
    first_message: Annotated[str, StringConstraints(max_length=2000)] | None = None
    knowledge: list[KnowledgeText] = Field(default_factory=list, max_length=MAX_KNOWLEDGE_ITEMS)
    llm: LLMBody | None = None
    public: bool = False


class AgentPatchBody(BaseModel):
    """Only the fields sent change; ``null`` clears ``first_message`` or ``llm``."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    instructions: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    voice: str | None = Field(None, max_length=200)
    language: Language | None = None
    first_message: Annotated[str, StringConstraints(max_length=2000)] | None = None
    llm: LLMBody | None = None
    public: bool | None = None


class DocumentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = "document"
    text: KnowledgeText
    content_type: Literal["text/plain", "text/markdown"] = "text/plain"


# --- responses ------------------------------------------------------------------------------


class LLMSettingsModel(BaseModel):
    """An agent's chat endpoint as stored, without its API key. Only the settings that were
    given appear (responses are serialized with ``exclude_unset``)."""

    base_url: str | None = None
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[ToolSchema] | None = None
    api_key_set: bool
    api_key_hint: str | None = Field(
        description="Enough of the key to tell keys apart (`sk-…abcd`); null for a short key."
    )

    @classmethod
    def of(cls, agent: Agent) -> LLMSettingsModel | None:
        # The store's public form decides what of a key may show; this model's fields are a
        # second filter: nothing stored beyond them is ever serialized.
        public = agent.to_dict()["llm"]
        return None if public is None else cls.model_validate(public)


class DocumentModel(BaseModel):
    id: UUID
    agent_id: UUID
    name: str
    content_type: str
    characters: int  # of extracted text
    chunks: int  # passages embedded for retrieval
    created_at: datetime

    @classmethod
    def of(cls, doc: AgentDocument) -> DocumentModel:
        return cls(
            id=doc.id,
            agent_id=doc.agent_id,
            name=doc.name,
            content_type=doc.content_type,
            characters=doc.characters,
            chunks=doc.chunks,
            created_at=doc.created_at,
        )


class AgentModel(BaseModel):
    id: UUID
    workspace_id: UUID
    name: str
    instructions: str
    voice: str
    language: str
    first_message: str | None
    llm: LLMSettingsModel | None  # null: the server's default endpoint
    public: bool  # anyone with the id may open a conversation, without a key
    created_at: datetime
    updated_at: datetime

    @classmethod
    def fields_of(cls, agent: Agent) -> dict[str, Any]:
        return {
            "id": agent.id,
            "workspace_id": agent.workspace_id,
            "name": agent.name,
            "instructions": agent.instructions,
            "voice": agent.voice,
            "language": agent.language,
            "first_message": agent.first_message,
            "llm": LLMSettingsModel.of(agent),
            "public": agent.public,
            "created_at": agent.created_at,
            "updated_at": agent.updated_at,
        }

    @classmethod
    def of(cls, agent: Agent) -> AgentModel:
        return cls(**cls.fields_of(agent))


class AgentDetail(AgentModel):
    documents: list[DocumentModel]

    @classmethod
    def with_documents(cls, agent: Agent, documents: list[AgentDocument]) -> AgentDetail:
        return cls(
            **AgentModel.fields_of(agent), documents=[DocumentModel.of(d) for d in documents]
        )


class AgentList(BaseModel):
    agents: list[AgentModel]


class DocumentList(BaseModel):
    documents: list[DocumentModel]


def _json(body: BaseModel, status: int = 200) -> web.Response:
    # exclude_unset: an agent's LLM settings list only what was given, as they are stored.
    return web.json_response(text=body.model_dump_json(exclude_unset=True), status=status)


# --- helpers --------------------------------------------------------------------------------


def _require(request: web.Request, role: Role) -> Principal:
    principal = principal_of(request)
    if not principal.has_role(role):
        raise Forbidden(
            f"this needs the {role} role or above; the key's role is {principal.role}",
            details={"required": role, "role": principal.role},
        )
    return principal


def _check_voice(request: web.Request, voice: str) -> str:
    request.config_dict[REGISTRY].voice(voice)  # raises UnknownVoice (400: a body field)
    return voice


def _check_llm(request: web.Request, llm: LLMBody | None) -> dict[str, Any] | None:
    if llm is None:
        return None
    if llm.base_url is None and not request.config_dict[SETTINGS].llm_base_url:
        raise ValidationFailed(
            "llm.base_url is required: this server has no VOICESTREAM_LLM_BASE_URL",
            details={"fields": [{"field": "llm.base_url", "message": "required"}]},
        )
    return llm.stored()


async def _passages(request: web.Request, text: str, content_type: str) -> list[Passage]:
    # Regex work over up to hundreds of kilobytes: not on the loop.
    executor = request.config_dict[MEDIA_EXECUTOR]
    passages = await executor.run(lambda: chunk_document(text, content_type))
    if not passages:
        raise ValidationFailed("the document has no text")
    return passages


# --- agents ---------------------------------------------------------------------------------


async def create_agent(request: web.Request) -> web.Response:
    principal = _require(request, "editor")
    knowledge = request.config_dict[KNOWLEDGE]
    body = await read_model(request, AgentCreateBody)
    default_voice = request.config_dict[SETTINGS].default_voice
    spec = AgentSpec(
        name=body.name,
        voice=_check_voice(request, body.voice or default_voice),
        instructions=body.instructions,
        language=body.language,
        first_message=body.first_message or None,
        llm=_check_llm(request, body.llm),
        public=body.public,
    )
    texts = [t for t in body.knowledge if t.strip()]
    chunked = [await _passages(request, t, "text/plain") for t in texts]
    flat = [p for passages in chunked for p in passages]
    vectors = await knowledge.embed_passages(flat) if flat else None
    documents = [
        NewDocument(f"knowledge {i + 1}", "text/plain", text, len(passages))
        for i, (text, passages) in enumerate(zip(texts, chunked, strict=True))
    ]

    async def store_vectors(agent: Agent, docs: list[AgentDocument]) -> None:
        start = 0
        for doc, passages in zip(docs, chunked, strict=True):
            assert vectors is not None
            await knowledge.store_passages(
                str(agent.workspace_id),
                str(agent.id),
                str(doc.id),
                passages,
                vectors[start : start + len(passages)],
            )
            start += len(passages)

    agent, docs = await request.config_dict[AGENTS].create(
        principal.workspace_id, spec, documents, before_commit=store_vectors if flat else None
    )
    # Recorded after the commit, since the id exists only then, and not inside the transaction
    # (the append would wait for a second pooled connection while holding one). If the entry
    # cannot be written, the agent is deleted again: no agent without its entry.
    try:
        await audit(request, "agent.created", "agent", agent.id, details={"name": agent.name})
    except Exception:
        await _undo_create(request, agent)
        raise
    return _json(AgentDetail.with_documents(agent, docs), 201)


async def _undo_create(request: web.Request, agent: Agent) -> None:
    async def drop_vectors() -> None:
        await request.config_dict[KNOWLEDGE].delete_agent(str(agent.workspace_id), str(agent.id))

    try:
        await request.config_dict[AGENTS].delete(
            agent.workspace_id, agent.id, before_commit=drop_vectors
        )
    except Exception as exc:  # the original failure is the one to report
        log.warning("agent %s stays without its audit entry: %r", agent.id, exc)


async def list_agents(request: web.Request) -> web.Response:
    principal = principal_of(request)
    agents = await request.config_dict[AGENTS].list(principal.workspace_id)
    return _json(AgentList(agents=[AgentModel.of(a) for a in agents]))


async def get_agent(request: web.Request) -> web.Response:
    principal = principal_of(request)
    agents = request.config_dict[AGENTS]
    agent = await agents.get(principal.workspace_id, request.match_info["agent_id"])
    documents = await agents.list_documents(agent.workspace_id, agent.id)
    return _json(AgentDetail.with_documents(agent, documents))


async def patch_agent(request: web.Request) -> web.Response:
    principal = _require(request, "editor")
    agents = request.config_dict[AGENTS]
    agent_id = request.match_info["agent_id"]
    # Unknown agent first: a 404 should not depend on what the body says.
    current = await agents.get(principal.workspace_id, agent_id)
    body = await read_model(request, AgentPatchBody)
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name not in ("first_message", "llm"):
            raise ValidationFailed(
                f"{name} cannot be null",
                details={"fields": [{"field": name, "message": "cannot be null"}]},
            )
        changes[name] = value
    if "voice" in changes:
        _check_voice(request, changes["voice"])
    if "llm" in changes:
        changes["llm"] = _check_llm(request, body.llm)
    if changes.get("first_message") == "":
        changes["first_message"] = None
    # Before the write: an entry that cannot be written stops the change (503). Should the
    # write then fail, the entry stands for an attempt; never a change without its entry.
    await audit(request, "agent.updated", "agent", current.id, details={"fields": sorted(changes)})
    agent = await agents.update(principal.workspace_id, agent_id, changes)
    return _json(AgentModel.of(agent))


async def delete_agent(request: web.Request) -> web.Response:
    principal = _require(request, "editor")
    agents = request.config_dict[AGENTS]
    agent = await agents.get(principal.workspace_id, request.match_info["agent_id"])

    async def drop_vectors() -> None:
        await request.config_dict[KNOWLEDGE].delete_agent(str(agent.workspace_id), str(agent.id))

    # Before the delete, as for an update (and not inside its transaction: see create_agent).
    await audit(request, "agent.deleted", "agent", agent.id, details={"name": agent.name})
    await agents.delete(agent.workspace_id, agent.id, before_commit=drop_vectors)
    return web.Response(status=204)


# --- documents ------------------------------------------------------------------------------


async def add_document(request: web.Request) -> web.Response:
    principal = _require(request, "editor")
    agents = request.config_dict[AGENTS]
    knowledge = request.config_dict[KNOWLEDGE]
    agent = await agents.get(principal.workspace_id, request.match_info["agent_id"])
    name, content_type, text = await _read_document(request)
    passages = await _passages(request, text, content_type)
    vectors = await knowledge.embed_passages(passages)

    async def store_vectors(doc: AgentDocument) -> None:
        await knowledge.store_passages(
            str(agent.workspace_id), str(agent.id), str(doc.id), passages, vectors
        )

    doc = await agents.add_document(
        agent.workspace_id,
        agent.id,
        NewDocument(name, content_type, text, len(passages)),
        before_commit=store_vectors,
    )
    # After the commit and undone without its entry, as in create_agent.
    details = {"agent_id": str(agent.id), "name": doc.name, "content_type": doc.content_type}
    try:
        await audit(request, "agent.document_added", "agent_document", doc.id, details=details)
    except Exception:
        await _undo_add_document(request, agent, doc)
        raise
    return _json(DocumentModel.of(doc), 201)


async def _undo_add_document(request: web.Request, agent: Agent, doc: AgentDocument) -> None:
    async def drop_vectors() -> None:
        knowledge = request.config_dict[KNOWLEDGE]
        await knowledge.delete_document(str(agent.workspace_id), str(agent.id), str(doc.id))

    try:
        await request.config_dict[AGENTS].delete_document(
            agent.workspace_id, agent.id, doc.id, before_commit=drop_vectors
        )
    except Exception as exc:  # the original failure is the one to report
        log.warning("document %s stays without its audit entry: %r", doc.id, exc)


async def list_documents(request: web.Request) -> web.Response:
    principal = principal_of(request)
    docs = await request.config_dict[AGENTS].list_documents(
        principal.workspace_id, request.match_info["agent_id"]
    )
    return _json(DocumentList(documents=[DocumentModel.of(d) for d in docs]))


async def delete_document(request: web.Request) -> web.Response:
    principal = _require(request, "editor")
    agents = request.config_dict[AGENTS]
    agent = await agents.get(principal.workspace_id, request.match_info["agent_id"])
    document_id = request.match_info["document_id"]

    async def drop_vectors() -> None:
        knowledge = request.config_dict[KNOWLEDGE]
        await knowledge.delete_document(str(agent.workspace_id), str(agent.id), document_id)

    # Before the delete, as in delete_agent; an unknown document id is a 404 without an entry.
    await agents.document_text(agent.workspace_id, agent.id, document_id)
    await audit(
        request,
        "agent.document_deleted",
        "agent_document",
        document_id,
        details={"agent_id": str(agent.id)},
    )
    await agents.delete_document(
        agent.workspace_id, agent.id, document_id, before_commit=drop_vectors
    )
    return web.Response(status=204)


async def _read_document(request: web.Request) -> tuple[str, str, str]:
    """(name, content type, text) from a JSON body, a multipart upload or a raw file body."""
    kind = request.content_type.lower()
    if kind == "application/json":
        body = await read_model(request, DocumentBody)
        return body.name, body.content_type, body.text
    if kind == "multipart/form-data":
        name, content_type, data = await _read_multipart(request)
    elif kind in CONTENT_TYPES or kind in ("text/x-markdown", "application/octet-stream"):
        data = await _read_limited(request)
        name = request.query.get("name") or "document"
        content_type = _content_type(kind, name)
    else:
        raise UnsupportedFormat(
            f"send the document as JSON, multipart/form-data or one of {', '.join(CONTENT_TYPES)}",
            details={"content_type": kind},
        )
    name = _document_name(name)
    executor = request.config_dict[MEDIA_EXECUTOR]
    text = await executor.run(lambda: document_text(data, content_type))
    if len(text) > MAX_DOCUMENT_CHARS:
        raise PayloadTooLarge(f"the document's text exceeds {MAX_DOCUMENT_CHARS} characters")
    return name, content_type, text


async def _read_limited(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"documents are limited to {MAX_DOCUMENT_BYTES} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = min(MAX_DOCUMENT_BYTES, request.config_dict[SETTINGS].max_upload_bytes)
        raise PayloadTooLarge(f"documents are limited to {limit} bytes") from None


async def _read_multipart(request: web.Request) -> tuple[str, str, bytes]:
    """The ``file`` part (and an optional ``name`` field) of a form upload."""
    limit = min(MAX_DOCUMENT_BYTES, request.config_dict[SETTINGS].max_upload_bytes)
    too_large = PayloadTooLarge(f"documents are limited to {limit} bytes")
    form = await read_form(request, file_limit=limit, too_large=too_large)
    if form.file is None:
        raise ValidationFailed(
            "the form needs a 'file' part",
            details={"fields": [{"field": "file", "message": "required"}]},
        )
    filename = form.file.filename or "document"
    name = (form.first("name") or "")[:200]
    return name or filename, _content_type(form.file.content_type, filename), form.file.data


def _content_type(declared: str, filename: str) -> str:
    if declared == "text/x-markdown":
        return "text/markdown"
    if declared in CONTENT_TYPES:
        return declared
    suffix = re.search(r"\.[A-Za-z]+$", filename)
    guessed = _EXTENSIONS.get(suffix.group(0).lower()) if suffix else None
    if guessed is None:
        raise UnsupportedFormat(
            f"unsupported document type {declared or filename!r}; use {', '.join(CONTENT_TYPES)}",
            details={"supported": list(CONTENT_TYPES)},
        )
    return guessed


def _document_name(name: str) -> str:
    name = " ".join(name.replace("\x00", "").split())[:200]
    return name or "document"


AGENTS_PREFIX: Final = "/v1/agents"


def agents_app() -> web.Application:
    """The sub-app to mount at ``AGENTS_PREFIX`` (paths relative to it; "" is the prefix)."""
    app = web.Application()
    app.add_routes(
        [
            web.post("", create_agent),
            web.get("", list_agents, allow_head=False),
            web.get("/{agent_id}", get_agent, allow_head=False),
            web.patch("/{agent_id}", patch_agent),
            web.delete("/{agent_id}", delete_agent),
            web.post("/{agent_id}/documents", add_document),
            web.get("/{agent_id}/documents", list_documents, allow_head=False),
            web.delete("/{agent_id}/documents/{document_id}", delete_document),
        ]
    )
    return app
