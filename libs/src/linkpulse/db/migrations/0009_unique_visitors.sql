-- Unique visitors (docs/analytics.md, "Unique visitors"). A click carries its visitor key: 16 bytes of a keyed
-- hash of the full IP, user agent and link under that UTC day's salt, which the redirects destroy after the
-- day; NULL for clicks stored before (or made without one). Nullable and without a default or a CHECK, so
-- adding it rewrites and scans nothing (ingest stores only well-formed keys).
ALTER TABLE click_events ADD COLUMN visitor bytea;

-- The distinct visitors of each link and UTC day, humans and bots apart: ingest inserts the keys of the clicks
-- it stores in the same statement (ON CONFLICT DO NOTHING, so a redelivery adds nothing), and adds the keys
-- that were new to link_visitor_counts_day, so a day's uniques are read from one row, not counted from
-- (possibly millions of) keys. `linkpulse reclassify` moves a key between the classes with its clicks.
CREATE TABLE link_visitors_day (
    link_id  bigint  NOT NULL,
    day      date    NOT NULL,
    is_bot   boolean NOT NULL,
    visitor  bytea   NOT NULL,
    PRIMARY KEY (link_id, day, is_bot, visitor)
);
CREATE TABLE link_visitor_counts_day (
    link_id       bigint NOT NULL,
    day           date   NOT NULL,
    visitors      bigint NOT NULL DEFAULT 0,
    bot_visitors  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, day)
);

GRANT SELECT, INSERT, DELETE ON link_visitors_day TO linkpulse_ingest;
GRANT SELECT, INSERT, UPDATE ON link_visitor_counts_day TO linkpulse_ingest;
-- admin: day uniques from the counts, hour and minute uniques counted from the clicks' keys (only the
-- columns that takes, not the clicks' other fields).
GRANT SELECT ON link_visitor_counts_day TO linkpulse_admin;
GRANT SELECT (link_id, ts, is_bot, visitor) ON click_events TO linkpulse_admin;
