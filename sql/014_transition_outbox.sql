-- The webhook notifier marks each transition once it has queued its deliveries, so a tick
-- reads only the transitions not yet queued (a partial index keeps that cheap) rather than
-- every transition of the last max_age.
ALTER TABLE incident_transitions ADD COLUMN IF NOT EXISTS queued_at timestamptz;
CREATE INDEX IF NOT EXISTS incident_transitions_unqueued
    ON incident_transitions (recorded_at) WHERE queued_at IS NULL;
