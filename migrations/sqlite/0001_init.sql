-- DataHub Connections, SQLite store, migration 1: the whole initial schema.
--
-- Conventions: ids are hyphenated lowercase UUID text (so text order is id order); times are
-- INTEGER unix microseconds in UTC; enums are their stable lowercase spellings, checked here too;
-- secrets exist only as sealed BLOBs. Tables are STRICT so a wrong type is refused, not coerced.

CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    checksum   BLOB    NOT NULL CHECK (length(checksum) = 32),
    applied_at INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'editor', 'viewer', 'auditor')),
    password_hash TEXT    NOT NULL,
    disabled      INTEGER NOT NULL CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- The owner is a user id but deliberately not a foreign key: users are disabled, never deleted,
-- and a trusted embedding (the library opened directly on a store) may act as a system user.
CREATE TABLE connections (
    id                    TEXT    PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE,
    description           TEXT,
    -- The description lowercased by the program (Unicode-aware), for case-insensitive search.
    description_lc        TEXT,
    engine                TEXT    NOT NULL,
    host                  TEXT    NOT NULL,
    port                  INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database_name         TEXT    NOT NULL,
    username              TEXT    NOT NULL,
    tls_mode              TEXT    NOT NULL,
    tls_ca_cert_pem       TEXT,
    tls_client_cert_pem   TEXT,
    tls_channel_binding   TEXT    NOT NULL,
    connect_timeout_ms    INTEGER NOT NULL,
    application_name      TEXT,
    monitoring_enabled    INTEGER NOT NULL CHECK (monitoring_enabled IN (0, 1)),
    monitoring_interval_s INTEGER NOT NULL,
    monitoring_slow_ms    INTEGER NOT NULL,
    owner                 TEXT    NOT NULL,
    version               INTEGER NOT NULL CHECK (version >= 1),
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    -- The KEK id inside wrapped_dek, kept apart for key usage and rotation queries.
    kek_id                TEXT    NOT NULL,
    wrapped_dek           BLOB    NOT NULL,
    sealed_password       BLOB    NOT NULL,
    sealed_client_key     BLOB
) STRICT;

CREATE INDEX connections_kek_id ON connections (kek_id, id);
CREATE INDEX connections_owner ON connections (owner);
CREATE INDEX connections_updated_at ON connections (updated_at);
CREATE INDEX connections_engine ON connections (engine);

-- One row per tag, in the order given (position), so tag filters are exact and indexed.
CREATE TABLE connection_tags (
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    tag           TEXT    NOT NULL,
    PRIMARY KEY (connection_id, tag)
) STRICT;

CREATE INDEX connection_tags_tag ON connection_tags (tag, connection_id);

-- Current health; a connection without a row is `unknown`, never checked.
CREATE TABLE connection_health (
    connection_id TEXT    PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    status        TEXT    NOT NULL CHECK (status IN ('unknown', 'healthy', 'degraded', 'down')),
    checked_at    INTEGER,
    latency_ms    INTEGER,
    error_kind    TEXT,
    uptime_24h    REAL
) STRICT;

CREATE INDEX connection_health_status ON connection_health (status);

CREATE TABLE health_checks (
    id            INTEGER PRIMARY KEY,
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    ok            INTEGER NOT NULL CHECK (ok IN (0, 1)),
    latency_ms    INTEGER NOT NULL,
    error_kind    TEXT,
    status        TEXT    NOT NULL CHECK (status IN ('unknown', 'healthy', 'degraded', 'down'))
) STRICT;

CREATE INDEX health_checks_connection_at ON health_checks (connection_id, at);
CREATE INDEX health_checks_at ON health_checks (at);

CREATE TABLE teams (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
) STRICT;

CREATE INDEX team_members_user ON team_members (user_id, team_id);

-- A grant is for exactly one user or one team.
CREATE TABLE grants (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_id       TEXT REFERENCES users (id) ON DELETE CASCADE,
    team_id       TEXT REFERENCES teams (id) ON DELETE CASCADE,
    level         TEXT NOT NULL CHECK (level IN ('view', 'use', 'manage')),
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
) STRICT;

CREATE UNIQUE INDEX grants_connection_user ON grants (connection_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX grants_connection_team ON grants (connection_id, team_id)
    WHERE team_id IS NOT NULL;
CREATE INDEX grants_user ON grants (user_id, connection_id) WHERE user_id IS NOT NULL;
CREATE INDEX grants_team ON grants (team_id, connection_id) WHERE team_id IS NOT NULL;

-- API tokens: the SHA-256 of the token, never the token.
CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    hash       BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    read_only  INTEGER NOT NULL CHECK (read_only IN (0, 1)),
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) STRICT;

CREATE INDEX tokens_user ON tokens (user_id);

-- The hash-chained audit log. changed_fields is length-prefixed (`<bytes>:<name>` repeated), so
-- any field name, whatever it contains, decodes back exactly.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY CHECK (seq >= 1),
    at             INTEGER NOT NULL,
    actor          TEXT,
    actor_name     TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    target         TEXT,
    outcome        TEXT    NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
    changed_fields TEXT    NOT NULL,
    client_addr    TEXT,
    request_id     TEXT,
    prev_hash      BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash           BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_target ON audit_log (target, seq);

-- Append-only, as far as SQL goes: the store never edits or deletes an entry. Someone with the
-- file can drop these triggers; the hash chain is what catches that.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- The admin's target policy: at most one row. CIDR lists use the same length-prefixed encoding.
CREATE TABLE policy (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    allow_cidrs  TEXT    NOT NULL,
    deny_cidrs   TEXT    NOT NULL,
    min_tls_mode TEXT    NOT NULL
) STRICT;
