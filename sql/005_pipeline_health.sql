-- What the platform reports about itself, for the "Pipeline health" dashboard.

-- One row per speed-layer micro-batch and Kafka source, from Spark's query progress.
CREATE TABLE IF NOT EXISTS speed_layer_progress (
    query                      text             NOT NULL,
    batch_id                   bigint           NOT NULL,
    source                     text             NOT NULL,  -- topic(s) the source subscribes to
    batch_ts                   timestamptz      NOT NULL,
    input_rows                 bigint           NOT NULL,
    input_rows_per_second      double precision,
    processed_rows_per_second  double precision,
    offsets_behind_latest      bigint,  -- consumer lag: summed over the partitions
    batch_duration_ms          bigint,
    PRIMARY KEY (query, batch_id, source)
);
CREATE INDEX IF NOT EXISTS speed_layer_progress_time_idx ON speed_layer_progress (batch_ts);

-- One row per successful batch DAG run (written by the run's last task).
CREATE TABLE IF NOT EXISTS batch_runs (
    dag_id          text        NOT NULL,
    run_id          text        NOT NULL,
    interval_start  timestamptz,
    interval_end    timestamptz,
    finished_at     timestamptz NOT NULL DEFAULT now(),
    details         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (dag_id, run_id)
);

-- The hot store's size, sampled whenever events are fed or archived.
CREATE TABLE IF NOT EXISTS hot_store_stats (
    sampled_at        timestamptz NOT NULL PRIMARY KEY,
    backend           text        NOT NULL,
    series            bigint      NOT NULL,
    used_memory_bytes bigint      NOT NULL
);
