-- Outputs of the Spark batch layer's forecasting job.

-- The latest forecast for each IP x feature x hour (a newer run overwrites the hours it covers).
CREATE TABLE IF NOT EXISTS ip_forecasts (
    ip          text             NOT NULL,
    feature     text             NOT NULL,
    ds          timestamptz      NOT NULL,
    yhat        double precision NOT NULL,
    yhat_lower  double precision NOT NULL,
    yhat_upper  double precision NOT NULL,
    model       text             NOT NULL,
    run_id      text             NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (ip, feature, ds)
);

-- Fit quality per run and series, including the series that were skipped and why.
CREATE TABLE IF NOT EXISTS forecast_quality (
    run_id            text             NOT NULL,
    ip                text             NOT NULL,
    feature           text             NOT NULL,
    model             text             NOT NULL,
    points            bigint           NOT NULL,
    mape              double precision,
    coverage          double precision,
    mase              double precision,
    mase_naive        double precision,
    seasonality_mode  text,
    reason            text,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, ip, feature)
);
