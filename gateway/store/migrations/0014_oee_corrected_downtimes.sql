-- 0014 OEE charges a downtime as the clerk corrected it (both flavours).
--
-- 0009 made shown figures raw + revisions, and the parts of OEE followed (oee_count_parts);
-- its time did not: a downtime recoded to a planned reason, split in two with a reason for
-- each piece, or merged into its neighbour was still charged as recorded. This is 0012's
-- oee_state_time with one change: the downtimes it charges otherwise than availability loss
-- are the recorded ones no clerk touched (the same index scan as before) and, for those a
-- revision changed, the pieces of downtimes_shown. The time itself stays the state
-- intervals' (a recode changes how a stop is charged, never how long the machine stood);
-- a piece the clerk reshaped is charged by its reason, not as a micro-stop.

CREATE OR REPLACE FUNCTION oee_state_time(p_from timestamptz, p_to timestamptz, p_hourly boolean)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, shift_id text,
               hour timestamptz, bucket text, seconds numeric, planned_s numeric,
               micro_s numeric, micro_perf_s numeric, perf_s numeric)
LANGUAGE sql STABLE AS $$
WITH clipped AS (
    SELECT * FROM (
        SELECT s.site, s.area, s.line, s.machine, s.order_id, s.shift_id, s.bucket,
               greatest(s.start_ts, p_from) AS lo,
               least(coalesce(s.end_ts, now()), p_to) AS hi
        FROM state_intervals s
        WHERE s.start_ts < p_to AND (s.end_ts IS NULL OR s.end_ts > p_from)
    ) w
    WHERE w.hi > w.lo
), pieces AS (
    SELECT c.site, c.area, c.line, c.machine, c.order_id, c.shift_id, c.bucket,
           p.hour, p.lo, p.hi
    FROM clipped c
    CROSS JOIN LATERAL (
        SELECT h AS hour, greatest(c.lo, h) AS lo, least(c.hi, h + interval '1 hour') AS hi
        FROM unnest(oee_hours(c.lo, c.hi)) AS h
        WHERE p_hourly
        UNION ALL
        SELECT NULL, c.lo, c.hi
        WHERE NOT p_hourly
    ) p
), corrected AS MATERIALIZED (
    -- The downtimes a clerk changed (recoded, split, merged) and the pieces splits made.
    SELECT r.downtime_id FROM revisions r WHERE r.target_kind = 'downtime'
    UNION
    SELECT r.new_value->>'lineage' FROM revisions r
    WHERE r.target_kind = 'downtime' AND r.field = 'created'
), spans AS MATERIALIZED (
    -- The downtimes OEE charges otherwise than plain availability loss that touch the
    -- window: as recorded where no clerk changed them (downtimes_loss_span_idx, its
    -- predicate word for word), as shown (downtimes_shown: raw + revisions) where one did.
    SELECT d.site, d.area, d.line, d.machine, d.start_ts, d.end_ts,
           coalesce(d.micro_stop, false) AS micro, d.loss
    FROM downtimes d
    WHERE (d.micro_stop OR d.loss IN ('planned', 'performance'))
      AND tstzrange(d.start_ts, d.end_ts) && tstzrange(p_from, p_to)
      AND NOT EXISTS (SELECT 1 FROM corrected c WHERE c.downtime_id = d.downtime_id)
    UNION ALL
    SELECT s.site, s.area, s.line, s.machine, s.start_ts, s.end_ts,
           coalesce(s.micro_stop, false), s.loss
    FROM downtimes_shown s
    WHERE s.downtime_id IN (SELECT c.downtime_id FROM corrected c)
      AND (s.micro_stop OR s.loss IN ('planned', 'performance'))
      AND tstzrange(s.start_ts, s.end_ts) && tstzrange(p_from, p_to)
), charges AS (
    -- Per piece of stop time: its seconds inside those downtimes, by how they are charged.
    SELECT x.site, x.area, x.line, x.machine, x.lo, x.hi,
           sum(x.s) FILTER (WHERE x.loss = 'planned') AS planned_s,
           sum(x.s) FILTER (WHERE x.micro AND x.loss IS DISTINCT FROM 'planned') AS micro_s,
           sum(x.s) FILTER (WHERE x.micro AND x.loss = 'performance') AS micro_perf_s,
           sum(x.s) FILTER (WHERE NOT x.micro AND x.loss = 'performance') AS perf_s
    FROM (
        SELECT pc.site, pc.area, pc.line, pc.machine, pc.lo, pc.hi,
               extract(epoch FROM least(pc.hi, d.end_ts) - greatest(pc.lo, d.start_ts)) AS s,
               d.micro, d.loss
        FROM pieces pc
        JOIN spans d
          ON d.site = pc.site AND d.area = pc.area AND d.line = pc.line
         AND d.machine = pc.machine
         AND tstzrange(d.start_ts, d.end_ts) && tstzrange(pc.lo, pc.hi)
        WHERE pc.bucket IN ('down', 'changeover', 'starved', 'blocked')
    ) x
    GROUP BY x.site, x.area, x.line, x.machine, x.lo, x.hi
), charged AS (
    -- A machine's pieces never overlap: (machine, lo, hi) names one.
    SELECT pc.*, c.planned_s, c.micro_s, c.micro_perf_s, c.perf_s
    FROM pieces pc
    LEFT JOIN charges c
           ON c.site = pc.site AND c.area = pc.area AND c.line = pc.line
          AND c.machine = pc.machine AND c.lo = pc.lo AND c.hi = pc.hi
          AND pc.bucket IN ('down', 'changeover', 'starved', 'blocked')
)
SELECT ch.site, ch.area, ch.line, ch.machine, ch.order_id, ch.shift_id, ch.hour, ch.bucket,
       sum(extract(epoch FROM ch.hi - ch.lo)),
       coalesce(sum(ch.planned_s), 0), coalesce(sum(ch.micro_s), 0),
       coalesce(sum(ch.micro_perf_s), 0), coalesce(sum(ch.perf_s), 0)
FROM charged ch
GROUP BY ch.site, ch.area, ch.line, ch.machine, ch.order_id, ch.shift_id, ch.hour, ch.bucket
$$;
