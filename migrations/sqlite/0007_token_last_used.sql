-- DataHub Connections, SQLite store, migration 7: when each API token was last used.
--
-- NULL until the token's first use. Written at most once a minute per token (the UPDATE's WHERE
-- makes a use within the minute of the last recorded one a no-op), never for a revoked token,
-- and never audited. Times are unix microseconds, UTC.

ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
