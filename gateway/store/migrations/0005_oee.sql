-- 0005 OEE (ISO 22400-2) computed in SQL from the stored rows (both flavours).
--
--   oee_by_order(p_from, p_to, p_micro_stops)        one row per machine and work order
--   oee_by_shift(p_from, p_to, p_micro_stops)        one row per machine and shift
--   oee_by_machine_hour(p_from, p_to, p_micro_stops) one row per machine and UTC hour
--
-- Every row carries its inputs and its results, so each figure can be recomputed by hand:
--   scheduled_s     state time in any bucket but not_scheduled and unknown
--   planned_stop_s  planned_stop time (breaks, planned maintenance)
--   planned_busy_s  PBT = scheduled_s - planned_stop_s
--   downtime_s      down + changeover time (changeover_s and micro_stop_s are parts of it)
--   micro_stop_s    down/changeover time inside downtimes flagged micro_stop
--   idle_s          idle time: a performance loss, inside run_s
--   run_s           APT = PBT - downtime_s, plus micro_stop_s when micro-stops count as
--                   performance loss
--   unknown_s       time without data: excluded from everything, shown as a data gap
--   produced, good, reject: parts; ideal_s = sum(parts x ideal cycle time in force)
--   produced_no_ideal: parts whose count record has no ideal cycle time (performance is
--                   then NULL rather than flattered)
--   availability = run_s / PBT, performance = ideal_s / run_s, quality = good / produced,
--   oee = availability x performance x quality; NULL where a denominator is 0.
--   micro_stops     'availability' or 'performance': how micro-stops were counted.
--
-- Time comes from state_intervals, not from downtimes: the intervals partition each
-- machine's time into buckets, split at shift and order boundaries, so PBT, downtime and run
-- time add up exactly and attribute to the right order and shift. Downtimes only mark which
-- down/changeover time is a micro-stop (the gateway sets micro_stop when a downtime ends).
--
-- The window [p_from, p_to) clips everything: a row describes the part of its order, shift
-- or hour inside the window. An open interval (end_ts NULL) lasts until now() or p_to,
-- whichever is earlier. Count records are split across the window's edges and across hours
-- in proportion to time, by cumulative floors: the parts up to instant t of a record of N
-- parts over [s, e) are floor(N * (t - s) / (e - s)), so the pieces are whole parts and add
-- up exactly to N. Without a window (the defaults) orders and shifts are reported whole.
--
-- The micro-stop choice is the row of oee_settings unless p_micro_stops overrides it.

-- Micro-stops overlapping a stretch of down time, found by time whatever the history's length.
CREATE INDEX downtimes_micro_span_idx ON downtimes USING gist (tstzrange(start_ts, end_ts))
    WHERE micro_stop;

