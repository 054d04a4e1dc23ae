-- 0010 the clerk's reads at a year's scale (both flavours).
--
-- * An operation's recorded parts (order_operations_shown sums them per order and machine)
--   come from an index-only scan instead of intersecting the order and machine indexes.
-- * The review queue's "total != good + reject" looks only at the records where that holds:
--   the rules keep every record's total equal to good + reject, so they are few, and a
--   partial index finds them without reading a week of counts.
-- * OEE's time columns are computed by oee_times(), from state time alone; oee_figures() is
--   oee_times() plus the parts, so each time figure keeps one definition. The ERP export reads
--   setup / run / down seconds from oee_times() without adding up a month of count records.
--   Columns, rows and results of oee_figures() are those of 0008.

CREATE INDEX counts_operation_idx ON counts (order_id, machine, line, area, site)
    INCLUDE (good, reject) WHERE order_id IS NOT NULL;
CREATE INDEX counts_mismatch_idx ON counts (interval_start) WHERE total <> good + reject;

CREATE FUNCTION oee_times(p_by text, p_from timestamptz, p_to timestamptz, p_micro_stops text)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, shift_id text,
               hour timestamptz,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               performance_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
WITH choice AS (
    SELECT oee_micro_stops(p_micro_stops) AS micro_stops, oee_grain(p_by) AS grain
), sums AS (
    SELECT r.site, r.area, r.line, r.machine,
           CASE WHEN ch.grain = 'order' THEN r.order_id END AS order_id,
           CASE WHEN ch.grain = 'shift' THEN r.shift_id END AS shift_id,
           r.hour,
           ch.micro_stops,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket NOT IN ('not_scheduled', 'unknown')), 0)
               AS scheduled_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket = 'planned_stop'), 0)
               + coalesce(sum(r.planned_s), 0) AS planned_stop_s,
           coalesce(sum(r.seconds - r.planned_s)
                        FILTER (WHERE r.bucket IN ('down', 'changeover', 'starved', 'blocked')),
                    0) AS downtime_s,
           coalesce(sum(r.seconds - r.planned_s) FILTER (WHERE r.bucket = 'changeover'), 0)
               AS changeover_s,
           coalesce(sum(r.micro_s), 0) AS micro_stop_s,
           coalesce(sum(r.perf_s), 0)
               + CASE ch.micro_stops WHEN 'performance' THEN coalesce(sum(r.micro_s), 0)
                                     WHEN 'availability' THEN 0
                                     ELSE coalesce(sum(r.micro_perf_s), 0) END
               AS performance_stop_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket = 'idle'), 0) AS idle_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket = 'unknown'), 0) AS unknown_s
    FROM oee_state_time(p_from, p_to, p_by = 'hour') r CROSS JOIN choice ch
    GROUP BY r.site, r.area, r.line, r.machine,
             CASE WHEN ch.grain = 'order' THEN r.order_id END,
             CASE WHEN ch.grain = 'shift' THEN r.shift_id END,
             r.hour, ch.micro_stops
)
SELECT s.site, s.area, s.line, s.machine, s.order_id, s.shift_id, s.hour,
       s.scheduled_s, s.planned_stop_s, s.scheduled_s - s.planned_stop_s,
       s.downtime_s, s.changeover_s, s.micro_stop_s, s.performance_stop_s, s.idle_s,
       s.scheduled_s - s.planned_stop_s - s.downtime_s + s.performance_stop_s,
       s.unknown_s, s.micro_stops
FROM sums s
WHERE oee_grain(p_by) IS NOT NULL AND oee_micro_stops(p_micro_stops) IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION oee_figures(p_by text, p_from timestamptz, p_to timestamptz,
                            p_micro_stops text)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, shift_id text,
               hour timestamptz,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               performance_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
