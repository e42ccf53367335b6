-- Geography from a GeoIP database (services/ingest geoip.py; docs/analytics.md, "Geography"): the region
-- (ISO 3166-2, "DE-BY"), the city ("Munich, DE-BY") and the network ("AS3320 Deutsche Telekom AG") of each
-- click, and the same three as dimensions of the day rollup. A constant default and no CHECK: neither
-- rewrites nor scans the stored clicks, which stay unknown ("") there; geoip.py bounds the lengths.
ALTER TABLE click_events
    ADD COLUMN region text NOT NULL DEFAULT '',
    ADD COLUMN city   text NOT NULL DEFAULT '',
    ADD COLUMN asn    text NOT NULL DEFAULT '';

-- The new check is validated by one scan of the rollup (a migration is one transaction, so ingest waits for it:
-- seconds per few million rollup rows).
ALTER TABLE link_dimension_day DROP CONSTRAINT link_dimension_day_dimension_check;
ALTER TABLE link_dimension_day ADD CONSTRAINT link_dimension_day_dimension_check
    CHECK (dimension IN ('country', 'referrer', 'browser', 'os', 'device', 'region', 'city', 'asn'));

-- Rights: ingest's INSERT and SELECT on click_events and its rollup grants (0005) are table-wide, so they
-- cover the new columns; reclassify's UPDATE stays on is_bot and device (0007): it moves a click's class, never
-- its place. admin reads link_dimension_day only. Nothing to grant.
