-- Account events for chat.accounts (schemas/Account.v1.avsc), through an outbox: a trigger on
-- users writes the event in the same transaction as the change, whatever made it (the API,
-- kchatctl, an operator's SQL), and the API's relay (api/accounts.c) sends the rows to Kafka in
-- event_no order and deletes them once the broker has them. Each row holds the event in Avro's
-- JSON encoding, so the relay only converts it.
CREATE TABLE account_outbox (
    event_no   bigserial   PRIMARY KEY,
    user_id    text        NOT NULL,
    event      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One event into the outbox: numbered by the table's sequence, in Avro's JSON encoding of
-- AccountEvent, its body the record named kind.
CREATE FUNCTION account_outbox_add(uid text, actor text, at timestamptz, kind text, body jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n bigint := nextval(pg_get_serial_sequence('account_outbox', 'event_no'));
BEGIN
    INSERT INTO account_outbox (event_no, user_id, event) VALUES (n, uid, jsonb_build_object(
        'event_id', gen_random_uuid()::text,
        'event_no', n,
        'user_id', uid,
        'actor_id', actor,
        'occurred_at', (extract(epoch FROM at) * 1000)::bigint,
        'type', kind,
        'body', jsonb_build_object('io.kchat.' || kind, body)));
END $$;

-- Who made a change, when it is not the user: `SELECT set_config('kchat.actor', $admin, true)`
-- in the same transaction.
CREATE FUNCTION account_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
                                        'previous', OLD.display_name) END)
        ) AS e(k, b) WHERE b IS NOT NULL
    LOOP
        PERFORM account_outbox_add(NEW.user_id, actor, clock_timestamp(), kind, body);
    END LOOP;
    PERFORM pg_notify('kchat_account_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER account_events AFTER INSERT OR UPDATE OF username, display_name ON users
    FOR EACH ROW EXECUTE FUNCTION account_event();

-- The accounts that exist already, registered in the order they were made.
SELECT count(account_outbox_add(user_id, user_id, created_at, 'UserRegistered',
                                jsonb_build_object('username', username)))
FROM (SELECT user_id, username, created_at FROM users ORDER BY created_at, user_id) s;
