-- Workflow runs started on this device, with every progress event, for `projctl runs show`.
-- (Their start, steps and end also go to the team event log, which syncs.)
CREATE TABLE workflow_runs (
    id          TEXT PRIMARY KEY,           -- a UUIDv7, so ids sort by start time
    project     TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    success     INTEGER,                    -- NULL while running, or if projctld stopped first
    events      BLOB NOT NULL               -- msgpack list of the run's progress events
) STRICT;
CREATE INDEX workflow_runs_started ON workflow_runs(started_at);
