-- DataHub Connections, PostgreSQL store, migration 8: check history rolled up into buckets.
--
-- Raw checks (`health_checks`) are kept only for the monitor's detail window (24 h by default);
-- older ones are rolled up into 5-minute buckets, kept 30 days. One row per connection and
-- hour: `hour` is the hour's start, `buckets` its twelve 5-minute buckets packed in 157 bytes
-- (format byte 1, then per bucket checks, failures, latency p50 and max of the successful
-- checks, worst status; see `datahub-core/src/store/history.rs`), so a day of history costs 24
-- rows rather than 288, each of which would spend more on its tuple header and index entry
-- than on its data. The hour index serves the batched deletion of expired hours; deleting a
-- connection deletes its buckets.
--
-- `health_checks_at` served the old pruning by time alone (`DELETE … WHERE at < $1`); the
-- roll-up reads and deletes raw checks connection by connection through
-- `health_checks_connection_at`, so the time index only cost every raw check an index entry.

CREATE TABLE health_buckets (
    connection_id uuid        NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    hour          timestamptz NOT NULL,
    buckets       bytea       NOT NULL,
    PRIMARY KEY (connection_id, hour)
);

CREATE INDEX health_buckets_hour ON health_buckets (hour);

DROP INDEX health_checks_at;