CREATE TABLE oee_settings (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    micro_stops text        NOT NULL DEFAULT 'availability'
                CHECK (micro_stops IN ('availability', 'performance')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO oee_settings DEFAULT VALUES;

CREATE FUNCTION oee_micro_stops(p_choice text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    chosen text := coalesce(p_choice, (SELECT micro_stops FROM oee_settings));
BEGIN
    IF chosen IS NULL THEN
        RAISE EXCEPTION 'oee_settings has no row: set micro_stops there or pass p_micro_stops'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chosen NOT IN ('availability', 'performance') THEN
        RAISE EXCEPTION 'micro_stops must be ''availability'' or ''performance'', not %',
            quote_literal(chosen) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN chosen;
END
$$;

CREATE FUNCTION oee_grain(p_by text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_by IS NULL OR p_by NOT IN ('order', 'shift', 'hour') THEN
        RAISE EXCEPTION 'OEE is computed by order, shift or hour, not %',
            coalesce(quote_literal(p_by), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN p_by;
END
$$;

-- The UTC hours that [lo, hi) touches (an instant touches its own hour), as an array: the
-- planner reckons ten elements when unnesting an array it cannot see, but a thousand rows per
-- record for a set-returning function, which priced one machine's day like a year's and
-- had it compiled by JIT for half a second before a 40 ms query.
CREATE FUNCTION oee_hours(lo timestamptz, hi timestamptz) RETURNS timestamptz[]
LANGUAGE sql STABLE AS $$
SELECT array(SELECT generate_series(date_trunc('hour', lo, 'UTC'),
                                    greatest(hi - interval '1 microsecond', lo),
                                    interval '1 hour'))
$$;

-- State time per machine, order, shift, bucket (and UTC hour when p_hourly), clipped to the
-- window, with the part of it that lies inside micro-stop downtimes.
CREATE FUNCTION oee_state_time(p_from timestamptz, p_to timestamptz, p_hourly boolean)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, shift_id text,
               hour timestamptz, bucket text, seconds numeric, micro_stop_s numeric)
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
)
SELECT pc.site, pc.area, pc.line, pc.machine, pc.order_id, pc.shift_id, pc.hour, pc.bucket,
       sum(extract(epoch FROM pc.hi - pc.lo)),
       sum(CASE WHEN pc.bucket IN ('down', 'changeover') THEN coalesce((
           SELECT sum(extract(epoch FROM least(pc.hi, d.end_ts) - greatest(pc.lo, d.start_ts)))
           FROM downtimes d
           WHERE d.micro_stop
             AND tstzrange(d.start_ts, d.end_ts) && tstzrange(pc.lo, pc.hi)
             AND d.site = pc.site AND d.area = pc.area AND d.line = pc.line
             AND d.machine = pc.machine
       ), 0) ELSE 0 END)
FROM pieces pc
GROUP BY pc.site, pc.area, pc.line, pc.machine, pc.order_id, pc.shift_id, pc.hour, pc.bucket
$$;

-- The parts of a record of n parts over [s, e) that fall in [lo, hi) (s <= lo <= hi <= e,
-- s < e): a difference of cumulative floors, so the pieces of a record are whole parts and
-- add up to n exactly.
CREATE FUNCTION oee_share(n bigint, s timestamptz, e timestamptz,
                          lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
SELECT (floor(n * extract(epoch FROM hi - s) / extract(epoch FROM e - s))
        - floor(n * extract(epoch FROM lo - s) / extract(epoch FROM e - s)))::bigint
$$;

-- Parts per machine, order, shift (and UTC hour when p_hourly) inside the window; records
-- crossing the window's edges or an hour are split by cumulative floors (see the top).
CREATE FUNCTION oee_count_parts(p_from timestamptz, p_to timestamptz, p_hourly boolean)
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
)
-- A record wholly inside its piece (the common case) keeps its parts without arithmetic.
SELECT site, area, line, machine, order_id, shift_id, hour,
       sum(CASE WHEN whole THEN total ELSE oee_share(total, s, e, piece_lo, piece_hi) END)::bigint,
       sum(CASE WHEN whole THEN good ELSE oee_share(good, s, e, piece_lo, piece_hi) END)::bigint,
       sum(CASE WHEN whole THEN reject ELSE oee_share(reject, s, e, piece_lo, piece_hi) END)::bigint,
       ideal_cycle_time_s
FROM (SELECT pc.*, pc.piece_lo = pc.s AND pc.piece_hi = pc.e AS whole FROM pieces pc) pw
GROUP BY site, area, line, machine, order_id, shift_id, hour, ideal_cycle_time_s
$$;

-- The figures grouped by order ('order'), shift ('shift') or hour ('hour'), per machine.
CREATE FUNCTION oee_figures(p_by text, p_from timestamptz, p_to timestamptz,
                            p_micro_stops text)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, shift_id text,
               hour timestamptz,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
WITH choice AS (
    SELECT oee_micro_stops(p_micro_stops) AS micro_stops, oee_grain(p_by) AS grain
), inputs AS (
    SELECT t.site, t.area, t.line, t.machine, t.order_id, t.shift_id, t.hour,
           t.bucket, t.seconds, t.micro_stop_s,
           0::bigint AS produced, 0::bigint AS good, 0::bigint AS reject,
           NULL::double precision AS ideal_cycle_time_s
    FROM oee_state_time(p_from, p_to, p_by = 'hour') t
    UNION ALL
    SELECT c.site, c.area, c.line, c.machine, c.order_id, c.shift_id, c.hour,
           NULL, 0, 0, c.produced, c.good, c.reject, c.ideal_cycle_time_s
    FROM oee_count_parts(p_from, p_to, p_by = 'hour') c
), sums AS (
    SELECT r.site, r.area, r.line, r.machine,
           CASE WHEN ch.grain = 'order' THEN r.order_id END AS order_id,
           CASE WHEN ch.grain = 'shift' THEN r.shift_id END AS shift_id,
           r.hour,
           ch.micro_stops,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket NOT IN ('not_scheduled', 'unknown')), 0)
               AS scheduled_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket = 'planned_stop'), 0) AS planned_stop_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket IN ('down', 'changeover')), 0)
               AS downtime_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket = 'changeover'), 0) AS changeover_s,
           coalesce(sum(r.micro_stop_s), 0) AS micro_stop_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket = 'idle'), 0) AS idle_s,
           coalesce(sum(r.seconds) FILTER (WHERE r.bucket = 'unknown'), 0) AS unknown_s,
           sum(r.produced)::bigint AS produced,
           sum(r.good)::bigint AS good,
           sum(r.reject)::bigint AS reject,
           coalesce(sum(r.produced * r.ideal_cycle_time_s::numeric), 0) AS ideal_s,
           coalesce(sum(r.produced) FILTER (WHERE r.bucket IS NULL
                                              AND r.ideal_cycle_time_s IS NULL), 0)::bigint
               AS produced_no_ideal
    FROM inputs r CROSS JOIN choice ch
    GROUP BY r.site, r.area, r.line, r.machine,
             CASE WHEN ch.grain = 'order' THEN r.order_id END,
             CASE WHEN ch.grain = 'shift' THEN r.shift_id END,
             r.hour, ch.micro_stops
), times AS (
    SELECT s.*,
           s.scheduled_s - s.planned_stop_s AS planned_busy_s,
           s.scheduled_s - s.planned_stop_s - s.downtime_s
               + CASE WHEN s.micro_stops = 'performance' THEN s.micro_stop_s ELSE 0 END AS run_s
    FROM sums s
), ratios AS (
    SELECT t.*,
           CASE WHEN t.planned_busy_s > 0 THEN t.run_s / t.planned_busy_s END AS availability,
           CASE WHEN t.run_s > 0 AND t.produced_no_ideal = 0 THEN t.ideal_s / t.run_s END
               AS performance,
           CASE WHEN t.produced > 0 THEN t.good::numeric / t.produced END AS quality
    FROM times t
)
SELECT site, area, line, machine, order_id, shift_id, hour,
       scheduled_s, planned_stop_s, planned_busy_s, downtime_s, changeover_s, micro_stop_s,
       idle_s, run_s, unknown_s, produced, good, reject, ideal_s, produced_no_ideal,
       availability, performance, quality, availability * performance * quality,
       micro_stops
