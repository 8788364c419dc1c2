-- DataHub Connections, PostgreSQL store, migration 3: check leases.
--
-- Several processes sharing the store split the health checks: before checking a connection, a
-- process claims the check for the interval starting now. One row per connection (created on
-- the first claim); `holder` is the claiming process's monitor id (NULL before any claim) and
-- `leased_at` when it claimed. A claim wins when the row is not locked by a concurrent claim
-- (`FOR UPDATE SKIP LOCKED`) and the last claim is the claimant's own or older than the hold.

CREATE TABLE check_leases (
    connection_id uuid        PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    holder        uuid,
    leased_at     timestamptz NOT NULL
);
