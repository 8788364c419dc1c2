-- DataHub Connections, SQLite store, migration 5: the failed step of a check, and the facts of
-- the last check that reached the server.
--
-- `health_checks.step` is the step a failed check failed in (`tcp`, `tls`, `auth`, …; NULL on
-- success, and for rows recorded before this migration). The `connection_health` row keeps
-- what the latest check whose probe query answered saw: `facts_at` (NULL until one did) with
-- the server's version, recovery state and connection counts, and the TLS protocol, cipher,
-- certificate subject and expiry (NULL without TLS). A check that fails before the query leaves
-- them in place. Times are unix microseconds, UTC.

ALTER TABLE health_checks ADD COLUMN step TEXT;

ALTER TABLE connection_health ADD COLUMN facts_at INTEGER;
ALTER TABLE connection_health ADD COLUMN server_version TEXT;
ALTER TABLE connection_health ADD COLUMN server_in_recovery INTEGER
    CHECK (server_in_recovery IN (0, 1));
ALTER TABLE connection_health ADD COLUMN server_connections_used INTEGER;
ALTER TABLE connection_health ADD COLUMN server_max_connections INTEGER;
ALTER TABLE connection_health ADD COLUMN tls_protocol TEXT;
ALTER TABLE connection_health ADD COLUMN tls_cipher TEXT;
ALTER TABLE connection_health ADD COLUMN tls_peer_subject TEXT;
ALTER TABLE connection_health ADD COLUMN tls_peer_not_after INTEGER;
