-- 0008 held counts, and the starved/blocked buckets in states and OEE (both flavours).
--
-- A held count is a counter change the rules could not vouch for (gateway/events.py
-- HeldCountData): a spike faster than the machine can make parts, or a decrease that is
-- neither a provable wrap nor a reset to zero. It is never part of `counts`, so no total and
-- no OEE figure includes it; it waits here for a clerk to accept (all or part) or reject it.
-- One row per held id (machine, counter, reading instant): a second delivery of the event
-- changes nothing.

ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
    'count', 'count.held', 'state',
    'downtime.started', 'downtime.updated', 'downtime.ended',
    'order.started', 'order.ended',
    'shift.started'));

CREATE TABLE held_counts (
    held_id       text        PRIMARY KEY,
    event_id      uuid        NOT NULL,
    site          text        NOT NULL,
    area          text        NOT NULL,
    line          text        NOT NULL,
    machine       text        NOT NULL,
    order_id      text,
    shift_id      text,
    counter       text        NOT NULL,
    role          text        NOT NULL
                  CHECK (role IN ('good_count', 'reject_count', 'total_count')),
    old_raw       bigint      NOT NULL CHECK (old_raw >= 0),
    new_raw       bigint      NOT NULL CHECK (new_raw >= 0),
    claimed       bigint      NOT NULL CHECK (claimed >= 0),
    plausible_max bigint      CHECK (plausible_max >= 0),
    reason        text        NOT NULL CHECK (reason IN ('spike', 'decrease')),
    seen_from     timestamptz NOT NULL,   -- when the old value was last seen
    ts            timestamptz NOT NULL,   -- the reading that showed the new value
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (ts >= seen_from)
);
CREATE INDEX held_counts_machine_idx ON held_counts (site, area, line, machine, ts);
CREATE INDEX held_counts_order_idx ON held_counts (order_id, machine);
CREATE INDEX held_counts_shift_idx ON held_counts (shift_id, machine);

-- starved / blocked: stops caused upstream or downstream (PackML Suspended, configured codes).
ALTER TABLE state_intervals DROP CONSTRAINT state_intervals_bucket_check;
ALTER TABLE state_intervals ADD CONSTRAINT state_intervals_bucket_check CHECK (bucket IN (
    'running', 'idle', 'starved', 'blocked', 'down', 'changeover',
    'planned_stop', 'not_scheduled', 'unknown'));

-- OEE and the starved/blocked buckets. Their time is charged by the loss the rules recorded
-- with the stop (rules.starved_blocked_loss, default 'performance'): inside a downtime with
-- loss 'performance' it stays in run time (performance_stop_s), 'availability' is downtime,
-- 'planned' a planned stop, exactly as for down time. The two functions below are 0007's
-- with 'starved' and 'blocked' added where down time is charged; nothing else changes.
-- (Starved time outside any downtime row, shorter than min_state_s at a boundary, is
-- charged as downtime: seconds at most.)

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
), charged AS (
    SELECT pc.*, o.*
    FROM pieces pc
    LEFT JOIN LATERAL (
        SELECT sum(x.s) FILTER (WHERE x.loss = 'planned') AS planned_s,
               sum(x.s) FILTER (WHERE x.micro AND x.loss IS DISTINCT FROM 'planned') AS micro_s,
               sum(x.s) FILTER (WHERE x.micro AND x.loss = 'performance') AS micro_perf_s,
               sum(x.s) FILTER (WHERE NOT x.micro AND x.loss = 'performance') AS perf_s
        FROM (
            SELECT extract(epoch FROM least(pc.hi, d.end_ts) - greatest(pc.lo, d.start_ts))
                       AS s,
                   coalesce(d.micro_stop, false) AS micro, d.loss
            FROM downtimes d
            WHERE pc.bucket IN ('down', 'changeover', 'starved', 'blocked')
              -- The predicate of downtimes_loss_span_idx, word for word.
              AND (d.micro_stop OR d.loss IN ('planned', 'performance'))
              AND tstzrange(d.start_ts, d.end_ts) && tstzrange(pc.lo, pc.hi)
              AND d.site = pc.site AND d.area = pc.area AND d.line = pc.line
              AND d.machine = pc.machine
        ) x
    ) o ON true
)
SELECT ch.site, ch.area, ch.line, ch.machine, ch.order_id, ch.shift_id, ch.hour, ch.bucket,
       sum(extract(epoch FROM ch.hi - ch.lo)),
       coalesce(sum(ch.planned_s), 0), coalesce(sum(ch.micro_s), 0),
       coalesce(sum(ch.micro_perf_s), 0), coalesce(sum(ch.perf_s), 0)
FROM charged ch
GROUP BY ch.site, ch.area, ch.line, ch.machine, ch.order_id, ch.shift_id, ch.hour, ch.bucket
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
), inputs AS (
    SELECT t.site, t.area, t.line, t.machine, t.order_id, t.shift_id, t.hour,
           t.bucket, t.seconds, t.planned_s, t.micro_s, t.micro_perf_s, t.perf_s,
           0::bigint AS produced, 0::bigint AS good, 0::bigint AS reject,
           NULL::double precision AS ideal_cycle_time_s
    FROM oee_state_time(p_from, p_to, p_by = 'hour') t
    UNION ALL
    SELECT c.site, c.area, c.line, c.machine, c.order_id, c.shift_id, c.hour,
           NULL, 0, 0, 0, 0, 0, c.produced, c.good, c.reject, c.ideal_cycle_time_s
    FROM oee_count_parts(p_from, p_to, p_by = 'hour') c
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
           s.scheduled_s - s.planned_stop_s - s.downtime_s + s.performance_stop_s AS run_s
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
       performance_stop_s, idle_s, run_s, unknown_s, produced, good, reject, ideal_s,
       produced_no_ideal, availability, performance, quality, availability * performance * quality,
       micro_stops
FROM ratios
-- Constant conditions: checked once before any row is read, so a bad argument is an error
-- even when the window holds no data.
WHERE oee_grain(p_by) IS NOT NULL AND oee_micro_stops(p_micro_stops) IS NOT NULL
$$;
