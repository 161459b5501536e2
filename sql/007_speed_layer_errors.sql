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

-- One row per query that ran in the last day (or set records aside in the last week): zero
-- when nothing was set aside, so the dashboard shows "all zero" rather than "no results".
CREATE OR REPLACE VIEW v_speed_layer_set_aside AS
WITH running AS (
    SELECT DISTINCT query FROM speed_layer_progress WHERE batch_ts > now() - interval '1 day'
), recent AS (
    SELECT * FROM speed_layer_errors WHERE recorded_at > now() - interval '7 days'
), summary AS (
    SELECT query, sum(records) AS records, count(*) AS batches, max(recorded_at) AS last_at
    FROM recent GROUP BY query
), latest AS (
    SELECT DISTINCT ON (query) query, error, disposition
    FROM recent ORDER BY query, recorded_at DESC
)
SELECT q.query,
       coalesce(s.records, 0) AS records_set_aside,
       coalesce(s.batches, 0) AS batches,
       s.last_at,
       l.disposition AS last_disposition,
       l.error AS last_error
FROM (SELECT query FROM running UNION SELECT query FROM summary) AS q
LEFT JOIN summary AS s USING (query)
LEFT JOIN latest AS l USING (query);
