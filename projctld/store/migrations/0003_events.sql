-- The team event log (this device's events and those pulled from the hub), the sync cursors,
-- and the project state folded from the events (sync/fold.py keeps it up to date).
CREATE TABLE events (
    device     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT NOT NULL UNIQUE,
    hlc        INTEGER NOT NULL,
    project    TEXT NOT NULL,
    actor      TEXT NOT NULL,
    type       TEXT NOT NULL,
    payload    BLOB NOT NULL,           -- msgpack of the payload map
    created_at REAL NOT NULL,
    pushed     INTEGER NOT NULL,        -- 0 for this device's events the hub has not taken yet
    PRIMARY KEY (device, seq)
) STRICT;
CREATE INDEX events_in_order ON events(project, hlc, device, seq);
CREATE INDEX events_waiting ON events(seq) WHERE pushed = 0;

-- Per project: the hub_seq up to which this device has pulled.
CREATE TABLE sync_cursors (
    project TEXT PRIMARY KEY,
    after   INTEGER NOT NULL
) STRICT;

-- Folded state. A `*_key` is the (hlc, device, seq) of the event that decided the row.
CREATE TABLE deployments (
    project      TEXT NOT NULL,
    deployment   TEXT NOT NULL,
    environment  TEXT NOT NULL,
    state        TEXT NOT NULL,          -- running, completed, failed
    actor        TEXT,
    branch       TEXT,
    commit_sha   TEXT,
    started_at   REAL,
    started_hlc  INTEGER, started_device TEXT, started_seq INTEGER,
    finished_at  REAL,
    duration     REAL,
    exit_status  INTEGER,
    reason       TEXT,
    final_hlc    INTEGER, final_device TEXT, final_seq INTEGER,
    PRIMARY KEY (project, deployment)
) STRICT;
CREATE INDEX deployments_by_environment ON deployments(project, environment, started_hlc);

CREATE TABLE notes (
    project     TEXT NOT NULL,
    note        TEXT NOT NULL,
    text        TEXT NOT NULL,
    author      TEXT,
    created_at  REAL,
    created_hlc INTEGER, created_device TEXT, created_seq INTEGER,
    edited_by   TEXT NOT NULL,
    write_hlc   INTEGER NOT NULL, write_device TEXT NOT NULL, write_seq INTEGER NOT NULL,
    PRIMARY KEY (project, note)
) STRICT;

CREATE TABLE branches (
    project    TEXT NOT NULL,
    name       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    base       TEXT,
    commit_sha TEXT,
    created_at REAL NOT NULL,
    hlc        INTEGER NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (project, name)
) STRICT;
