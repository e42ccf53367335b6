-- The stats overview sums every link's hour and day rollups in a time window; the primary keys
-- lead with link_id, so without these it would read the whole table.
CREATE INDEX link_clicks_hour_bucket_idx ON link_clicks_hour (bucket);
CREATE INDEX link_clicks_day_bucket_idx ON link_clicks_day (bucket);
