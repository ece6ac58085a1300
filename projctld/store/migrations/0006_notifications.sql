-- Desktop notifications and the inbox (projctld/upstream/notify/).

-- What was notified, or would have been, and why it was not shown.
CREATE TABLE notifications (
    id       INTEGER PRIMARY KEY,
    at       REAL NOT NULL,
    project  TEXT NOT NULL,
    kinds    TEXT NOT NULL,         -- a JSON list: one kind, or several grouped
    title    TEXT NOT NULL,
    body     TEXT NOT NULL,
    url      TEXT,
    shown    INTEGER NOT NULL,
    why_not  TEXT
) STRICT;

-- Each transition told, by its key (kind, what and the state it reached): a restart never
-- tells one again.
CREATE TABLE notified (
    key  TEXT PRIMARY KEY,
    at   REAL NOT NULL
) STRICT;

-- The last inbox read from each upstream instance, so that a restart shows it at once.
CREATE TABLE inbox (
    upstream      TEXT PRIMARY KEY,
    items         BLOB NOT NULL,     -- msgpack list of InboxItemView
    fetched_at    REAL,
    attempted_at  REAL,
    poll_interval REAL,
    error         BLOB               -- msgpack SourceError, when the last attempt failed
) STRICT;
