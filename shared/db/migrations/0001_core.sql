-- CRYPTO VIZ core schema: one table per payload, each with the natural key that makes a
-- consumer's INSERT ... ON CONFLICT DO NOTHING idempotent (a redelivered record changes nothing).
-- Times are timestamptz, converted from the payloads' float epoch seconds by the writers.
-- Hypertables need their time column in every unique index, so the time-series keys include ts.

CREATE TABLE IF NOT EXISTS ticker_data (
    pair        text             NOT NULL,
    ts          timestamptz      NOT NULL,
    last        double precision NOT NULL,
    bid         double precision NOT NULL,
    ask         double precision NOT NULL,
    volume_24h  double precision NOT NULL,
    pct_change  double precision NOT NULL,
    PRIMARY KEY (pair, ts)
);

-- trade_id is optional in the payload (the seed's records have none). trade_key is the key
-- either way: 'id:<trade_id>' when the exchange gave one, otherwise 'h:<side>:' and a hash of the
-- exact bytes of (price, volume); with pair and ts in the primary key, a record without an id is
-- the same trade exactly when every field is the same. Computed here, not by the writers, so that every
-- writer agrees on it; float8send hashes the binary value, independent of extra_float_digits.
CREATE TABLE IF NOT EXISTS trade_data (
    pair        text             NOT NULL,
    ts          timestamptz      NOT NULL,
    trade_id    bigint           CHECK (trade_id >= 0),
    price       double precision NOT NULL,
    volume      double precision NOT NULL,
    side        text             NOT NULL CHECK (side IN ('b', 's')),
    trade_key   text             NOT NULL GENERATED ALWAYS AS (
        CASE
            WHEN trade_id IS NOT NULL THEN 'id:' || trade_id::text
            ELSE 'h:' || side || ':' || md5(float8send(price) || float8send(volume))
        END
    ) STORED,
    PRIMARY KEY (pair, ts, trade_key)
);
CREATE INDEX IF NOT EXISTS trade_data_ts_idx ON trade_data (ts);

-- Articles are few and keyed by their id: a plain table even under TimescaleDB.
CREATE TABLE IF NOT EXISTS article_data (
    id                          text             PRIMARY KEY,
    url                         text             NOT NULL,
    website                     text             NOT NULL,
    title                       text             NOT NULL,
    summary                     text             NOT NULL,
    content_text                text             NOT NULL,
    published_at                timestamptz,
    scraped_at                  timestamptz      NOT NULL,
    tags                        text[]           NOT NULL DEFAULT '{}',
    sentiment_score             double precision NOT NULL CHECK (sentiment_score BETWEEN -1 AND 1),
    sentiment_label             text             NOT NULL
        CHECK (sentiment_label IN ('positive', 'negative', 'neutral')),
    cryptocurrencies_mentioned  text[]           NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS article_data_scraped_at_idx ON article_data (scraped_at);
CREATE INDEX IF NOT EXISTS article_data_published_at_idx ON article_data (published_at);
CREATE INDEX IF NOT EXISTS article_data_website_idx ON article_data (website, scraped_at);
CREATE INDEX IF NOT EXISTS article_data_mentioned_idx
    ON article_data USING gin (cryptocurrencies_mentioned);

CREATE TABLE IF NOT EXISTS alert_data (
    pair        text             NOT NULL,
    type        text             NOT NULL
        CHECK (type IN ('price_spike', 'price_drop', 'volume_spike')),
    ts          timestamptz      NOT NULL,
    last        double precision NOT NULL,
    change      double precision NOT NULL,
    threshold   double precision NOT NULL,
    window_s    double precision,
    PRIMARY KEY (pair, type, ts)
);
CREATE INDEX IF NOT EXISTS alert_data_ts_idx ON alert_data (ts);

-- One row per (article, mentioned symbol), written by the analytics job: ts is the article's
-- publication time (its scrape time when unknown). sentiment_1h aggregates these per hour.
CREATE TABLE IF NOT EXISTS sentiment_data (
    symbol      text             NOT NULL,
    ts          timestamptz      NOT NULL,
    article_id  text             NOT NULL,
    score       double precision NOT NULL CHECK (score BETWEEN -1 AND 1),
    label       text             NOT NULL CHECK (label IN ('positive', 'negative', 'neutral')),
    website     text,
    PRIMARY KEY (symbol, ts, article_id)
);
CREATE INDEX IF NOT EXISTS sentiment_data_ts_idx ON sentiment_data (ts);

-- ts is when the prediction was made; it is for ts + horizon_s. One row per model and horizon.
CREATE TABLE IF NOT EXISTS prediction_data (
    symbol           text             NOT NULL,
    ts               timestamptz      NOT NULL,
    horizon_s        integer          NOT NULL CHECK (horizon_s > 0),
    model            text             NOT NULL,
    predicted_price  double precision NOT NULL,
    lower_bound      double precision,
    upper_bound      double precision,
    PRIMARY KEY (symbol, ts, horizon_s, model)
);
CREATE INDEX IF NOT EXISTS prediction_data_ts_idx ON prediction_data (ts);

-- Records a consumer could not store, keyed by their Kafka coordinates: a redelivery of the same
-- bad record is one row. kind is the envelope's bounded reason code.
CREATE TABLE IF NOT EXISTS dead_letters (
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    kafka_offset  bigint      NOT NULL,
    key           bytea,
    value         bytea,
    kind          text        NOT NULL,
    reason        text        NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, kafka_offset)
);
CREATE INDEX IF NOT EXISTS dead_letters_received_at_idx ON dead_letters (received_at);

-- Taken over from the scraper (services/scraper/dedup.py), which still creates it the same way.
CREATE TABLE IF NOT EXISTS scraper_seen (
    url_key     text PRIMARY KEY,
    fingerprint text,
    source      text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scraper_seen_fingerprint_idx
    ON scraper_seen (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX IF NOT EXISTS scraper_seen_seen_at_idx ON scraper_seen (seen_at);

-- TimescaleDB, when the server offers it (it must also be in shared_preload_libraries):
-- hypertables, compression after 7 days, retention of 90 days for raw market data and a year for
-- derived data. Untested on the development machines, where the extension does not exist.
DO $$
DECLARE
    hyper record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        RETURN;
    END IF;
    CREATE EXTENSION IF NOT EXISTS timescaledb;
    FOR hyper IN
        SELECT * FROM (VALUES
            ('ticker_data', 'pair', '1 day', '90 days'),
            ('trade_data', 'pair', '1 day', '90 days'),
            ('alert_data', 'pair', '7 days', '365 days'),
            ('sentiment_data', 'symbol', '7 days', '365 days'),
            ('prediction_data', 'symbol', '7 days', '365 days')
        ) AS t (name, segment_by, chunk, retention)
    LOOP
        PERFORM create_hypertable(
            hyper.name::regclass, 'ts',
            chunk_time_interval => hyper.chunk::interval,
            if_not_exists => true,
            migrate_data => true
        );
        EXECUTE format(
            'ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L, '
            'timescaledb.compress_orderby = %L)',
            hyper.name, hyper.segment_by, 'ts DESC'
        );
        PERFORM add_compression_policy(hyper.name::regclass, INTERVAL '7 days',
                                       if_not_exists => true);
        PERFORM add_retention_policy(hyper.name::regclass, hyper.retention::interval,
                                     if_not_exists => true);
    END LOOP;
END
$$;
