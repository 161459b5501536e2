-- A backtest judged against labels (a file of labelled episodes, or ground_truth for archived
-- history), and compared with what the live speed layer found over the same span.
-- Judged by lambdawatch.pipelines.quality (the overlap rule lives there, not here); null
-- where nothing could be judged (no labels, no findings or no episodes).
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS labels text;  -- where from; null: none
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS episodes bigint;  -- targeted episodes
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS detected bigint;  -- by a WARN or ERROR
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS detected_by_error bigint;
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS precision double precision;  -- WARN or ERROR
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS recall double precision;
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS error_precision double precision;
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS error_recall double precision;
ALTER TABLE backtest_runs ADD COLUMN IF NOT EXISTS median_time_to_detect_s double precision;

-- Every labelled episode a run was judged on, and when its first finding said so.
CREATE TABLE IF NOT EXISTS backtest_episodes (
    run_id        text        NOT NULL REFERENCES backtest_runs ON DELETE CASCADE,
    entity        text        NOT NULL,
    kind          text        NOT NULL,
    start_ts      timestamptz NOT NULL,
    end_ts        timestamptz NOT NULL,
    first_finding timestamptz,  -- the end of the first WARN or ERROR finding overlapping it
    first_error   timestamptz,  -- ... of the first ERROR
    time_to_detect_s double precision,  -- first_finding - start_ts; null: missed
    PRIMARY KEY (run_id, entity, kind, start_ts)
);

CREATE OR REPLACE VIEW v_backtest_runs AS
SELECT run_id, detector, history, model_versions, judged, warn, error, first_event,
       last_event, started_at, finished_at, labels, episodes, detected, detected_by_error,
       precision, recall, error_precision, error_recall, median_time_to_detect_s
FROM backtest_runs;

-- A run's findings beside the live anomalies of the same detector over the run's span, keyed
-- as anomalies are (entity, metric, window start): found by both, by one, or at another
-- severity.
CREATE OR REPLACE VIEW v_backtest_findings AS
SELECT r.run_id, r.detector, f.entity, f.metric, f.window_start,
       f.backtest_severity, f.live_severity,
       CASE WHEN f.live_severity IS NULL THEN 'backtest only'
            WHEN f.backtest_severity IS NULL THEN 'live only'
            WHEN f.live_severity = f.backtest_severity THEN 'both'
            ELSE 'both, other severity' END AS agreement
FROM backtest_runs r
CROSS JOIN LATERAL (
    SELECT coalesce(b.entity, a.entity) AS entity, coalesce(b.metric, a.metric) AS metric,
           coalesce(b.window_start, a.window_start) AS window_start,
           b.severity AS backtest_severity, a.severity AS live_severity
    FROM (SELECT entity, metric, window_start, severity FROM backtest_anomalies
           WHERE run_id = r.run_id) b
    FULL JOIN (SELECT entity, metric, window_start, severity FROM anomalies
                WHERE detector = r.detector
                  AND window_start BETWEEN r.first_event AND r.last_event) a
      USING (entity, metric, window_start)
) f;

CREATE OR REPLACE VIEW v_backtest_episodes AS
SELECT e.run_id, r.detector, e.entity, e.kind, e.start_ts, e.end_ts, e.first_finding,
       e.first_error, e.time_to_detect_s, e.first_finding IS NOT NULL AS detected
FROM backtest_episodes e JOIN backtest_runs r USING (run_id);
