-- DataHub Connections, PostgreSQL store, migration 4: browser sessions.
--
-- Sessions live in the store so they survive a restart and work across replicas. A session is a
-- random token handed to the client once; only its SHA-256 is stored. It ends at its absolute
-- expiry (`expires_at`, fixed at the start), after the idle timeout since `last_seen_at`
-- (written at most once a minute), at logout, or when its user is disabled or given a new
-- password (the rows are deleted).

CREATE TABLE sessions (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash         bytea       NOT NULL CONSTRAINT sessions_hash_key UNIQUE
                             CHECK (length(hash) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    client_addr  text,
    user_agent   text
);

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_last_seen ON sessions (last_seen_at);
