-- 0011 corrected parts carry an ideal cycle time (both flavours).
--
-- 0009 gave a part correction the ideal cycle time of its order on that machine
-- (work_orders). Orders started without one (the machine's own applies, and count records
-- carry it) left corrections without any, and one such part makes performance unknown
-- (produced_no_ideal > 0). From here on a correction without the order's takes the ideal
-- cycle time of the newest count record of that operation (of the machine, for a held count
-- with no order) at or before the correction's instant: the one its parts were made at.
-- Otherwise oee_count_parts is 0009's.

CREATE OR REPLACE FUNCTION oee_count_parts(p_from timestamptz, p_to timestamptz,
                                           p_hourly boolean)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, shift_id text,
               hour timestamptz, produced bigint, good bigint, reject bigint,
               ideal_cycle_time_s double precision)
LANGUAGE sql STABLE AS $$
WITH clipped AS (
    SELECT c.site, c.area, c.line, c.machine, c.order_id, c.shift_id, c.ideal_cycle_time_s,
           c.good, c.reject, c.total, c.interval_start AS s, c.interval_end AS e,
           greatest(c.interval_start, p_from) AS lo,
           least(c.interval_end, p_to) AS hi
    FROM counts c
    WHERE c.interval_start < p_to
      AND (c.interval_end > p_from
           OR (c.interval_end = c.interval_start AND c.interval_start >= p_from))
), pieces AS (
    SELECT c.*, p.hour, p.lo AS piece_lo, p.hi AS piece_hi
    FROM clipped c
    CROSS JOIN LATERAL (
        SELECT h AS hour, greatest(c.lo, h) AS lo, least(c.hi, h + interval '1 hour') AS hi
        FROM unnest(oee_hours(c.lo, c.hi)) AS h
        WHERE p_hourly
        UNION ALL
        SELECT NULL, c.lo, c.hi
        WHERE NOT p_hourly
    ) p
), recorded AS (
    SELECT site, area, line, machine, order_id, shift_id, hour,
           sum(CASE WHEN whole THEN total ELSE oee_share(total, s, e, piece_lo, piece_hi) END)
               ::bigint AS produced,
           sum(CASE WHEN whole THEN good ELSE oee_share(good, s, e, piece_lo, piece_hi) END)
               ::bigint AS good,
           sum(CASE WHEN whole THEN reject ELSE oee_share(reject, s, e, piece_lo, piece_hi) END)
               ::bigint AS reject,
           ideal_cycle_time_s
    FROM (SELECT pc.*, pc.piece_lo = pc.s AND pc.piece_hi = pc.e AS whole FROM pieces pc) pw
    GROUP BY site, area, line, machine, order_id, shift_id, hour, ideal_cycle_time_s
), corrected AS (
    SELECT k.site, k.area, k.line, k.machine, k.order_id, k.shift_id,
           CASE WHEN p_hourly THEN date_trunc('hour', k.at, 'UTC') END AS hour,
           sum(k.delta)::bigint AS produced,
           (sum(k.delta) FILTER (WHERE k.figure = 'good'))::bigint AS good,
           (sum(k.delta) FILTER (WHERE k.figure = 'scrap'))::bigint AS reject,
           coalesce(w.ideal_cycle_time_s, ict.ideal_cycle_time_s) AS ideal_cycle_time_s
    FROM part_corrections k
    LEFT JOIN work_orders w
           ON w.order_id = k.order_id AND w.site = k.site AND w.area = k.area
          AND w.line = k.line AND w.machine = k.machine
    LEFT JOIN LATERAL (
        SELECT c.ideal_cycle_time_s
        FROM counts c
        WHERE c.site = k.site AND c.area = k.area AND c.line = k.line
          AND c.machine = k.machine AND c.interval_start <= k.at
          AND c.ideal_cycle_time_s IS NOT NULL
          AND (k.order_id IS NULL OR c.order_id = k.order_id)
        ORDER BY c.interval_start DESC
        LIMIT 1
    ) ict ON w.ideal_cycle_time_s IS NULL
    WHERE k.figure IN ('good', 'scrap') AND k.at >= p_from AND k.at < p_to
    GROUP BY k.site, k.area, k.line, k.machine, k.order_id, k.shift_id,
             CASE WHEN p_hourly THEN date_trunc('hour', k.at, 'UTC') END,
             coalesce(w.ideal_cycle_time_s, ict.ideal_cycle_time_s)
)
SELECT * FROM recorded
UNION ALL
SELECT site, area, line, machine, order_id, shift_id, hour, produced,
       coalesce(good, 0), coalesce(reject, 0), ideal_cycle_time_s
FROM corrected
$$;
