-- The read model's first tables: users, and the projector's applied offsets. Credentials,
-- conversations, members and messages come with the API and the projector.
CREATE TABLE users (
    user_id     text PRIMARY KEY,
    username    text NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 64),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The projector stores the offsets it has applied in the same transaction as the rows.
CREATE TABLE projector_offsets (
    consumer    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);
