-- Weather: each reading's temperature − feels-like beside its city's batch mean and σ
-- (baseline_stats), and how far from them it is.
CREATE OR REPLACE VIEW v_weather AS
SELECT w.ts, w.city, w.temperature, w.feels_like, w.temperature_minus_feels_like,
       b.mean AS baseline_mean, b.stddev AS baseline_stddev, b.variance AS baseline_variance,
       b.mean - 2 * b.stddev AS baseline_lower, b.mean + 2 * b.stddev AS baseline_upper,
       (w.temperature_minus_feels_like - b.mean) / NULLIF(b.stddev, 0) AS z
FROM rt_weather w
LEFT JOIN baselines b
       ON b.metric = 'temperature_minus_feels_like' AND b.entity = w.city;
