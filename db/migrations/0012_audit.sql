-- The audit log: security-relevant actions with who, what, when and from where. kchat-api
-- writes a row for each (api/audit.c: logins, failed logins, refresh-token reuse, signing keys
-- first used, reads of the log), triggers for admin grants (below) and deactivations (0013),
-- and the API's relay (api/relay.c) sends every row to chat.audit
-- (schemas/Audit.v1.avsc), roughly in audit_no order, and marks it relayed. Rows stay for the admin
-- query (GET /admin/audit) until --audit-retention-days have passed, and only once relayed.
CREATE TABLE audit_log (
    audit_no    bigserial   PRIMARY KEY,
    event_id    text        NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action      text        NOT NULL CHECK (action ~ '^[a-z_]{1,64}$'),
    actor_id    text        CHECK (length(actor_id) BETWEEN 1 AND 128),
    target      text        CHECK (length(target) BETWEEN 1 AND 256),
    source      text        NOT NULL CHECK (length(source) BETWEEN 1 AND 256),
    detail      jsonb       NOT NULL DEFAULT '{}'
                CHECK (jsonb_typeof(detail) = 'object' AND octet_length(detail::text) <= 4096),
    relayed     boolean     NOT NULL DEFAULT false
);
CREATE INDEX audit_log_unrelayed ON audit_log (audit_no) WHERE NOT relayed;
CREATE INDEX audit_log_time ON audit_log (occurred_at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, audit_no) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_log_target ON audit_log (target, audit_no) WHERE target IS NOT NULL;

-- The relay hears of new rows without polling.
CREATE FUNCTION audit_log_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kchat_audit', '');
    RETURN NULL;
END $$;
CREATE TRIGGER audit_log_added AFTER INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_added();

-- kchat's own admins: they may read the audit log. Made and unmade in SQL by an operator
-- (docs/operations.md), which the trigger records with the operator's role as the source.
ALTER TABLE users ADD COLUMN is_admin boolean NOT NULL DEFAULT false;

CREATE FUNCTION admin_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NOT NEW.is_admin
       OR TG_OP = 'UPDATE' AND OLD.is_admin = NEW.is_admin THEN
        RETURN NULL;
    END IF;
    INSERT INTO audit_log (action, actor_id, target, source)
    VALUES (CASE WHEN NEW.is_admin THEN 'admin_granted' ELSE 'admin_revoked' END,
            nullif(current_setting('kchat.actor', true), ''), NEW.user_id,
            'postgres:' || session_user);
    RETURN NULL;
END $$;
CREATE TRIGGER admin_changed AFTER INSERT OR UPDATE OF is_admin ON users
    FOR EACH ROW EXECUTE FUNCTION admin_changed();

-- The public keys the API has signed tokens with, by fingerprint: a new one is a key rotation.
CREATE TABLE signing_keys (
    fingerprint   text        PRIMARY KEY CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    first_used_at timestamptz NOT NULL DEFAULT now()
);
