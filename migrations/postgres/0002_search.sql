-- DataHub Connections, PostgreSQL store, migration 2: an indexed search.
--
-- A search is a case-insensitive substring of a connection's name, description, host or any of
-- its tags. It used to test LIKE on every element of `search_terms` of every row (a sequential
-- scan of the wide `connections` rows, then a sort of every match). Now each connection has a
-- narrow search row, kept by a trigger from the row's own columns:
--
-- - `search_text`: the lowercased `search_terms` joined with U+001F (unit separator), which no
--   field may contain; a search containing it matches nothing, so a LIKE never spans two terms.
-- - a GIN index over `datahub_search_trigrams(search_text)`: every distinct run of three
--   characters inside one term. A search of three characters or more asks the index for the
--   rows holding all of its own trigrams (`@>`), then `search_text LIKE` decides on those rows
--   only. Shorter searches have no trigram and test the LIKE alone.
-- - `name`, `owner` and `updated_at` copies, so a search page is counted, filtered by
--   visibility and sorted from these rows, and only the page's rows are read from `connections`.
--
-- The trigrams are computed here rather than by pg_trgm: pg_trgm splits text into words at
-- punctuation, so `db-4` would be looked up as the words `db` and `4` and the index would return
-- nearly every row; and no extension has to be installed. The program looks up only runs of
-- ASCII characters, which substr takes alike whether it counts characters (UTF8) or bytes
-- (SQL_ASCII).

CREATE FUNCTION datahub_search_trigrams(text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(DISTINCT substr(t.term, i, 3)), '{}')
    FROM unnest(string_to_array($1, E'\x1f')) AS t (term),
         generate_series(1, char_length(t.term) - 2) AS i
$$;

CREATE TABLE connection_search (
    connection_id uuid        PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    name          text        NOT NULL,
    owner         uuid        NOT NULL,
    updated_at    timestamptz NOT NULL,
    search_text   text        NOT NULL
);

CREATE INDEX connection_search_trigrams ON connection_search
    USING gin (datahub_search_trigrams(search_text));

-- A search reads a few thousand narrow rows at most: starting parallel workers costs more
-- than it saves.
ALTER TABLE connection_search SET (parallel_workers = 0);

-- The search row follows its connection, in the same transaction, whatever writes it.
CREATE FUNCTION datahub_connection_search_sync() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO connection_search (connection_id, name, owner, updated_at, search_text)
    VALUES (NEW.id, NEW.name, NEW.owner, NEW.updated_at,
            array_to_string(NEW.search_terms, E'\x1f'))
    ON CONFLICT (connection_id) DO UPDATE
    SET name = EXCLUDED.name,
        owner = EXCLUDED.owner,
        updated_at = EXCLUDED.updated_at,
        search_text = EXCLUDED.search_text;
    RETURN NULL;
END
$$;

CREATE TRIGGER connections_search_sync
AFTER INSERT OR UPDATE OF name, owner, updated_at, search_terms ON connections
FOR EACH ROW EXECUTE FUNCTION datahub_connection_search_sync();

-- Backfill.
INSERT INTO connection_search (connection_id, name, owner, updated_at, search_text)
SELECT id, name, owner, updated_at, array_to_string(search_terms, E'\x1f')
FROM connections;
