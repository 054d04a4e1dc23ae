-- 0002 time series, plain PostgreSQL flavour.
--
-- `counts_hourly` is an ordinary view with exactly the columns, types and semantics of the
-- TimescaleDB continuous aggregate of the same name (0002_timeseries.timescaledb.sql), so the
-- review UI and ERP exports run the same queries on both flavours and get the same rows.
--
-- Buckets are whole UTC hours (time_bucket's default origin on timestamptz); a count delta
-- belongs to the hour its interval starts in. The three-argument date_trunc pins the zone, so
-- the session's TimeZone cannot shift the buckets.

CREATE VIEW counts_hourly AS
SELECT
    site,
    area,
    line,
    machine,
    order_id,
    date_trunc('hour', interval_start, 'UTC') AS bucket,
    sum(good)::bigint   AS good,
    sum(reject)::bigint AS reject,
    sum(total)::bigint  AS total,
    count(*)            AS records
FROM counts
GROUP BY site, area, line, machine, order_id, date_trunc('hour', interval_start, 'UTC');
