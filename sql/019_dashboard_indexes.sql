-- Indexes for the dashboard charts that read the most rows at 30 days of retained data
-- (bench/dashboards). On the partitioned tables each applies to every day's partition.

-- "IP traffic: actual vs forecast": a week of one feature from the archive and the live
-- windows; with the value in the index, a day is an index-only range, not a whole partition.
CREATE INDEX IF NOT EXISTS ip_history_feature_time_idx ON ip_history (feature, ts) INCLUDE (value);
CREATE INDEX IF NOT EXISTS rt_ip_windows_feature_time_idx
    ON rt_ip_windows (feature, window_start) INCLUDE (mean);

-- "Records lost to retention" (v_lost_records): the few batches that lost records, without
-- reading a week of progress rows.
CREATE INDEX IF NOT EXISTS speed_layer_progress_lost_idx
    ON speed_layer_progress (batch_ts) WHERE lost_rows > 0;
