-- DataHub Connections, SQLite store, migration 3: check leases.
--
-- The same contract as on PostgreSQL: before checking a connection, a monitor claims the check
-- for the interval starting now. One row per connection (created on the first claim); `holder`
-- is the claiming monitor's id (TEXT UUID) and `leased_at` when it claimed (unix microseconds,
-- UTC). A claim wins when the last claim is the claimant's own or older than the hold; claims
-- run in `BEGIN IMMEDIATE` transactions, so processes sharing the file are serialized.

CREATE TABLE check_leases (
    connection_id TEXT    PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    holder        TEXT,
    leased_at     INTEGER NOT NULL
);
