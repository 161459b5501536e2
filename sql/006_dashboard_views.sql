-- The views Superset's datasets read (superset/datasets/). Dashboards depend on these names and
-- columns only, so the tables behind them can change without touching a chart.

-- Network traffic: actual per-IP features (archived history and the speed layer's live windows)
-- next to the Prophet forecast and its interval. Long form, one kind of value per row, so a time
-- filter reaches every branch's index and a chart averages each column over its time grain.
CREATE OR REPLACE VIEW v_ip_traffic AS
SELECT ip, feature, ts, value AS actual,
       NULL::double precision AS forecast,
       NULL::double precision AS forecast_lower,
       NULL::double precision AS forecast_upper
FROM ip_history
UNION ALL
SELECT src_ip, feature, window_start, mean, NULL, NULL, NULL
FROM rt_ip_windows
UNION ALL
SELECT ip, feature, ds, NULL, yhat, yhat_lower, yhat_upper
FROM ip_forecasts;

CREATE OR REPLACE VIEW v_ip_windows AS
SELECT window_start, window_end, src_ip AS ip, feature, samples, total, mean
FROM rt_ip_windows;

-- Scans: what the forecast-deviation detector flagged on destination fan-out.
CREATE OR REPLACE VIEW v_ip_scans AS
SELECT window_start, window_end, entity AS ip, metric AS feature, value, expected, score,
       severity, model_version, detected_at
FROM anomalies
WHERE detector = 'forecast_deviations' AND metric IN ('unq_dst_ip', 'unq_dst_port');

-- Data center
CREATE OR REPLACE VIEW v_server_status AS
SELECT window_start, window_end, country_code, country_name, city, datacenter, status_color,
       severity_level, messages, total_resolution_time
FROM rt_server_status;

CREATE OR REPLACE VIEW v_cpu_windows AS
SELECT server_id, window_start, window_end, mean_cpu, std_cpu, samples, expected_mean,
       expected_std, z, status
FROM rt_cpu_windows;

-- Anomalies, with how long each took from the end of its window to being recorded.
CREATE OR REPLACE VIEW v_anomalies AS
SELECT detector, entity, metric, window_start, window_end, value, expected, score, severity,
       model_version, detected_at,
       extract(epoch FROM detected_at - window_end) AS detection_delay_s
FROM anomalies;

-- CDN
CREATE OR REPLACE VIEW v_cdn_clusters AS
SELECT edge_id, ts, pop, region, cluster, distance, threshold, anomalous, model_version,
       distance / NULLIF(threshold, 0) AS distance_ratio
FROM rt_cdn_clusters;

CREATE OR REPLACE VIEW v_models AS
SELECT model_name, version, threshold, promoted, created_at, metrics::text AS metrics
FROM model_registry;

-- Pipeline health
CREATE OR REPLACE VIEW v_stream_progress AS
SELECT query, batch_id, source, batch_ts, input_rows, input_rows_per_second,
       processed_rows_per_second, offsets_behind_latest, batch_duration_ms
FROM speed_layer_progress;

CREATE OR REPLACE VIEW v_batch_runs AS
SELECT dag_id, run_id, interval_start, interval_end, finished_at,
       extract(epoch FROM now() - finished_at) / 60 AS minutes_since
FROM batch_runs;

CREATE OR REPLACE VIEW v_hot_store_stats AS
SELECT sampled_at, backend, series, used_memory_bytes / 1048576.0 AS used_memory_mib
FROM hot_store_stats;
