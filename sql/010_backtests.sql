-- Backtests: a detector run over history (a file or archived events) through the speed
-- layer's own code. One row per run, and its findings in the anomaly shape.
CREATE TABLE IF NOT EXISTS backtest_runs (
    run_id         text        PRIMARY KEY,
    detector       text        NOT NULL,
    history        text        NOT NULL,  -- the file, or the archived span
    parameters     jsonb       NOT NULL,  -- the options and the detector's configuration
    model_versions text        NOT NULL,  -- the models or baselines the verdicts came from
    judged         bigint      NOT NULL,  -- samples, windows or gaps judged
    warn           bigint      NOT NULL,
    error          bigint      NOT NULL,
    first_event    timestamptz,
    last_event     timestamptz,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS backtest_anomalies (
    run_id        text             NOT NULL REFERENCES backtest_runs ON DELETE CASCADE,
    detector      text             NOT NULL,
    entity        text             NOT NULL,
    metric        text             NOT NULL,
    window_start  timestamptz      NOT NULL,
    window_end    timestamptz      NOT NULL,
    value         double precision,
    expected      double precision,
    score         double precision,
    severity      text             NOT NULL,
    model_version text             NOT NULL,
    detected_at   timestamptz      NOT NULL,
    PRIMARY KEY (run_id, detector, entity, metric, window_start)
);
