-- DataHub Connections, SQLite store, migration 8: check history rolled up into buckets.
--
-- Raw checks (`health_checks`) are kept only for the monitor's detail window (24 h by default);
-- older ones are rolled up into 5-minute buckets, kept 30 days. One row per connection and
-- hour: `hour` is the hour's start (unix microseconds, UTC), `buckets` its twelve 5-minute
-- buckets packed in 157 bytes (format byte 1, then per bucket checks, failures, latency p50 and
-- max of the successful checks, worst status; see `datahub-core/src/store/history.rs`), so a
-- day of history costs 24 small rows rather than 288. WITHOUT ROWID: the key is the row's
-- place, so the table holds no second copy of it. The hour index serves the batched deletion of
-- expired hours; deleting a connection deletes its buckets.
--
-- `health_checks_at` served the old pruning by time alone (`DELETE … WHERE at < $1`); the
-- roll-up reads and deletes raw checks connection by connection through
-- `health_checks_connection_at`, so the time index only cost every raw check an index entry.

CREATE TABLE health_buckets (
    connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    hour          INTEGER NOT NULL,
    buckets       BLOB    NOT NULL,
    PRIMARY KEY (connection_id, hour)
) STRICT, WITHOUT ROWID;

CREATE INDEX health_buckets_hour ON health_buckets (hour);

DROP INDEX health_checks_at;
