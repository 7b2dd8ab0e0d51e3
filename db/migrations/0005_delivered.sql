-- Delivery marks: the highest seq_no of each conversation that reached a socket of each
-- user. The gateways write them (gathered per tick, only ever moved forward); the API reads
-- them into a conversation's receipts (delivered_seq), so the double ticks survive a reload.
-- They are not events: a rebuild of the read model leaves them, and losing some loses only
-- ticks until the next message is delivered.
CREATE TABLE delivered (
    convo_id text NOT NULL,
    user_id text NOT NULL,
    delivered_seq bigint NOT NULL,
    PRIMARY KEY (convo_id, user_id)
);
