-- The forecasts predict each hour's mean; the speed layer judges single samples, which also
-- scatter within the hour. forecast_ip_traffic stores, per hour, the band one sample falls in
-- (the interval widened by the series' within-hour scatter). Null for older forecasts: those
-- are judged by their interval, as before.
ALTER TABLE ip_forecasts ADD COLUMN IF NOT EXISTS sample_lower double precision;
ALTER TABLE ip_forecasts ADD COLUMN IF NOT EXISTS sample_upper double precision;
