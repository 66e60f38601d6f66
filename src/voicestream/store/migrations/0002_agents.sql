-- 0002: agents, their knowledge documents, and conversations with their transcripts.
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

CREATE TABLE agents (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id   uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    instructions   text NOT NULL DEFAULT '',
    voice          text NOT NULL,
    language       text NOT NULL DEFAULT 'en',
    first_message  text,
    -- Per-agent chat-completions endpoint {"base_url", "model", "api_key"?, ...}; NULL means the
    -- server-wide LLM if one is configured, else the knowledge-base agent.
    llm            jsonb CHECK (llm IS NULL OR jsonb_typeof(llm) = 'object'),
    -- Reachable by the browser widget without a key or ticket.
    public         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agents_workspace_idx ON agents (workspace_id, created_at, id);

CREATE TABLE agent_documents (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id       uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- Redundant with the agent's, so every lookup can filter on the tenant directly.
    workspace_id   uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    content_type   text NOT NULL,
    -- The extracted text (a PDF's text, not its bytes): enough to chunk and embed it again.
    text           text NOT NULL,
    chunks         integer NOT NULL DEFAULT 0 CHECK (chunks >= 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agent_documents_agent_idx ON agent_documents (agent_id, created_at, id);

CREATE TABLE conversations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id   uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- The transcript outlives the agent: deleting an agent keeps its conversations.
    agent_id       uuid REFERENCES agents (id) ON DELETE SET NULL,
    end_user_id    text,
    transport      text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    ended_at       timestamptz,
    status         text NOT NULL DEFAULT 'active' CHECK (status <> ''),
    -- The last turn's seq: turns are numbered under this row's lock, so concurrent writers
    -- of one conversation never collide on (conversation_id, seq).
    turn_count     integer NOT NULL DEFAULT 0
);

CREATE INDEX conversations_workspace_idx ON conversations (workspace_id, started_at DESC, id);
CREATE INDEX conversations_agent_idx
    ON conversations (agent_id, started_at DESC) WHERE agent_id IS NOT NULL;

CREATE TABLE conversation_turns (
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              integer NOT NULL CHECK (seq >= 1),
    role             text NOT NULL CHECK (role IN ('user', 'agent')),
    text             text NOT NULL,
    interrupted      boolean NOT NULL DEFAULT false,
    at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq)
);
