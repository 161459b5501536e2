-- CDN events per minute, KMeans cluster and model version: what "Cluster sizes over time"
-- reads instead of a day of per-event rows (bench/dashboards: the one chart above 1 s at 30
-- days). The speed layer refreshes the minutes each micro-batch touched, right after writing
-- rt_cdn_clusters, with the function below; a minute is recomputed from rt_cdn_clusters, not
-- added to, so a replayed micro-batch or a late event leaves it exact. It holds the minutes
-- rt_cdn_clusters holds: each refresh drops those before its oldest row, so the table's
-- retention (retention.days, apply_retention) bounds both.
CREATE TABLE IF NOT EXISTS rt_cdn_cluster_minutes (
    minute         timestamptz NOT NULL,
    cluster        integer     NOT NULL,
    model_version  text        NOT NULL,
    events         bigint      NOT NULL,
    anomalous      bigint      NOT NULL,
    PRIMARY KEY (minute, cluster, model_version)
);

-- Minutes are UTC minutes whatever the session's time zone (date_bin from a typed origin).
CREATE OR REPLACE FUNCTION lambdawatch_refresh_cdn_cluster_minutes(
    first_ts timestamptz, last_ts timestamptz
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first_minute timestamptz := date_bin(INTERVAL '1 minute', first_ts,
                                         TIMESTAMPTZ '2000-01-01 00:00:00+00');
    last_minute timestamptz := date_bin(INTERVAL '1 minute', last_ts,
                                        TIMESTAMPTZ '2000-01-01 00:00:00+00');
    written bigint;
BEGIN
    DELETE FROM rt_cdn_cluster_minutes WHERE minute BETWEEN first_minute AND last_minute;
    INSERT INTO rt_cdn_cluster_minutes (minute, cluster, model_version, events, anomalous)
    SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           cluster, model_version, count(*), count(*) FILTER (WHERE anomalous)
    FROM rt_cdn_clusters
    WHERE ts >= first_minute AND ts < last_minute + INTERVAL '1 minute'
    GROUP BY 1, 2, 3;
    GET DIAGNOSTICS written = ROW_COUNT;
    DELETE FROM rt_cdn_cluster_minutes
    WHERE minute < (SELECT date_bin(INTERVAL '1 minute', min(ts),
                                    TIMESTAMPTZ '2000-01-01 00:00:00+00')
                    FROM rt_cdn_clusters);
    RETURN written;
END
$$;

-- What the speed layer wrote before this migration.
SELECT lambdawatch_refresh_cdn_cluster_minutes(min(ts), max(ts))
FROM rt_cdn_clusters HAVING count(*) > 0;

CREATE OR REPLACE VIEW v_cdn_cluster_minutes AS
SELECT minute, cluster, model_version, events, anomalous
FROM rt_cdn_cluster_minutes;
