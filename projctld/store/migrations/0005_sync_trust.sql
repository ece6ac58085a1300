-- A team log to trust: who the hub says pushed each event, events the hub refused set aside
-- with the reason, cursors checked against the hub, deployments finished only by who started
-- them (sync/fold.py).

-- The user of the token that pushed the event, as the hub stamped it. NULL for this device's
-- events until a hub has taken them ('' when an older hub took one without saying whose),
-- and for events pulled before this column existed.
ALTER TABLE events ADD COLUMN hub_user TEXT;
-- `pushed` is now 0 (waiting), 1 (the hub holds it) or 2 (set aside: see events_aside).
CREATE INDEX events_unsent ON events(device, seq) WHERE pushed != 1;

-- This device's events the hub refused, why, and when the next attempt is due.
CREATE TABLE events_aside (
    seq         INTEGER PRIMARY KEY,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    suggestions TEXT NOT NULL,        -- a JSON list
    refused_at  REAL NOT NULL,        -- the first refusal
    retry_at    REAL NOT NULL,
    refusals    INTEGER NOT NULL
) STRICT;

-- The id of the event at `after`: the hub answers `cursor_unknown` when it no longer holds it
-- there (a hub restored from an older copy, or another database).
ALTER TABLE sync_cursors ADD COLUMN after_id TEXT;

-- Who started a deployment, and every final event of it: the first, in key order, of those by
-- the user or the device that started it decides.
ALTER TABLE deployments ADD COLUMN started_user TEXT;
CREATE TABLE deployment_finals (
    project      TEXT NOT NULL,
    deployment   TEXT NOT NULL,
    hlc          INTEGER NOT NULL,
    device       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    user         TEXT,
    state        TEXT NOT NULL,       -- completed, failed
    environment  TEXT NOT NULL,
    actor        TEXT NOT NULL,
    finished_at  REAL NOT NULL,
    duration     REAL NOT NULL,
    exit_status  INTEGER,
    reason       TEXT NOT NULL,
    PRIMARY KEY (project, deployment, hlc, device, seq)
) STRICT;

-- Every project is pulled once more from the start, so that the events pulled before learn
-- who pushed them (the hub has always recorded it); then the state is folded again.
UPDATE sync_cursors SET after = 0, after_id = NULL;
INSERT OR REPLACE INTO meta(key, value) VALUES ('refold', '1');
