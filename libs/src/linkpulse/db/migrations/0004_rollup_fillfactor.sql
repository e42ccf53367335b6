-- Rollup rows are counters, updated in place by every batch that has clicks for them. With full pages
-- (fillfactor 100) an update must put the new row version on another page and add index entries for it;
-- with room left on the page it is a HOT update: same page, no index entries, and the dead versions are
-- pruned when the page fills. Half-full pages cost the rollups twice the disk (they are small beside
-- click_events); `linkpulse bench ingest` (500,000 events over 20,000 links) stored a median 24,600
-- events/s at fillfactor 100, 29,100 at 70 and 33,700 at 50 (docs/performance.md).
ALTER TABLE link_totals SET (fillfactor = 50);
ALTER TABLE link_clicks_minute SET (fillfactor = 50);
ALTER TABLE link_clicks_hour SET (fillfactor = 50);
ALTER TABLE link_clicks_day SET (fillfactor = 50);
ALTER TABLE link_dimension_day SET (fillfactor = 50);
