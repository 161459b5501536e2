-- Serving tables of the speed layer's model-driven queries.

-- Every CDN event with the cluster the promoted KMeans model assigned and its distance.
CREATE TABLE IF NOT EXISTS rt_cdn_clusters (
    edge_id        text             NOT NULL,
    ts             timestamptz      NOT NULL,
    pop            text             NOT NULL,
    region         text             NOT NULL,
    event_id       text             NOT NULL,
    cluster        integer          NOT NULL,
    distance       double precision NOT NULL,
    threshold      double precision NOT NULL,
    anomalous      boolean          NOT NULL,
    model_version  text             NOT NULL,
    PRIMARY KEY (edge_id, ts)
);
CREATE INDEX IF NOT EXISTS rt_cdn_clusters_time_idx ON rt_cdn_clusters (ts);
