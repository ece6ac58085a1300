-- What the daemon knows between restarts: its own metadata and the git checkouts it was asked about.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE checkouts (
    root          TEXT PRIMARY KEY,
    branch        TEXT,
    head          TEXT,
    first_seen_at REAL NOT NULL,
    last_seen_at  REAL NOT NULL
) STRICT;
