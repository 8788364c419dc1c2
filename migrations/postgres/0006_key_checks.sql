-- DataHub Connections, PostgreSQL store, migration 6: key checks (SECURITY.md S28).
--
-- One row per key-encryption key (KEK) id the store uses: a key check made with that key
-- (AES-256-GCM of nothing, associated data binding the id; 29 bytes), written when a key is
-- first used. Every replica's keyring must open every check at start, so a replica with a lost,
-- replaced or foreign key is refused before it seals anything. Not secret: a check opens
-- nothing. Numbered 6: number 5 is taken by a migration developed alongside; the two are
-- independent.

CREATE TABLE key_checks (
    kek_id     text        PRIMARY KEY CHECK (length(kek_id) BETWEEN 1 AND 32),
    proof      bytea       NOT NULL CHECK (length(proof) = 29),
    created_at timestamptz NOT NULL
);
