-- DataHub Connections, SQLite store, migration 4: browser sessions.
--
-- A session is a random token handed to the client once; only its SHA-256 is stored. It ends at
-- its absolute expiry (`expires_at`, fixed at the start), after the idle timeout since
-- `last_seen_at` (written at most once a minute), at logout, or when its user is disabled or
-- given a new password (the rows are deleted). Times are unix microseconds, UTC.

CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash         BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    client_addr  TEXT,
    user_agent   TEXT
) STRICT;

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);
