-- Deactivated accounts (POST /users/me/deactivate, or an operator's UPDATE): the account stays,
-- with its username (nobody else can take it) and its messages, but cannot log in. The trigger
-- of 0011 also, in the same transaction: writes UserDeactivated (schemas/Account.v2.avsc) into
-- the outbox and account_deactivated into audit_log (its source and detail from the settings
-- kchat.source and kchat.detail when the API makes the change, else postgres:<role>), revokes
-- every refresh token of the account, forgets its push subscriptions (the notifier sends
-- nothing more for it: notifier/close.c), and NOTIFYs kchat_user_revoked with the user id, on
-- which every API instance refuses the account's access tokens and every gateway closes its
-- sockets (lib/revoked.c).
ALTER TABLE users ADD COLUMN deactivated_at timestamptz;
CREATE INDEX users_deactivated ON users (deactivated_at) WHERE deactivated_at IS NOT NULL;

CREATE OR REPLACE FUNCTION account_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    actor text := coalesce(nullif(current_setting('kchat.actor', true), ''), NEW.user_id);
    kind  text;
    body  jsonb;
BEGIN
    FOR kind, body IN
        SELECT k, b FROM (VALUES
            ('UserRegistered', CASE WHEN TG_OP = 'INSERT'
                THEN jsonb_build_object('username', NEW.username) END),
            ('UsernameChanged', CASE WHEN TG_OP = 'UPDATE' AND NEW.username <> OLD.username
                THEN jsonb_build_object('username', NEW.username, 'previous', OLD.username) END),
            ('DisplayNameChanged', CASE WHEN TG_OP = 'UPDATE'
                                         AND NEW.display_name <> OLD.display_name
                THEN jsonb_build_object('display_name', NEW.display_name,
                                        'previous', OLD.display_name) END),
            ('UserDeactivated', CASE WHEN TG_OP = 'UPDATE' AND OLD.deactivated_at IS NULL
                                      AND NEW.deactivated_at IS NOT NULL
                THEN jsonb_build_object('username', NEW.username) END)
        ) AS e(k, b) WHERE b IS NOT NULL
    LOOP
        PERFORM account_outbox_add(NEW.user_id, actor, clock_timestamp(), kind, body);
    END LOOP;
    IF TG_OP = 'UPDATE' AND OLD.deactivated_at IS NULL AND NEW.deactivated_at IS NOT NULL THEN
        UPDATE refresh_tokens SET revoked_at = now()
        WHERE user_id = NEW.user_id AND revoked_at IS NULL;
        DELETE FROM push_subscriptions WHERE user_id = NEW.user_id;
        INSERT INTO audit_log (action, actor_id, target, source, detail)
        VALUES ('account_deactivated', actor, NEW.user_id,
                coalesce(nullif(current_setting('kchat.source', true), ''),
                         'postgres:' || session_user),
                coalesce(nullif(current_setting('kchat.detail', true), ''), '{}')::jsonb);
        PERFORM pg_notify('kchat_user_revoked', NEW.user_id);
    END IF;
    PERFORM pg_notify('kchat_account_outbox', '');
    RETURN NULL;
END $$;

DROP TRIGGER account_events ON users;
CREATE TRIGGER account_events AFTER INSERT OR UPDATE OF username, display_name, deactivated_at
    ON users FOR EACH ROW EXECUTE FUNCTION account_event();
