-- Core tables shared by every layer. Idempotent: safe to apply to an existing database.

-- Archived hot-store samples: one row per IP x feature x timestamp (natural key, so replays
-- and retried archival runs never duplicate).
CREATE TABLE IF NOT EXISTS ip_history (
    ip       text             NOT NULL,
    feature  text             NOT NULL,
    ts       timestamptz      NOT NULL,
    value    double precision NOT NULL,
    PRIMARY KEY (ip, feature, ts)
);
CREATE INDEX IF NOT EXISTS ip_history_ts_idx ON ip_history (ts);

-- Labels of anomalies the generators injected; detectors never read this table.
CREATE TABLE IF NOT EXISTS ground_truth (
    label_id   text        PRIMARY KEY,
    source     text        NOT NULL,
    entity     text        NOT NULL,
    kind       text        NOT NULL,
    start_ts   timestamptz NOT NULL,
    end_ts     timestamptz NOT NULL,
    details    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CHECK (end_ts >= start_ts)
);
CREATE INDEX IF NOT EXISTS ground_truth_source_time_idx ON ground_truth (source, start_ts);

-- One shape for every detector's findings (DESIGN.md, "Contracts").
CREATE TABLE IF NOT EXISTS anomalies (
    detector       text             NOT NULL,
    entity         text             NOT NULL,
    metric         text             NOT NULL,
    window_start   timestamptz      NOT NULL,
    window_end     timestamptz      NOT NULL,
    value          double precision,
    expected       double precision,
    score          double precision,
    severity       text             NOT NULL CHECK (severity IN ('WARN', 'ERROR')),
    model_version  text             NOT NULL DEFAULT '',
    detected_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (detector, entity, metric, window_start)
);
CREATE INDEX IF NOT EXISTS anomalies_time_idx ON anomalies (window_start);

-- Normal behaviour per metric x entity, maintained by the baseline_stats batch job and read
-- live by the speed layer.
CREATE TABLE IF NOT EXISTS baselines (
    metric        text             NOT NULL,
    entity        text             NOT NULL,
    mean          double precision NOT NULL,
    variance      double precision NOT NULL,
    stddev        double precision NOT NULL,
    samples       bigint           NOT NULL,
    window_start  timestamptz      NOT NULL,
    window_end    timestamptz      NOT NULL,
    computed_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (metric, entity)
);

-- Every trained model version, whether promoted or not, and where its artefacts are.
CREATE TABLE IF NOT EXISTS model_registry (
    model_name  text             NOT NULL,
    version     text             NOT NULL,
    path        text             NOT NULL,
    threshold   double precision,
    metrics     jsonb            NOT NULL DEFAULT '{}'::jsonb,
    promoted    boolean          NOT NULL DEFAULT false,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, version)
);
