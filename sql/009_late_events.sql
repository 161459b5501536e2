-- Late data is counted, never silently dropped: each micro-batch's event-time watermark and
-- the rows its stateful operators dropped behind it (Spark's numRowsDroppedByWatermark).
-- The rows themselves go to the dead-letter topic with the reason "late: ...".
ALTER TABLE speed_layer_progress ADD COLUMN IF NOT EXISTS watermark timestamptz;
ALTER TABLE speed_layer_progress ADD COLUMN IF NOT EXISTS late_rows bigint;

CREATE OR REPLACE VIEW v_stream_progress AS
SELECT query, batch_id, source, batch_ts, input_rows, input_rows_per_second,
       processed_rows_per_second, offsets_behind_latest, batch_duration_ms,
       watermark, late_rows
FROM speed_layer_progress;

-- Per windowed query and topic over the last day: events that arrived behind its watermark.
CREATE OR REPLACE VIEW v_late_events AS
SELECT query, source,
       sum(late_rows) AS late_events,
       count(*) FILTER (WHERE late_rows > 0) AS batches_with_late_events,
       max(batch_ts) FILTER (WHERE late_rows > 0) AS last_late_at,
       max(watermark) AS watermark
FROM speed_layer_progress
WHERE batch_ts > now() - interval '1 day' AND watermark IS NOT NULL
GROUP BY query, source;
