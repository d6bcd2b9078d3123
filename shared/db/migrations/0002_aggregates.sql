-- Candles and hourly sentiment under the same names on both servers, so queries work on both:
-- continuous aggregates under TimescaleDB, plain views computed at query time otherwise.
-- Columns: candles_1m / candles_1h (bucket, pair, open, high, low, close, volume, trades);
-- sentiment_1h (bucket, symbol, articles, avg_score, positive, negative, neutral).
-- Open and close are the first and last trade by (ts, trade_key): ties on ts break the same way
-- on every run. Buckets are UTC, as time_bucket's are, whatever the session's TimeZone.

DO $$
DECLARE
    candle record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        FOR candle IN
            SELECT * FROM (VALUES
                ('candles_1m', '1 minute', '1 hour', '1 minute', '1 minute'),
                ('candles_1h', '1 hour', '3 days', '1 hour', '30 minutes')
            ) AS t (name, width, start_offset, end_offset, schedule)
        LOOP
            IF to_regclass(candle.name) IS NULL THEN
                EXECUTE format(
                    'CREATE MATERIALIZED VIEW %I WITH (timescaledb.continuous) AS '
                    'SELECT time_bucket(%L::interval, ts) AS bucket, pair, '
                    'first(price, ts) AS open, max(price) AS high, min(price) AS low, '
                    'last(price, ts) AS close, sum(volume) AS volume, count(*) AS trades '
                    'FROM trade_data GROUP BY 1, 2 WITH NO DATA',
                    candle.name, candle.width
                );
                PERFORM add_continuous_aggregate_policy(
                    candle.name::regclass,
                    start_offset => candle.start_offset::interval,
                    end_offset => candle.end_offset::interval,
                    schedule_interval => candle.schedule::interval,
                    if_not_exists => true
                );
            END IF;
        END LOOP;
        IF to_regclass('sentiment_1h') IS NULL THEN
            CREATE MATERIALIZED VIEW sentiment_1h WITH (timescaledb.continuous) AS
            SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, symbol,
                   count(*) AS articles, avg(score) AS avg_score,
                   count(*) FILTER (WHERE label = 'positive') AS positive,
                   count(*) FILTER (WHERE label = 'negative') AS negative,
                   count(*) FILTER (WHERE label = 'neutral') AS neutral
            FROM sentiment_data GROUP BY 1, 2 WITH NO DATA;
            PERFORM add_continuous_aggregate_policy(
                'sentiment_1h', start_offset => INTERVAL '3 days',
                end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes',
                if_not_exists => true
            );
        END IF;
        RETURN;
    END IF;

    CREATE OR REPLACE VIEW candles_1m AS
    SELECT date_trunc('minute', ts, 'UTC') AS bucket, pair,
           (array_agg(price ORDER BY ts, trade_key))[1] AS open,
           max(price) AS high,
           min(price) AS low,
           (array_agg(price ORDER BY ts DESC, trade_key DESC))[1] AS close,
           sum(volume) AS volume,
           count(*) AS trades
    FROM trade_data
    GROUP BY 1, 2;

    CREATE OR REPLACE VIEW candles_1h AS
    SELECT date_trunc('hour', ts, 'UTC') AS bucket, pair,
           (array_agg(price ORDER BY ts, trade_key))[1] AS open,
           max(price) AS high,
           min(price) AS low,
           (array_agg(price ORDER BY ts DESC, trade_key DESC))[1] AS close,
           sum(volume) AS volume,
           count(*) AS trades
    FROM trade_data
    GROUP BY 1, 2;

    CREATE OR REPLACE VIEW sentiment_1h AS
    SELECT date_trunc('hour', ts, 'UTC') AS bucket, symbol,
           count(*) AS articles, avg(score) AS avg_score,
           count(*) FILTER (WHERE label = 'positive') AS positive,
           count(*) FILTER (WHERE label = 'negative') AS negative,
           count(*) FILTER (WHERE label = 'neutral') AS neutral
    FROM sentiment_data
    GROUP BY 1, 2;
END
$$;
