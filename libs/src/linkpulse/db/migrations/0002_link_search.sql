-- Link search (`GET /api/v1/links?q=`): a case-insensitive substring of code, URL or title, which
-- btree indexes cannot serve. Trigram GIN indexes can, when the pg_trgm extension is available
-- (it ships with PostgreSQL's contrib and is a trusted extension since PostgreSQL 13). Without it
-- this migration does nothing and search runs as a scan in (created_at, id) order: slower, same answers.
-- Only live links are indexed, as only they are listed.
DO $$
DECLARE
    trgm_schema name;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        RAISE NOTICE 'pg_trgm is not available: link search runs without an index';
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'pg_trgm could not be installed (%): link search runs without an index', SQLERRM;
        RETURN;
    END;
    -- The extension may live in a schema off the search path (managed Postgres often uses one).
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    EXECUTE format('CREATE INDEX links_code_trgm_idx ON links USING gin (code %I.gin_trgm_ops)'
                   ' WHERE deleted_at IS NULL', trgm_schema);
    EXECUTE format('CREATE INDEX links_url_trgm_idx ON links USING gin (url %I.gin_trgm_ops)'
                   ' WHERE deleted_at IS NULL', trgm_schema);
    EXECUTE format('CREATE INDEX links_title_trgm_idx ON links USING gin (title %I.gin_trgm_ops)'
                   ' WHERE deleted_at IS NULL', trgm_schema);
END
$$;
