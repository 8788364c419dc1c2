-- DataHub Connections, PostgreSQL store, migration 5: the failed step of a check, and the facts
-- of the last check that reached the server.
--
-- `health_checks.step` is the step a failed check failed in (`tcp`, `tls`, `auth`, …; NULL on
-- success, and for rows recorded before this migration). The `connection_health` row keeps
-- what the latest check whose probe query answered saw: `facts_at` (NULL until one did) with
-- the server's version, recovery state and connection counts, and the TLS protocol, cipher,
-- certificate subject and expiry (NULL without TLS). A check that fails before the query leaves
-- them in place. Nullable columns without defaults: adding them rewrites no row.

ALTER TABLE health_checks ADD COLUMN step text;

ALTER TABLE connection_health
    ADD COLUMN facts_at                timestamptz,
    ADD COLUMN server_version          text,
    ADD COLUMN server_in_recovery      boolean,
    ADD COLUMN server_connections_used bigint,
    ADD COLUMN server_max_connections  bigint,
    ADD COLUMN tls_protocol            text,
    ADD COLUMN tls_cipher              text,
    ADD COLUMN tls_peer_subject        text,
    ADD COLUMN tls_peer_not_after      timestamptz;
