-- Least privilege: one NOLOGIN group role per service, granted exactly what that service does. The
-- setup step (`linkpulse migrate` with LINKPULSE_ROLES_*_PASSWORD, `linkpulse up`, the chart's migrate
-- job) makes the LOGIN roles linkpulse_<service>_login, members of these; only migrations use the owner.
-- Creating the groups needs CREATEROLE; an operator without it creates the three NOLOGIN roles first.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['linkpulse_redirect', 'linkpulse_ingest', 'linkpulse_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database of this cluster created it at the same moment
            END;
        END IF;
    END LOOP;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO linkpulse_redirect, linkpulse_ingest, linkpulse_admin',
                   current_schema());
END
$$;

-- redirect: reads a link (lookup.py) and a click-limited link's count (budget.py).
GRANT SELECT ON links, link_totals TO linkpulse_redirect;

-- ingest: stores events (RETURNING reads them back), adds to the rollups (ON CONFLICT DO UPDATE reads
-- and updates), keeps dead letters. Rows reach the click_events partitions through the parent, whose
-- grants are the ones checked, so partitions need none of their own.
GRANT SELECT, INSERT ON click_events, dead_letters TO linkpulse_ingest;
GRANT SELECT, INSERT, UPDATE ON link_totals, link_clicks_minute, link_clicks_hour, link_clicks_day,
    link_dimension_day TO linkpulse_ingest;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO linkpulse_ingest;
-- Creating a partition needs the parent's owner: the function runs as its owner (the migrator), with a
-- fixed search path (this schema, then pg_temp: nothing another role could plant a table in first), so
-- ingest needs only EXECUTE (and no other role gets it: PUBLIC's is revoked).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION linkpulse_ensure_click_partitions(integer) SECURITY DEFINER'
                   ' SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION linkpulse_ensure_click_partitions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION linkpulse_ensure_click_partitions(integer) TO linkpulse_ingest;

-- admin: links, their outbox and API keys (no DELETE: links are soft-deleted, keys revoked); the rollups
-- for stats, read only. Never click_events or dead_letters.
GRANT SELECT, INSERT, UPDATE ON links, link_events, api_keys TO linkpulse_admin;
GRANT USAGE ON SEQUENCE links_id_seq, api_keys_id_seq TO linkpulse_admin;
GRANT SELECT ON link_totals, link_clicks_minute, link_clicks_hour, link_clicks_day, link_dimension_day
    TO linkpulse_admin;
