-- Links, their change outbox, API keys, click events (time partitioned), rollups, dead letters.

CREATE TABLE links (
    id             bigserial PRIMARY KEY,
    code           text        NOT NULL UNIQUE,
    url            text        NOT NULL,
    redirect_type  smallint    NOT NULL DEFAULT 302 CHECK (redirect_type IN (301, 302, 307, 308)),
    active         boolean     NOT NULL DEFAULT true,
    deleted_at     timestamptz,
    expires_at     timestamptz,
    max_clicks     bigint      CHECK (max_clicks > 0),
    forward_query  boolean     NOT NULL DEFAULT false,
    title          text,
    tags           text[]      NOT NULL DEFAULT '{}',
    version        bigint      NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX links_created_idx ON links (created_at, id);
CREATE INDEX links_tags_idx ON links USING gin (tags);

-- The outbox: written in the same transaction as the link row; a relay publishes what is pending.
CREATE TABLE link_events (
    id            uuid        PRIMARY KEY,
    link_id       bigint      NOT NULL REFERENCES links (id),
    code          text        NOT NULL,
    op            text        NOT NULL CHECK (op IN ('created', 'updated', 'deleted')),
    version       bigint      NOT NULL,
    payload       bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX link_events_pending_idx ON link_events (created_at) WHERE published_at IS NULL;

-- Only a SHA-256 of each key is kept: keys are 256-bit random, so a slow hash would add nothing.
CREATE TABLE api_keys (
    id            bigserial   PRIMARY KEY,
    name          text        NOT NULL,
    prefix        text        NOT NULL,
    key_hash      bytea       NOT NULL UNIQUE,
    scopes        text[]      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- ts comes from the event, never now(): (id, ts) is the same on every redelivery, so it deduplicates.
CREATE TABLE click_events (
    id             uuid        NOT NULL,
    ts             timestamptz NOT NULL,
    link_id        bigint      NOT NULL,
    code           text        NOT NULL,
    ip             inet,
    ua             text        NOT NULL DEFAULT '',
    referrer       text        NOT NULL DEFAULT '',
    referrer_host  text        NOT NULL DEFAULT '',
    lang           text        NOT NULL DEFAULT '',
    country        text        NOT NULL DEFAULT '',
    browser        text        NOT NULL DEFAULT '',
    os             text        NOT NULL DEFAULT '',
    device         text        NOT NULL DEFAULT '',
    is_bot         boolean     NOT NULL DEFAULT false,
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX click_events_link_ts_idx ON click_events (link_id, ts);
-- Catches events far outside the prepared months, so an odd clock never fails a batch.
CREATE TABLE click_events_default PARTITION OF click_events DEFAULT;

-- Monthly partitions from one month back to `months_ahead` ahead; ingest calls it on start and daily.
CREATE FUNCTION linkpulse_ensure_click_partitions(months_ahead integer DEFAULT 3) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    first_month date := date_trunc('month', now() - interval '1 month')::date;
    m date;
    part text;
BEGIN
    FOR i IN 0 .. months_ahead + 1 LOOP
        m := (first_month + make_interval(months => i))::date;
        part := 'click_events_' || to_char(m, 'YYYYMM');
        IF to_regclass(part) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF click_events FOR VALUES FROM (%L) TO (%L)',
                    part, m, (m + interval '1 month')::date);
            EXCEPTION WHEN check_violation OR duplicate_table THEN
                -- Rows for that month already sit in the default partition (or another process won
                -- the race); they stay there, counted and queryable.
                NULL;
            END;
        END IF;
    END LOOP;
END;
$$;
SELECT linkpulse_ensure_click_partitions(3);

-- Rollups, kept by ingest in the same transaction as the inserted events (humans and bots apart).
CREATE TABLE link_totals (
    link_id        bigint PRIMARY KEY,
    clicks         bigint NOT NULL DEFAULT 0,
    bot_clicks     bigint NOT NULL DEFAULT 0,
    last_click_at  timestamptz
);

CREATE TABLE link_clicks_minute (
    link_id     bigint      NOT NULL,
    bucket      timestamptz NOT NULL,
    clicks      bigint      NOT NULL DEFAULT 0,
    bot_clicks  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, bucket)
);
CREATE TABLE link_clicks_hour (LIKE link_clicks_minute INCLUDING ALL);
CREATE TABLE link_clicks_day (LIKE link_clicks_minute INCLUDING ALL);

CREATE TABLE link_dimension_day (
    link_id     bigint NOT NULL,
    bucket      date   NOT NULL,
    dimension   text   NOT NULL CHECK (dimension IN ('country', 'referrer', 'browser', 'os', 'device')),
    value       text   NOT NULL,
    clicks      bigint NOT NULL DEFAULT 0,
    bot_clicks  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, bucket, dimension, value)
);

-- Messages ingest could not decode: kept with their raw bytes, never silently dropped.
CREATE TABLE dead_letters (
    id           bigserial   PRIMARY KEY,
    stream       text        NOT NULL,
    subject      text        NOT NULL,
    stream_seq   bigint      NOT NULL,
    msg_id       text,
    deliveries   integer     NOT NULL DEFAULT 1,
    payload      bytea       NOT NULL,
    error        text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, stream_seq)
);
