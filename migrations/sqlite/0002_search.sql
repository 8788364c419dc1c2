-- DataHub Connections, SQLite store, migration 2: an indexed search.
--
-- A search is a case-insensitive substring of a connection's name, description, host or any of
-- its tags. LIKE cannot use an index for a substring, so every search scanned every row (with a
-- subquery per row for the tags) and a page of a large list was slow. Each connection now has
-- one search row:
--
-- - `body` is the name, the description, the host and the tags, each lowercased by the program
--   (Unicode-aware), joined with U+001F (unit separator): no field may contain it, and a search
--   containing it matches nothing, so no match spans two fields. A trigram FTS5 index over
--   `body` answers searches of three characters or more: a quoted FTS5 phrase of trigrams is an
--   exact substring match (case_sensitive 1, as text and search are both lowercased by the
--   program). Shorter searches have no trigram and scan `body` with LIKE.
-- - `name`, `owner` and `updated_at` copy the connection's, and `viewers` lists who holds a
--   grant on it (`u:<user id>` or `t:<team id>`, comma-separated; kept by the triggers on
--   `grants`), so a
--   search page is chosen from these narrow rows (matches counted, visibility applied, sorted),
--   and only the rows of the page are read from `connections`.
--
-- The store writes the search row in the same transaction as the connection; deleting the
-- connection deletes it (the cascade fires the index trigger). Its key is an INTEGER PRIMARY
-- KEY, so VACUUM never renumbers it under the index.

CREATE TABLE connection_search (
    key           INTEGER PRIMARY KEY,
    connection_id TEXT    NOT NULL UNIQUE REFERENCES connections (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    owner         TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL,
    viewers       TEXT    NOT NULL,
    body          TEXT    NOT NULL
) STRICT;

CREATE VIRTUAL TABLE connection_search_fts USING fts5 (
    body,
    content = 'connection_search',
    content_rowid = 'key',
    tokenize = 'trigram case_sensitive 1'
);

-- The index follows its content table.
CREATE TRIGGER connection_search_insert AFTER INSERT ON connection_search
BEGIN
    INSERT INTO connection_search_fts (rowid, body) VALUES (new.key, new.body);
END;

CREATE TRIGGER connection_search_delete AFTER DELETE ON connection_search
BEGIN
    INSERT INTO connection_search_fts (connection_search_fts, rowid, body)
        VALUES ('delete', old.key, old.body);
END;

CREATE TRIGGER connection_search_update AFTER UPDATE OF body ON connection_search
BEGIN
    INSERT INTO connection_search_fts (connection_search_fts, rowid, body)
        VALUES ('delete', old.key, old.body);
    INSERT INTO connection_search_fts (rowid, body) VALUES (new.key, new.body);
END;

-- `viewers` follows the grants (cascades from deleted users and teams fire these too).
CREATE TRIGGER grants_search_insert AFTER INSERT ON grants
BEGIN
    UPDATE connection_search
    SET viewers = (SELECT coalesce(group_concat(coalesce('u:' || g.user_id,
                                                         't:' || g.team_id), ','), '')
                   FROM grants AS g WHERE g.connection_id = new.connection_id)
    WHERE connection_id = new.connection_id;
END;

CREATE TRIGGER grants_search_delete AFTER DELETE ON grants
BEGIN
    UPDATE connection_search
    SET viewers = (SELECT coalesce(group_concat(coalesce('u:' || g.user_id,
                                                         't:' || g.team_id), ','), '')
                   FROM grants AS g WHERE g.connection_id = old.connection_id)
    WHERE connection_id = old.connection_id;
END;

CREATE TRIGGER grants_search_update AFTER UPDATE ON grants
BEGIN
    UPDATE connection_search
    SET viewers = (SELECT coalesce(group_concat(coalesce('u:' || g.user_id,
                                                         't:' || g.team_id), ','), '')
                   FROM grants AS g WHERE g.connection_id = old.connection_id)
    WHERE connection_id = old.connection_id;
    UPDATE connection_search
    SET viewers = (SELECT coalesce(group_concat(coalesce('u:' || g.user_id,
                                                         't:' || g.team_id), ','), '')
                   FROM grants AS g WHERE g.connection_id = new.connection_id)
    WHERE connection_id = new.connection_id;
END;

-- Backfill. Names, hosts and tags are stored lowercase already (validated so); the description
-- has its lowercased copy.
INSERT INTO connection_search (connection_id, name, owner, updated_at, viewers, body)
SELECT c.id, c.name, c.owner, c.updated_at,
       (SELECT coalesce(group_concat(coalesce('u:' || g.user_id, 't:' || g.team_id), ','), '')
        FROM grants AS g WHERE g.connection_id = c.id),
       c.name || char(31) || coalesce(c.description_lc, '') || char(31) || c.host
           || coalesce((SELECT char(31) || group_concat(t.tag, char(31))
                        FROM (SELECT tag FROM connection_tags
                              WHERE connection_id = c.id ORDER BY position) AS t), '')
FROM connections AS c;
