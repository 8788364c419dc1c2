-- DataHub Connections, PostgreSQL store, migration 9: the live monitors.
--
-- Replicas sharing the store split the health checks by rendezvous hashing of each connection's
-- id over the live monitors' ids; this table is how they know who is live. One row per running
-- monitor (`id`: its monitor id), marked (`seen_at`, the store's clock) about every second;
-- a monitor not marked within its timeout is not live, one stopping deletes its row, and rows
-- unmarked for an hour are deleted by the others. Only the split depends on it: the check
-- leases (migration 3) keep a check single whatever each monitor believes.

CREATE TABLE monitor_replicas (
    id      uuid        PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