WITH choice AS (
    SELECT oee_micro_stops(p_micro_stops) AS micro_stops, oee_grain(p_by) AS grain
), parts AS (
    SELECT c.site, c.area, c.line, c.machine,
           CASE WHEN ch.grain = 'order' THEN c.order_id END AS order_id,
           CASE WHEN ch.grain = 'shift' THEN c.shift_id END AS shift_id,
           c.hour, ch.micro_stops,
           sum(c.produced)::bigint AS produced, sum(c.good)::bigint AS good,
           sum(c.reject)::bigint AS reject,
           coalesce(sum(c.produced * c.ideal_cycle_time_s::numeric), 0) AS ideal_s,
           coalesce(sum(c.produced) FILTER (WHERE c.ideal_cycle_time_s IS NULL), 0)::bigint
               AS produced_no_ideal
    FROM oee_count_parts(p_from, p_to, p_by = 'hour') c CROSS JOIN choice ch
    GROUP BY c.site, c.area, c.line, c.machine,
             CASE WHEN ch.grain = 'order' THEN c.order_id END,
             CASE WHEN ch.grain = 'shift' THEN c.shift_id END,
             c.hour, ch.micro_stops
), inputs AS (
    SELECT t.site, t.area, t.line, t.machine, t.order_id, t.shift_id, t.hour, t.micro_stops,
           t.scheduled_s, t.planned_stop_s, t.planned_busy_s, t.downtime_s, t.changeover_s,
           t.micro_stop_s, t.performance_stop_s, t.idle_s, t.run_s, t.unknown_s,
           0::bigint AS produced, 0::bigint AS good, 0::bigint AS reject,
           0::numeric AS ideal_s, 0::bigint AS produced_no_ideal
    FROM oee_times(p_by, p_from, p_to, p_micro_stops) t
    UNION ALL
    SELECT p.site, p.area, p.line, p.machine, p.order_id, p.shift_id, p.hour, p.micro_stops,
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           p.produced, p.good, p.reject, p.ideal_s, p.produced_no_ideal
    FROM parts p
), rows AS (
    SELECT i.site, i.area, i.line, i.machine, i.order_id, i.shift_id, i.hour, i.micro_stops,
           sum(i.scheduled_s) AS scheduled_s, sum(i.planned_stop_s) AS planned_stop_s,
           sum(i.planned_busy_s) AS planned_busy_s, sum(i.downtime_s) AS downtime_s,
           sum(i.changeover_s) AS changeover_s, sum(i.micro_stop_s) AS micro_stop_s,
           sum(i.performance_stop_s) AS performance_stop_s, sum(i.idle_s) AS idle_s,
           sum(i.run_s) AS run_s, sum(i.unknown_s) AS unknown_s,
           sum(i.produced)::bigint AS produced, sum(i.good)::bigint AS good,
           sum(i.reject)::bigint AS reject, sum(i.ideal_s) AS ideal_s,
           sum(i.produced_no_ideal)::bigint AS produced_no_ideal
    FROM inputs i
    GROUP BY i.site, i.area, i.line, i.machine, i.order_id, i.shift_id, i.hour, i.micro_stops
)
SELECT r.site, r.area, r.line, r.machine, r.order_id, r.shift_id, r.hour,
       r.scheduled_s, r.planned_stop_s, r.planned_busy_s, r.downtime_s, r.changeover_s,
       r.micro_stop_s, r.performance_stop_s, r.idle_s, r.run_s, r.unknown_s,
       r.produced, r.good, r.reject, r.ideal_s, r.produced_no_ideal,
       CASE WHEN r.planned_busy_s > 0 THEN r.run_s / r.planned_busy_s END,
       CASE WHEN r.run_s > 0 AND r.produced_no_ideal = 0 THEN r.ideal_s / r.run_s END,
       CASE WHEN r.produced > 0 THEN r.good::numeric / r.produced END,
       CASE WHEN r.planned_busy_s > 0 THEN r.run_s / r.planned_busy_s END
           * CASE WHEN r.run_s > 0 AND r.produced_no_ideal = 0 THEN r.ideal_s / r.run_s END
           * CASE WHEN r.produced > 0 THEN r.good::numeric / r.produced END,
       r.micro_stops
FROM rows r
WHERE oee_grain(p_by) IS NOT NULL AND oee_micro_stops(p_micro_stops) IS NOT NULL
$$;