FROM ratios
-- Constant conditions: checked once before any row is read, so a bad argument is an error
-- even when the window holds no data.
WHERE oee_grain(p_by) IS NOT NULL AND oee_micro_stops(p_micro_stops) IS NOT NULL
$$;

CREATE FUNCTION oee_by_order(p_from timestamptz DEFAULT '-infinity',
                             p_to timestamptz DEFAULT 'infinity',
                             p_micro_stops text DEFAULT NULL)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, product text,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
SELECT f.site, f.area, f.line, f.machine, f.order_id, w.product,
       f.scheduled_s, f.planned_stop_s, f.planned_busy_s, f.downtime_s, f.changeover_s,
       f.micro_stop_s, f.idle_s, f.run_s, f.unknown_s, f.produced, f.good, f.reject,
       f.ideal_s, f.produced_no_ideal, f.availability, f.performance, f.quality, f.oee,
       f.micro_stops
FROM oee_figures('order', p_from, p_to, p_micro_stops) f
LEFT JOIN work_orders w ON w.order_id = f.order_id
$$;

CREATE FUNCTION oee_by_shift(p_from timestamptz DEFAULT '-infinity',
                             p_to timestamptz DEFAULT 'infinity',
                             p_micro_stops text DEFAULT NULL)
RETURNS TABLE (site text, area text, line text, machine text, shift_id text,
               shift_name text, shift_start timestamptz, shift_end timestamptz,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
SELECT f.site, f.area, f.line, f.machine, f.shift_id, s.name, s.start_ts, s.end_ts,
       f.scheduled_s, f.planned_stop_s, f.planned_busy_s, f.downtime_s, f.changeover_s,
       f.micro_stop_s, f.idle_s, f.run_s, f.unknown_s, f.produced, f.good, f.reject,
       f.ideal_s, f.produced_no_ideal, f.availability, f.performance, f.quality, f.oee,
       f.micro_stops
FROM oee_figures('shift', p_from, p_to, p_micro_stops) f
LEFT JOIN shifts s ON s.shift_id = f.shift_id
$$;

CREATE FUNCTION oee_by_machine_hour(p_from timestamptz DEFAULT '-infinity',
                                    p_to timestamptz DEFAULT 'infinity',
                                    p_micro_stops text DEFAULT NULL)
RETURNS TABLE (site text, area text, line text, machine text, hour timestamptz,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
SELECT f.site, f.area, f.line, f.machine, f.hour,
       f.scheduled_s, f.planned_stop_s, f.planned_busy_s, f.downtime_s, f.changeover_s,
       f.micro_stop_s, f.idle_s, f.run_s, f.unknown_s, f.produced, f.good, f.reject,
       f.ideal_s, f.produced_no_ideal, f.availability, f.performance, f.quality, f.oee,
       f.micro_stops
FROM oee_figures('hour', p_from, p_to, p_micro_stops) f
$$;
