-- Upstream state: the last good snapshot of each (project, upstream) and the validators and
-- bodies of GET responses, so that a restart answers at once and its first poll is conditional.
CREATE TABLE snapshots (
    project      TEXT NOT NULL,
    upstream     TEXT NOT NULL,
    data         BLOB,            -- msgpack of the normalised snapshot; NULL before a success
    fetched_at   REAL,            -- last successful poll
    attempted_at REAL,            -- last poll, successful or not
    error        BLOB,            -- msgpack of the last poll's error; NULL when it succeeded
    PRIMARY KEY (project, upstream)
) STRICT;

CREATE TABLE http_cache (
    url           TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    body          BLOB NOT NULL,
    stored_at     REAL NOT NULL
) STRICT;
