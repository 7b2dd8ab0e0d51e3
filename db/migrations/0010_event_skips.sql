-- Records of an events topic that the read models pass over on purpose. A projector that meets
-- a record it cannot decode (an unknown schema id, a newer version, bytes that are not Avro)
-- stops that partition there, unless the record is named here: the operator's decision, made
-- with `kchatctl skip-event`. Rebuilds read the same rows, so a replay makes the same choice.
-- Outside the read model's schema, which a rebuild replaces.
CREATE TABLE event_skips (
    topic      text        NOT NULL,
    partition  integer     NOT NULL CHECK (partition >= 0),
    "offset"   bigint      NOT NULL CHECK ("offset" >= 0),
    reason     text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
