-- The oldest sample the hot store holds when sampled: hot-store series no longer expire by
-- themselves (only the archive trims, behind what it verified), so how far behind the archive
-- is must be seen; Pipeline health charts the lag and an anomaly is raised past the limit.
ALTER TABLE hot_store_stats ADD COLUMN IF NOT EXISTS oldest_sample_at timestamptz;

CREATE OR REPLACE VIEW v_hot_store_stats AS
SELECT sampled_at, backend, series, used_memory_bytes / 1048576.0 AS used_memory_mib,
       oldest_sample_at,
       extract(epoch FROM sampled_at - oldest_sample_at) / 3600.0 AS archive_lag_hours
FROM hot_store_stats;
