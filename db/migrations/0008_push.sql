-- Web Push subscriptions (RFC 8030): a browser's endpoint and its keys (RFC 8291), per user.
-- kchat-api writes them (POST/DELETE /push/subscriptions); kchat-notifier reads them and
-- deletes one its push service answers 404 or 410 for. One endpoint belongs to one user: a
-- browser that subscribes again for another user moves the row.
CREATE TABLE push_subscriptions (
    id         text        PRIMARY KEY,
    user_id    text        NOT NULL,
    endpoint   text        NOT NULL UNIQUE,
    p256dh     text        NOT NULL,
    auth       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id);
