-- The Postgres read model: everything here is derived from chat.events alone and can be
-- rebuilt from it. kchat-projector creates these tables in a schema of its own choosing
-- (the live one is `rm`; a rebuild fills a shadow schema and swaps it in), so this file names
-- no schema: the projector runs it with search_path set to the target schema.
-- Readers (kchat-api, kchat-gateway) always qualify names: rm.messages, rm.members, ...

CREATE TABLE conversations (
    convo_id      text        PRIMARY KEY,
    title         text        NOT NULL,
    topic         text        NOT NULL DEFAULT '',  -- ConversationUpdated
    created_by    text        NOT NULL,             -- the first owner
    created_at    timestamptz NOT NULL,
    last_seq      bigint      NOT NULL DEFAULT 0,   -- highest seq_no of a MessageCreated
    last_activity timestamptz NOT NULL              -- occurred_at of the latest event
);

CREATE TABLE members (
    convo_id  text        NOT NULL REFERENCES conversations ON DELETE CASCADE,
    user_id   text        NOT NULL,
    joined_at timestamptz NOT NULL,
    read_seq  bigint      NOT NULL DEFAULT 0,  -- ReadMarkerSet, and a sender's own messages
    role      text        NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    PRIMARY KEY (convo_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

-- Those who were members and are no more (removed or left): they may still read the history
-- up to left_seq (MembersRemoved.seq_no). A row goes when they are added again.
CREATE TABLE departures (
    convo_id  text        NOT NULL REFERENCES conversations ON DELETE CASCADE,
    user_id   text        NOT NULL,
    left_seq  bigint      NOT NULL,
    left_at   timestamptz NOT NULL,
    PRIMARY KEY (convo_id, user_id)
);
CREATE INDEX departures_by_user ON departures (user_id);

CREATE TABLE messages (
    convo_id      text        NOT NULL,
    seq_no        bigint      NOT NULL,
    server_msg_id text        NOT NULL,
    sender_id     text        NOT NULL,
    client_msg_id text        NOT NULL,
    content       text        NOT NULL,     -- '' once deleted
    content_type  text        NOT NULL DEFAULT 'text/plain',
    created_at    timestamptz NOT NULL,
    reply_to      bigint,                       -- the seq_no this message answers
    attachments   jsonb,                        -- its files (JSON array), NULL when none;
                                                -- kept once deleted, for their removal
    edited_at     timestamptz,                  -- the latest MessageEdited
    edit_count    integer     NOT NULL DEFAULT 0,   -- how many times it was edited
    deleted_at    timestamptz,
    search        tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    PRIMARY KEY (convo_id, seq_no)
);
CREATE INDEX messages_search ON messages USING gin (search);
-- Finds the message that carries an attachment (downloads, and the removal of the objects of
-- deleted messages); only messages with files are in it.
CREATE INDEX messages_attachments ON messages USING gin (attachments jsonb_path_ops)
    WHERE attachments IS NOT NULL;

-- Each member's reaction to a message (ReactionChanged: one per member and message, a row
-- gone when removed, and every row of a message gone when it is deleted). A message's counts
-- are its rows grouped by emoji; the primary key serves a page of messages (convo_id, seq_no).
CREATE TABLE reactions (
    convo_id  text   NOT NULL,
    seq_no    bigint NOT NULL,
    user_id   text   NOT NULL,
    emoji     text   NOT NULL,
    PRIMARY KEY (convo_id, seq_no, user_id)
);

-- Offsets of chat.events applied to this schema, written in the same transaction as the rows.
CREATE TABLE offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- One row: which build of the read model this schema holds. The live projector checks it in
-- every transaction, so it notices when a rebuild has swapped a new schema in under `rm`.
CREATE TABLE meta (
    only_row   boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    generation bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
