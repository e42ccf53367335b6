-- Click-data retention (ingest/retention.py) as the ingest role: dropping a partition needs the owner of
-- click_events, so this function runs as its owner (the migrator) and drops only what retention may drop: a
-- partition of click_events whose upper bound lies at least `retention_days` (one or more) in the past. EXECUTE
-- therefore lets ingest remove nothing newer than the retention it is configured with.
CREATE FUNCTION linkpulse_drop_click_partition(part regclass, retention_days integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    upper_bound timestamptz;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention must be at least one day, not %', retention_days;
    END IF;
    SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
      INTO upper_bound
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'click_events'::regclass AND i.inhrelid = part;
    IF upper_bound IS NULL OR upper_bound > now() - make_interval(days => retention_days) THEN
        RAISE EXCEPTION '% is not a click_events partition older than % days', part, retention_days;
    END IF;
    EXECUTE format('ALTER TABLE click_events DETACH PARTITION %s', part);
    EXECUTE format('DROP TABLE %s', part);
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION linkpulse_drop_click_partition(regclass, integer) SECURITY DEFINER'
                   ' SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION linkpulse_drop_click_partition(regclass, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION linkpulse_drop_click_partition(regclass, integer) TO linkpulse_ingest;

-- Old rows of the default partition (clicks of a month that had no partition yet) and old dead letters are
-- deleted row by row; ingest may delete there and nowhere else.
GRANT SELECT, DELETE ON click_events_default TO linkpulse_ingest;
GRANT DELETE ON dead_letters TO linkpulse_ingest;
