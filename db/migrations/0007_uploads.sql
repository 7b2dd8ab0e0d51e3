-- Attachment uploads: one row per presigned upload, written by the API (POST
-- /attachments/presign), filled in when the stored object has been checked (POST
-- /attachments/{id}/complete), and marked when its objects were removed (the API's sweep:
-- never sent, or only deleted messages carry it). The gateways read a row when a message
-- carries the attachment: what goes into the event is what the API found in the object
-- store, never the client's word. Not events: a rebuild of the read model leaves them.
CREATE TABLE uploads (
    id           text PRIMARY KEY,        -- a_ and random characters
    key          text NOT NULL UNIQUE,    -- the object's key in the bucket
    convo_id     text NOT NULL,           -- the conversation it may be sent to
    user_id      text NOT NULL,           -- who may send it (who presigned it)
    name         text NOT NULL,           -- the file name given
    content_type text NOT NULL,           -- as presigned (signed into the upload)
    size         bigint,                  -- the stored object's, once checked
    width        integer,                 -- an image's, once checked
    height       integer,
    thumb_key    text,                    -- an image's thumbnail, beside the original
    created_at   timestamptz NOT NULL DEFAULT now(),
    checked_at   timestamptz,             -- checked against the stored object
    send_by      timestamptz NOT NULL,    -- a message may carry it until then
    removed_at   timestamptz              -- its objects were removed (or are being)
);
-- The sweep's candidates, and a user's uploads waiting to be completed.
CREATE INDEX uploads_live ON uploads (send_by) WHERE removed_at IS NULL;
CREATE INDEX uploads_waiting ON uploads (user_id) WHERE checked_at IS NULL AND removed_at IS NULL;
