-- Records the speed layer could not write and set aside (to the dead-letter topic, or to a
-- quarantine file under var/ when that failed too), one row per query and micro-batch: the
-- query went on, and these rows tell an operator what it skipped and where it went.
CREATE TABLE IF NOT EXISTS speed_layer_errors (
    query        text        NOT NULL,
    batch_id     bigint      NOT NULL,
    error        text        NOT NULL,  -- the first record's reason
    records      integer     NOT NULL,
    disposition  text        NOT NULL CHECK (disposition IN ('dead_letters', 'quarantine')),
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (query, batch_id)
);

CREATE OR REPLACE VIEW v_speed_layer_errors AS
SELECT query, batch_id, error, records, disposition, recorded_at
FROM speed_layer_errors;
