-- Stats people can slice (docs/analytics.md, "Slicing the stats"): the language as a dimension, the dimensions per
-- hour as well as per day, what ingest reports of its progress (so every stats answer can say how fresh it is),
-- and the click columns the admin reads for filtered stats and the events list.

-- The language (lower(lang), linkpulse.dimensions) joins the day rollup's dimensions.
ALTER TABLE link_dimension_day DROP CONSTRAINT link_dimension_day_dimension_check;
ALTER TABLE link_dimension_day ADD CONSTRAINT link_dimension_day_dimension_check
    CHECK (dimension IN ('country', 'referrer', 'browser', 'os', 'device', 'region', 'city', 'asn', 'lang'));

-- Every dimension per UTC hour, kept by ingest and reclassify beside the day rollup. It serves what the day rollup
-- cannot: top lists over a window that starts or ends within a day (whole days from the day rollup, the edge hours
-- from this one), series filtered by one dimension at hour granularity, and days of a timezone (a local day is
-- 23 to 25 whole UTC hours wherever the offset is a whole number of hours).
CREATE TABLE link_dimension_hour (LIKE link_dimension_day INCLUDING ALL);
ALTER TABLE link_dimension_hour ALTER COLUMN bucket TYPE timestamptz USING bucket AT TIME ZONE 'UTC';
ALTER TABLE link_dimension_hour SET (fillfactor = 50);  -- counters updated in place: see 0004

-- The clicks stored before this migration join the new rollups now, so that they agree with the day rollup from the
-- first answer on. The lock makes the backfill and the stored clicks one snapshot: an ingest process still
-- running waits (it stores nothing the backfill could miss) and goes on after the commit; one older than this
-- migration would store clicks without these rows, so upgrade ingest before the redirects, as the CHANGELOG says.
LOCK TABLE click_events IN SHARE MODE;
INSERT INTO link_dimension_day (link_id, bucket, dimension, value, clicks, bot_clicks)
SELECT link_id, (ts AT TIME ZONE 'UTC')::date, 'lang', lower(lang),
       count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
FROM click_events GROUP BY 1, 2, 3, 4;
INSERT INTO link_dimension_hour (link_id, bucket, dimension, value, clicks, bot_clicks)
SELECT link_id, date_trunc('hour', ts, 'UTC'), d.dimension, d.value,
       count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
FROM click_events
CROSS JOIN LATERAL (VALUES ('country', country), ('referrer', referrer_host), ('browser', browser), ('os', os),
                           ('device', device), ('region', region), ('city', city), ('asn', asn),
                           ('lang', lower(lang))) AS d(dimension, value)
WHERE d.value <> '' OR d.dimension NOT IN ('region', 'city', 'asn')
GROUP BY 1, 2, 3, 4;

-- What each ingest shard loop last reported: how many clicks wait in its consumer and how far behind the newest
-- published click it is. One row per shard, overwritten at most about once a second; reported_at tells a reader
-- whether the figure is current (a stopped ingest stops reporting).
CREATE TABLE ingest_progress (
    shard            integer          PRIMARY KEY CHECK (shard >= 0),
    pending          bigint           NOT NULL CHECK (pending >= 0),
    behind_seconds   double precision NOT NULL CHECK (behind_seconds >= 0),
    reported_at      timestamptz      NOT NULL DEFAULT now()
);

-- ingest (and reclassify, which runs as ingest): the hour rollup like the day one; its progress.
GRANT SELECT, INSERT, UPDATE ON link_dimension_hour, ingest_progress TO linkpulse_ingest;
-- admin: reads the new rollup and the progress; of the clicks, what the filtered stats and the events list show
-- (never the stored, anonymised address). It already reads link_id, ts, is_bot and visitor (0009).
GRANT SELECT ON link_dimension_hour, ingest_progress TO linkpulse_admin;
GRANT SELECT (id, ua, referrer, referrer_host, lang, country, region, city, asn, browser, os, device)
    ON click_events TO linkpulse_admin;
