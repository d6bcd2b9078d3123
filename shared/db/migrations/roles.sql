-- Optional least-privilege roles (`cryptoviz db migrate --roles`): NOLOGIN group roles, created
-- only when missing; grant them to login roles whose passwords are set outside this file
-- (CREATE ROLE ingest LOGIN IN ROLE cryptoviz_writer; then \password ingest).
-- Idempotent: applied again on every `--roles` run, so tables added by later migrations are
-- granted by running it after an upgrade.
--   cryptoviz_writer: INSERT and SELECT on the data tables (ON CONFLICT DO NOTHING needs no
--                     UPDATE), plus the scraper's dedup table (it forgets old entries: DELETE).
--   cryptoviz_reader: SELECT on the data tables and the aggregates.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cryptoviz_writer') THEN
        CREATE ROLE cryptoviz_writer NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database of the same server
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cryptoviz_reader') THEN
        CREATE ROLE cryptoviz_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO cryptoviz_writer, cryptoviz_reader;

GRANT SELECT, INSERT
    ON ticker_data, trade_data, article_data, alert_data, sentiment_data, prediction_data,
       dead_letters
    TO cryptoviz_writer;
GRANT SELECT, INSERT, DELETE ON scraper_seen TO cryptoviz_writer;

GRANT SELECT
    ON ticker_data, trade_data, article_data, alert_data, sentiment_data, prediction_data,
       dead_letters, candles_1m, candles_1h, sentiment_1h, schema_migrations
    TO cryptoviz_reader;
