-- 0002 time series, TimescaleDB flavour (requires TimescaleDB >= 2.13 for by_range()).
--
-- Policies (compression after N days, retention, aggregate refresh) are not here: their
-- parameters come from the gateway configuration, so migrate() applies and updates them
-- after the SQL files.

-- Hypertables for the high-volume time series. The indexes of 0001 already cover the time
-- column, so TimescaleDB's default indexes would only duplicate them.
SELECT create_hypertable('events', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false);
SELECT create_hypertable('counts', by_range('interval_start', INTERVAL '7 days'),
                         create_default_indexes => false);
SELECT create_hypertable('state_intervals', by_range('start_ts', INTERVAL '30 days'),
                         create_default_indexes => false);
-- dead_letters stays a plain table: it is small, and rows are looked up and replayed by id.

-- Compressed chunks of raw events, one segment per machine. event_id is in the ordering
-- because the primary key (event_id, ts) is checked against compressed chunks when a late
-- duplicate arrives; ordering by it lets that check skip batches by their min/max.
ALTER TABLE events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'site, area, line, machine',
    timescaledb.compress_orderby = 'ts DESC, event_id'
);

-- Hourly counts per machine and order: same columns and semantics as the plain view in
-- 0002_timeseries.plain.sql. Real-time (materialized_only = false) so rows not yet
-- materialized by the refresh policy are still included.
CREATE MATERIALIZED VIEW counts_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    site,
    area,
    line,
    machine,
    order_id,
    time_bucket(INTERVAL '1 hour', interval_start) AS bucket,
    sum(good)::bigint   AS good,
    sum(reject)::bigint AS reject,
    sum(total)::bigint  AS total,
    count(*)            AS records
FROM counts
GROUP BY site, area, line, machine, order_id, time_bucket(INTERVAL '1 hour', interval_start)
-- WITH DATA cannot run inside a transaction, and every migration runs in one.
WITH NO DATA;
