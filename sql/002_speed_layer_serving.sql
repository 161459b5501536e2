-- Serving tables written by the speed layer. Every table has a natural key so a replayed
-- micro-batch (after a crash, or in update mode) overwrites its rows instead of adding to them.

CREATE TABLE IF NOT EXISTS rt_server_status (
    window_start           timestamptz NOT NULL,
    window_end             timestamptz NOT NULL,
    country_code           text        NOT NULL,
    country_name           text        NOT NULL,
    city                   text        NOT NULL,
    datacenter             text        NOT NULL,
    status_color           text        NOT NULL,
    severity_level         integer     NOT NULL,
    messages               bigint      NOT NULL,
    total_resolution_time  bigint      NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (window_start, datacenter, status_color, severity_level)
);

CREATE TABLE IF NOT EXISTS rt_cpu_windows (
    server_id      text             NOT NULL,
    window_start   timestamptz      NOT NULL,
    window_end     timestamptz      NOT NULL,
    mean_cpu       double precision NOT NULL,
    std_cpu        double precision,
    samples        bigint           NOT NULL,
    expected_mean  double precision NOT NULL,
    expected_std   double precision NOT NULL,
    z              double precision NOT NULL,
    status         text             NOT NULL CHECK (status IN ('SAFE', 'WARN', 'ERROR')),
    PRIMARY KEY (server_id, window_start)
);
CREATE INDEX IF NOT EXISTS rt_cpu_windows_time_idx ON rt_cpu_windows (window_start);

CREATE TABLE IF NOT EXISTS rt_ip_windows (
    window_start  timestamptz      NOT NULL,
    window_end    timestamptz      NOT NULL,
    src_ip        text             NOT NULL,
    feature       text             NOT NULL,
    samples       bigint           NOT NULL,
    total         double precision NOT NULL,
    mean          double precision NOT NULL,
    PRIMARY KEY (window_start, src_ip, feature)
);

CREATE TABLE IF NOT EXISTS rt_weather (
    city                          text             NOT NULL,
    ts                            timestamptz      NOT NULL,
    lat                           double precision NOT NULL,
    lon                           double precision NOT NULL,
    temperature                   double precision NOT NULL,
    feels_like                    double precision NOT NULL,
    temperature_minus_feels_like  double precision NOT NULL,
    event_id                      text             NOT NULL,
    PRIMARY KEY (city, ts)
);
