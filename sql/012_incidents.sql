-- Incidents: anomalies grouped into what an operator acts on (spark_apps/transforms/incidents.py
-- has the rules; the speed layer's ``incidents`` query applies them).

-- The datacenter or PoP an entity's events gave (never a defaulted one).
CREATE TABLE IF NOT EXISTS entity_groups (
    entity      text        PRIMARY KEY,
    group_kind  text        NOT NULL CHECK (group_kind IN ('datacenter', 'pop')),
    group_name  text        NOT NULL,
    last_seen   timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS incidents (
    incident_id            text             PRIMARY KEY,
    scope                  text             NOT NULL,  -- datacenter:…, pop:… or entity:…
    state                  text             NOT NULL
                           CHECK (state IN ('open', 'acknowledged', 'resolved')),
    severity               text             NOT NULL CHECK (severity IN ('WARN', 'ERROR')),
    first_seen             timestamptz      NOT NULL,
    last_seen              timestamptz      NOT NULL,
    entities               text[]           NOT NULL,
    metrics                text[]           NOT NULL,
    detectors              text[]           NOT NULL,
    members                integer          NOT NULL,
    strongest_detector     text             NOT NULL,
    strongest_entity       text             NOT NULL,
    strongest_metric       text             NOT NULL,
    strongest_window_start timestamptz      NOT NULL,
    strongest_value        double precision,
    strongest_expected     double precision,
    strongest_score        double precision,
    summary                text             NOT NULL,
    resolved_by            text,  -- quiet, withdrawn, operator, false positive
    opened_at              timestamptz      NOT NULL DEFAULT now(),
    acknowledged_at        timestamptz,
    resolved_at            timestamptz,
    false_positive         boolean          NOT NULL DEFAULT false,
    feedback               text,
    updated_at             timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS incidents_active ON incidents (state) WHERE state <> 'resolved';

-- The anomalies the incidents query holds: members of incidents, and WARNs that wait for
-- enough of their entity's to open one (incident_id NULL; dropped once too old).
CREATE TABLE IF NOT EXISTS incident_signals (
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
    incident_id   text             REFERENCES incidents ON DELETE CASCADE,
    PRIMARY KEY (detector, entity, metric, window_start)
);
CREATE INDEX IF NOT EXISTS incident_signals_incident ON incident_signals (incident_id);
CREATE INDEX IF NOT EXISTS incident_signals_pending
    ON incident_signals (entity) WHERE incident_id IS NULL;

-- Each incident's openings, escalations and resolutions, and the operator's acts on it.
CREATE TABLE IF NOT EXISTS incident_transitions (
    incident_id text        NOT NULL REFERENCES incidents ON DELETE CASCADE,
    transition  text        NOT NULL,  -- opened, escalated, resolved, acknowledged, false positive
    at          timestamptz NOT NULL,  -- the stream's clock (event time), or the operator's
    severity    text        NOT NULL,
    by_whom     text        NOT NULL,  -- the stream, or the operator
    note        text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, transition, at)
);

-- The last micro-batch the incidents query applied, per checkpoint (batch ids count per
-- checkpoint): a replayed one is skipped, so a retry neither opens an incident twice nor
-- loses one.
CREATE TABLE IF NOT EXISTS incident_progress (
    query      text        PRIMARY KEY,
    batch_id   bigint      NOT NULL,
    clock      timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW v_incidents AS
SELECT incident_id, scope, state, severity, first_seen, last_seen,
       array_to_string(entities, ', ') AS entities,
       array_to_string(metrics, ', ') AS metrics,
       array_to_string(detectors, ', ') AS detectors,
       cardinality(entities) AS entity_count,
       members, strongest_detector, strongest_entity, strongest_metric, strongest_score,
       summary, resolved_by, opened_at, acknowledged_at, resolved_at, false_positive, feedback,
       round(extract(epoch FROM last_seen - first_seen)::numeric / 60, 1) AS duration_minutes
FROM incidents;

CREATE OR REPLACE VIEW v_incident_members AS
SELECT s.incident_id, i.state, i.severity AS incident_severity, i.scope,
       s.detector, s.entity, s.metric, s.window_start, s.window_end, s.value, s.expected,
       s.score, s.severity
FROM incident_signals s
JOIN incidents i USING (incident_id);

-- Notifications: one row per notified transition and webhook (lambdawatch/core/webhooks.py),
-- with every attempt's outcome; incident_transitions is the outbox it is queued from.
CREATE TABLE IF NOT EXISTS incident_deliveries (
    incident_id     text        NOT NULL,
    transition      text        NOT NULL,
    at              timestamptz NOT NULL,
    webhook         text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    queued_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (incident_id, transition, at, webhook),
    FOREIGN KEY (incident_id, transition, at)
        REFERENCES incident_transitions ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS incident_deliveries_due
    ON incident_deliveries (next_attempt_at) WHERE state = 'pending';

-- What training leaves out (baselines, the CDN model, forecasts): every incident's span per
-- entity, real or marked false positive (an incident whose findings were all withdrawn was
-- never one).
CREATE OR REPLACE VIEW v_training_exclusions AS
SELECT unnest(entities) AS entity, first_seen AS start_ts, last_seen AS end_ts,
       CASE WHEN false_positive THEN 'false positive' ELSE 'incident' END AS reason,
       incident_id
FROM incidents
WHERE resolved_by IS DISTINCT FROM 'withdrawn';

-- Suppression rules an operator set (with a false positive): anomalies that match one are
-- kept (in ``anomalies``, flagged ``suppressed`` in v_anomalies) but join no incident and
-- notify no one. A NULL detector, entity or metric matches any.
CREATE TABLE IF NOT EXISTS suppressions (
    suppression_id bigserial   PRIMARY KEY,
    detector       text,
    entity         text,
    metric         text,
    starts_at      timestamptz NOT NULL,
    until          timestamptz NOT NULL,
    reason         text,
    incident_id    text        REFERENCES incidents ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (until > starts_at)
);

CREATE OR REPLACE VIEW v_anomalies AS
SELECT a.detector, a.entity, a.metric, a.window_start, a.window_end, a.value, a.expected,
       a.score, a.severity, a.model_version, a.detected_at,
       extract(epoch FROM a.detected_at - a.window_end) AS detection_delay_s,
       EXISTS (
           SELECT 1 FROM suppressions s
           WHERE (s.detector IS NULL OR s.detector = a.detector)
             AND (s.entity IS NULL OR s.entity = a.entity)
             AND (s.metric IS NULL OR s.metric = a.metric)
             AND a.window_start >= s.starts_at AND a.window_start < s.until
       ) AS suppressed
FROM anomalies a;
