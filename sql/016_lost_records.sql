-- Records that Kafka's retention deleted before the speed layer read them (it was down longer
-- than a topic keeps data). The sources skip them (failOnDataLoss=false) instead of failing
-- every restart; each micro-batch counts what it skipped, and Pipeline health shows it.
ALTER TABLE speed_layer_progress ADD COLUMN IF NOT EXISTS lost_rows bigint;

CREATE OR REPLACE VIEW v_stream_progress AS
SELECT query, batch_id, source, batch_ts, input_rows, input_rows_per_second,
       processed_rows_per_second, offsets_behind_latest, batch_duration_ms,
       watermark, late_rows, lost_rows
FROM speed_layer_progress;

-- Per query and topic over the last week: records skipped because retention had deleted them.
CREATE OR REPLACE VIEW v_lost_records AS
SELECT query, source,
       sum(lost_rows) AS lost_records,
       count(*) AS batches_with_lost_records,
       max(batch_ts) AS last_lost_at
FROM speed_layer_progress
WHERE batch_ts > now() - interval '7 days' AND lost_rows > 0
GROUP BY query, source;
