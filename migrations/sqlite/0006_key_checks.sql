-- DataHub Connections, SQLite store, migration 6: key checks (SECURITY.md S28).
--
-- One row per key-encryption key (KEK) id the store uses: a key check made with that key
-- (AES-256-GCM of nothing, associated data binding the id; 29 bytes), written when a key is
-- first used. At start the keyring must open every check, so a lost key file replaced by a new
-- one, or another installation's key, is refused before anything is sealed under it. Not
-- secret: a check opens nothing. Times are unix microseconds, UTC. Numbered 6: number 5 is
-- taken by a migration developed alongside; the two are independent.

CREATE TABLE key_checks (
    kek_id     TEXT    PRIMARY KEY CHECK (length(kek_id) BETWEEN 1 AND 32),
    proof      BLOB    NOT NULL CHECK (length(proof) = 29),
    created_at INTEGER NOT NULL
) STRICT;
