-- 0012 an order confirmed before revisions existed stays confirmed; OEE's state time without
-- a lookup per piece (both flavours).
--
-- 0009's order_operations_shown showed a work_orders row whose status is 'confirmed' without
-- a status revision (set before migration 0009, or sent as such in an order event, which the
-- recorder keeps) as 'completed', so such an order lost its lock. From here on the shown
-- status is the newest status revision, else the recorded status, with the recorded
-- confirmed_at / confirmed_by; a supervisor's reopen (a revision) still takes it back.

CREATE OR REPLACE FUNCTION order_operations_shown(p_from timestamptz DEFAULT '-infinity',
                                       p_to timestamptz DEFAULT 'infinity',
                                       p_order text DEFAULT NULL)
RETURNS TABLE (order_id text, site text, area text, line text, machine text, product text,
               quantity bigint, ideal_cycle_time_s double precision,
               recorded_status text, status text, started_at timestamptz,
               ended_at timestamptz, confirmed_at timestamptz, confirmed_by text,
               recorded_good bigint, recorded_scrap bigint,
               good bigint, scrap bigint, rework bigint,
               held_pending bigint, held_pending_parts bigint, revision integer)
LANGUAGE sql STABLE AS $$
SELECT w.order_id, w.site, w.area, w.line, w.machine, w.product, w.quantity,
       w.ideal_cycle_time_s, w.status,
       coalesce(st.new_value #>> '{}', w.status),
       w.started_at, w.ended_at,
       CASE WHEN st.new_value IS NULL THEN w.confirmed_at
            WHEN st.new_value #>> '{}' = 'confirmed' THEN st.created_at END,
       CASE WHEN st.new_value IS NULL THEN w.confirmed_by
            WHEN st.new_value #>> '{}' = 'confirmed' THEN st.user_name END,
       coalesce(c.good, 0), coalesce(c.reject, 0),
       coalesce(c.good, 0) + coalesce(k.good, 0),
       coalesce(c.reject, 0) + coalesce(k.scrap, 0),
       coalesce(k.rework, 0),
       coalesce(h.pending, 0), coalesce(h.parts, 0),
       coalesce(rv.revision, 0)
FROM work_orders w
LEFT JOIN LATERAL (
    SELECT sum(x.good)::bigint AS good, sum(x.reject)::bigint AS reject
    FROM counts x
    WHERE x.order_id = w.order_id AND x.machine = w.machine AND x.line = w.line
      AND x.area = w.area AND x.site = w.site
) c ON true
LEFT JOIN LATERAL (
    SELECT sum(p.delta) FILTER (WHERE p.figure = 'good')::bigint AS good,
           sum(p.delta) FILTER (WHERE p.figure = 'scrap')::bigint AS scrap,
           sum(p.delta) FILTER (WHERE p.figure = 'rework')::bigint AS rework
    FROM part_corrections p
    WHERE p.order_id = w.order_id AND p.machine = w.machine AND p.line = w.line
      AND p.area = w.area AND p.site = w.site
) k ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS pending, sum(hc.claimed)::bigint AS parts
    FROM held_counts hc
    WHERE hc.order_id = w.order_id AND hc.machine = w.machine AND hc.line = w.line
      AND hc.area = w.area AND hc.site = w.site
      AND NOT EXISTS (SELECT 1 FROM revisions r
                      WHERE r.target_kind = 'held_count' AND r.held_id = hc.held_id)
) h ON true
LEFT JOIN LATERAL (
    SELECT r.new_value, r.created_at, r.user_name
    FROM revisions r
    WHERE r.target_kind = 'order' AND r.field = 'status' AND r.order_id = w.order_id
      AND r.machine = w.machine AND r.line = w.line AND r.area = w.area AND r.site = w.site
    ORDER BY r.revision_id DESC LIMIT 1
) st ON true
LEFT JOIN LATERAL (
    SELECT max(r.target_rev) AS revision
    FROM revisions r
    WHERE r.target_kind = 'order' AND r.order_id = w.order_id
      AND r.machine = w.machine AND r.line = w.line AND r.area = w.area AND r.site = w.site
) rv ON true
WHERE (p_order IS NOT NULL AND w.order_id = p_order)
   OR (p_order IS NULL AND w.started_at < p_to AND coalesce(w.ended_at, 'infinity') > p_from)
$$;

-- OEE's state time, faster (results unchanged): 0008 looked up the downtimes charged to a
-- piece of stop time once per piece, and the planner intersected the machine index with
-- the span index each time (a month of 50 machines: 3.6 s). The charged downtimes of the
-- window are now selected once and matched to the pieces of their machine.

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
), spans AS MATERIALIZED (
    -- The downtimes OEE charges otherwise than plain availability loss that touch the
    -- window (downtimes_loss_span_idx, its predicate word for word).
    SELECT d.site, d.area, d.line, d.machine, d.start_ts, d.end_ts,
           coalesce(d.micro_stop, false) AS micro, d.loss
    FROM downtimes d
    WHERE (d.micro_stop OR d.loss IN ('planned', 'performance'))
      AND tstzrange(d.start_ts, d.end_ts) && tstzrange(p_from, p_to)
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
