-- DataHub Connections, PostgreSQL store, migration 1: the whole initial schema.
--
-- The same logical schema as migrations/sqlite/0001_init.sql, in PostgreSQL's native types:
-- ids are uuid, times are timestamptz (microseconds, what audit::truncate_to_micros keeps),
-- secrets exist only as sealed bytea, flags are boolean, lists are text[]. Enums are their
-- stable lowercase spellings, checked here too. The store runs this script inside its
-- migration transaction, under an advisory lock, and records it in schema_migrations.

CREATE TABLE schema_migrations (
    version    integer     PRIMARY KEY CHECK (version >= 1),
    name       text        NOT NULL,
    checksum   bytea       NOT NULL CHECK (length(checksum) = 32),
    applied_at timestamptz NOT NULL
);

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL CONSTRAINT users_username_key UNIQUE,
    role          text        NOT NULL CHECK (role IN ('admin', 'editor', 'viewer', 'auditor')),
    password_hash text        NOT NULL,
    disabled      boolean     NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- The owner is a user id but deliberately not a foreign key: users are disabled, never deleted,
-- and a trusted embedding (the library opened directly on a store) may act as a system user.
CREATE TABLE connections (
    id                    uuid        PRIMARY KEY,
    name                  text        NOT NULL CONSTRAINT connections_name_key UNIQUE,
    description           text,
    engine                text        NOT NULL,
    host                  text        NOT NULL,
    port                  integer     NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database_name         text        NOT NULL,
    username              text        NOT NULL,
    tls_mode              text        NOT NULL,
    tls_ca_cert_pem       text,
    tls_client_cert_pem   text,
    tls_channel_binding   text        NOT NULL,
    connect_timeout_ms    integer     NOT NULL,
    application_name      text,
    -- In the order given.
    tags                  text[]      NOT NULL,
    monitoring_enabled    boolean     NOT NULL,
    monitoring_interval_s integer     NOT NULL,
    monitoring_slow_ms    integer     NOT NULL,
    -- Name, description, host and tags, lowercased by the program (Unicode-aware and the same
    -- as the SQLite store, whatever the database's locale): what a search matches against.
    search_terms          text[]      NOT NULL,
    owner                 uuid        NOT NULL,
    version               bigint      NOT NULL CHECK (version >= 1),
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    -- The KEK id inside wrapped_dek, kept apart for key usage and rotation queries.
    kek_id                text        NOT NULL,
    wrapped_dek           bytea       NOT NULL,
    sealed_password       bytea       NOT NULL,
    sealed_client_key     bytea
);

CREATE INDEX connections_kek_id ON connections (kek_id, id);
CREATE INDEX connections_owner ON connections (owner);
CREATE INDEX connections_updated_at ON connections (updated_at);
CREATE INDEX connections_engine ON connections (engine);
CREATE INDEX connections_tags ON connections USING gin (tags);

-- Current health; a connection without a row is `unknown`, never checked.
CREATE TABLE connection_health (
    connection_id uuid             PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    status        text             NOT NULL
                                   CHECK (status IN ('unknown', 'healthy', 'degraded', 'down')),
    checked_at    timestamptz,
    latency_ms    bigint,
    error_kind    text,
    uptime_24h    double precision
);

CREATE INDEX connection_health_status ON connection_health (status);

CREATE TABLE health_checks (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id uuid        NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    ok            boolean     NOT NULL,
    latency_ms    bigint      NOT NULL,
    error_kind    text,
    status        text        NOT NULL
                              CHECK (status IN ('unknown', 'healthy', 'degraded', 'down'))
);

CREATE INDEX health_checks_connection_at ON health_checks (connection_id, at);
CREATE INDEX health_checks_at ON health_checks (at);

CREATE TABLE teams (
    id   uuid PRIMARY KEY,
    name text NOT NULL CONSTRAINT teams_name_key UNIQUE
);

CREATE TABLE team_members (
    team_id uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);

CREATE INDEX team_members_user ON team_members (user_id, team_id);

-- A grant is for exactly one user or one team.
CREATE TABLE grants (
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
    team_id       uuid REFERENCES teams (id) ON DELETE CASCADE,
    level         text NOT NULL CHECK (level IN ('view', 'use', 'manage')),
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
);

CREATE UNIQUE INDEX grants_connection_user ON grants (connection_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX grants_connection_team ON grants (connection_id, team_id)
    WHERE team_id IS NOT NULL;
CREATE INDEX grants_user ON grants (user_id, connection_id) WHERE user_id IS NOT NULL;
CREATE INDEX grants_team ON grants (team_id, connection_id) WHERE team_id IS NOT NULL;

-- API tokens: the SHA-256 of the token, never the token.
CREATE TABLE tokens (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    hash       bytea       NOT NULL CONSTRAINT tokens_hash_key UNIQUE
                           CHECK (length(hash) = 32),
    read_only  boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX tokens_user ON tokens (user_id);

-- The hash-chained audit log. Appends are serialized by an advisory lock held to commit, so
-- seq has no gaps and every entry's prev_hash is the hash of the entry before.
CREATE TABLE audit_log (
    seq            bigint      PRIMARY KEY CHECK (seq >= 1),
    at             timestamptz NOT NULL,
    actor          uuid,
    actor_name     text        NOT NULL,
    action         text        NOT NULL,
    target         text,
    outcome        text        NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
    changed_fields text[]      NOT NULL,
    client_addr    text,
    request_id     text,
    prev_hash      bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash           bytea       NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_target ON audit_log (target, seq);

-- Append-only, as far as SQL goes: the store never edits or deletes an entry. The table's owner
-- can drop this trigger; the hash chain is what catches that.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The admin's target policy: at most one row.
CREATE TABLE policy (
    id           smallint PRIMARY KEY CHECK (id = 1),
    allow_cidrs  text[]   NOT NULL,
    deny_cidrs   text[]   NOT NULL,
    min_tls_mode text     NOT NULL
);
