-- kchat-notifier's state: everything it has decided lives here, so a notifier that is killed
-- loses nothing and sends nothing twice under a different name.
--
-- notify_offsets: the next offset of chat.events to read, per partition, written in the same
-- statement as the pending notifications the events before it made (each event counts once,
-- like the projector's offsets).
CREATE TABLE notify_offsets (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- notify_pending: a notification gathering company. The first message a member is to hear of
-- in a conversation opens it, due --coalesce-ms later (at once for a mention); later messages
-- before then add to its count. When due it becomes rows of notify_outbox and goes.
CREATE TABLE notify_pending (
    user_id       text        NOT NULL,
    convo_id      text        NOT NULL,
    first_seq     bigint      NOT NULL,
    last_seq      bigint      NOT NULL,
    count         integer     NOT NULL,
    senders       text[]      NOT NULL,  -- user ids, first come first (at most 5)
    last_sender   text        NOT NULL,  -- username of the last message's sender
    last_content  text        NOT NULL,  -- the last message's text (cut to 512 bytes)
    mention       boolean     NOT NULL DEFAULT false,
    last_at       timestamptz NOT NULL,  -- when the last message was made
    due_at        timestamptz NOT NULL,
    claimed_until timestamptz,           -- a notifier is turning it into outbox rows
    PRIMARY KEY (user_id, convo_id)
);
CREATE INDEX notify_pending_due ON notify_pending (due_at);

-- notify_outbox: one send to one target (a push subscription or a webhook URL). msg_id and
-- topic are fixed when the row is made, so every attempt of a send, after a crash too, carries
-- the same webhook-id and the same Topic header. A row leaves when the target took it, refused
-- it for good or its deadline passed.
CREATE TABLE notify_outbox (
    id            bigserial   PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('push', 'webhook')),
    target        text        NOT NULL,  -- push_subscriptions.id, or the webhook's URL
    origin        text        NOT NULL,  -- scheme://host[:port] the send goes to
    user_id       text        NOT NULL,
    convo_id      text        NOT NULL,
    msg_id        text        NOT NULL,
    topic         text        NOT NULL,
    urgency       text        NOT NULL DEFAULT 'normal',
    payload       text        NOT NULL,
    event_at      timestamptz NOT NULL,  -- the newest message it tells of
    created_at    timestamptz NOT NULL DEFAULT now(),
    deadline      timestamptz NOT NULL,
    next_at       timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    claimed_until timestamptz,
    UNIQUE (kind, target, msg_id)
);
CREATE INDEX notify_outbox_next ON notify_outbox (next_at);
