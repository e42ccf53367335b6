-- Which bot rules classified the stored clicks (linkpulse.bots: BOT_RULES_VERSION names them exactly).
-- Ingest records the version it classifies with when it connects (last_used_at moves on every start);
-- `linkpulse reclassify` records the rules it re-ran over the clicks from reclassified_since on. The stats
-- answers name the newest rules and from when they apply, so a reader knows which rules produced the counts.
CREATE TABLE bot_rules (
    version             text        PRIMARY KEY CHECK (length(version) BETWEEN 1 AND 200),
    first_used_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at        timestamptz NOT NULL DEFAULT now(),
    reclassified_since  timestamptz,
    reclassified_at     timestamptz,
    reclassified_clicks bigint      NOT NULL DEFAULT 0
);

-- ingest registers its rules; reclassify (run with the ingest role, as it writes what ingest writes) moves a
-- click between humans and bots: its is_bot and device, nothing else, and the rollups (already granted).
GRANT SELECT, INSERT, UPDATE ON bot_rules TO linkpulse_ingest;
GRANT UPDATE (is_bot, device) ON click_events TO linkpulse_ingest;
-- admin: names the rules in every stats answer.
GRANT SELECT ON bot_rules TO linkpulse_admin;
