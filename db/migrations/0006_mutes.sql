-- Muted conversations: a member's own setting, not an event. muted_until NULL mutes until
-- unmuted; a time in the past counts as not muted. The API writes and reads it (PUT and
-- DELETE /conversations/{id}/mute, each conversation's muted and muted_until for the caller);
-- the client raises no desktop notification for a muted conversation.
CREATE TABLE mutes (
    user_id text NOT NULL,
    convo_id text NOT NULL,
    muted_until timestamptz,
    PRIMARY KEY (user_id, convo_id)
);
