-- 0007 the OEE factor each downtime is charged to (both flavours: downtimes is a plain table
-- on both, and the OEE functions read it the same way).
--
-- The rules put `loss` into every downtime event (gateway/events.py DowntimeData): the
-- reason's loss bucket ('planned' for a planned reason such as cleaning or planned
-- maintenance), `rules.micro_stop_loss` for a micro-stop whose reason is not planned,
-- 'availability' while unassigned. Until now the store dropped it: a planned cleaning stop
-- counted as an availability loss, and OEE charged micro-stops per oee_settings (default
-- 'availability', the opposite of the rules' default) whatever the gateway had recorded.
--
-- From here on:
--   * downtimes.loss holds the newest event's loss (gateway/store/typed.py), NULL for rows
--     whose events never carried one (recorded by an older gateway);
--   * down/changeover time inside a downtime with loss 'planned' is a planned stop: it is
--     added to planned_stop_s and left out of PBT, like the planned_stop bucket;
--   * down/changeover time inside a downtime with loss 'performance' stays in run time
--     (performance_stop_s, a new column): a micro-stop so recorded, and a downtime whose
--     reason the catalog charges to performance;
--   * micro-stops are charged as recorded unless the call (p_micro_stops) or the plant
--     (oee_settings.micro_stops, now NULL by default) overrides it with 'availability' or
--     'performance'; the override never touches a planned downtime. A micro-stop without a
--     recorded loss (loss NULL) counts as availability loss, as before 0007;
--   * the `micro_stops` column of each row says 'recorded' or the override used.

ALTER TABLE downtimes
    ADD COLUMN loss text CHECK (loss IN ('availability', 'performance', 'planned'));

-- The loss of rows already stored, from the raw events retention has kept: the newest
-- downtime event per id, ordered as typed.py orders them (time, then started < updated <
-- ended, then event id). Without a stored event, or with events from a gateway that did not
-- send loss, the row keeps NULL and is charged as before.
WITH ev AS (
    SELECT data->>'downtime_id' AS downtime_id, event_id, ts, data->>'loss' AS loss,
           CASE type WHEN 'downtime.started' THEN 0 WHEN 'downtime.updated' THEN 1 ELSE 2 END
               AS rank
    FROM events
    WHERE type IN ('downtime.started', 'downtime.updated', 'downtime.ended')
), newest AS (
    SELECT DISTINCT ON (downtime_id) downtime_id, loss
    FROM ev
    ORDER BY downtime_id, ts DESC, rank DESC, event_id DESC
)
UPDATE downtimes d SET loss = n.loss
FROM newest n
WHERE n.downtime_id = d.downtime_id AND n.loss IS NOT NULL;

-- OEE reads every downtime whose time is not plain availability loss; the micro-stop index
-- of 0005 covered only micro-stops.
DROP INDEX downtimes_micro_span_idx;
CREATE INDEX downtimes_loss_span_idx ON downtimes USING gist (tstzrange(start_ts, end_ts))
    WHERE micro_stop OR loss IN ('planned', 'performance');

-- The plant-wide override is optional now: NULL charges micro-stops as recorded. The old
-- default 'availability' was nobody's choice, only 0005's default, and it overrode what the
-- gateway recorded (rules.micro_stop_loss is where the plant chooses); it goes back to NULL.
-- A 'performance' there was set on purpose and stays an override.
ALTER TABLE oee_settings ALTER COLUMN micro_stops DROP NOT NULL,
                         ALTER COLUMN micro_stops DROP DEFAULT;
UPDATE oee_settings SET micro_stops = NULL, updated_at = now()
WHERE micro_stops = 'availability';

-- 'recorded', or the override in force: the call's, else the plant's.
CREATE OR REPLACE FUNCTION oee_micro_stops(p_choice text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    chosen text := coalesce(p_choice, (SELECT micro_stops FROM oee_settings), 'recorded');
BEGIN
    IF chosen NOT IN ('recorded', 'availability', 'performance') THEN
        RAISE EXCEPTION
            'micro_stops must be ''recorded'', ''availability'' or ''performance'', not %',
            quote_literal(chosen) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN chosen;
END
$$;

-- The return types change (a column more), which CREATE OR REPLACE cannot do.
DROP FUNCTION oee_by_order(timestamptz, timestamptz, text);
DROP FUNCTION oee_by_shift(timestamptz, timestamptz, text);
DROP FUNCTION oee_by_machine_hour(timestamptz, timestamptz, text);
DROP FUNCTION oee_figures(text, timestamptz, timestamptz, text);
DROP FUNCTION oee_state_time(timestamptz, timestamptz, boolean);

-- State time per machine, order, shift, bucket (and UTC hour when p_hourly), clipped to the
-- window, with the parts of its down/changeover time that lie inside downtimes charged
-- otherwise than plain availability loss: planned_s (loss 'planned'), micro_s (micro-stops
-- not planned), micro_perf_s (those of them recorded as performance loss) and perf_s (other
-- downtimes recorded as performance loss). A machine has one downtime at a time, so the
-- parts do not overlap.
CREATE FUNCTION oee_state_time(p_from timestamptz, p_to timestamptz, p_hourly boolean)
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
            WHERE pc.bucket IN ('down', 'changeover')
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

-- The figures grouped by order ('order'), shift ('shift') or hour ('hour'), per machine.
-- planned_stop_s takes in planned downtimes; downtime_s is the remaining down/changeover
-- time, of which performance_stop_s is charged to performance and so stays in run_s:
--   run_s = planned_busy_s - downtime_s + performance_stop_s
CREATE FUNCTION oee_figures(p_by text, p_from timestamptz, p_to timestamptz,
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
           coalesce(sum(r.seconds - r.planned_s) FILTER (WHERE r.bucket IN ('down', 'changeover')),
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

CREATE FUNCTION oee_by_order(p_from timestamptz DEFAULT '-infinity',
                             p_to timestamptz DEFAULT 'infinity',
                             p_micro_stops text DEFAULT NULL)
RETURNS TABLE (site text, area text, line text, machine text, order_id text, product text,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               performance_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
SELECT f.site, f.area, f.line, f.machine, f.order_id, w.product,
       f.scheduled_s, f.planned_stop_s, f.planned_busy_s, f.downtime_s, f.changeover_s,
       f.micro_stop_s, f.performance_stop_s, f.idle_s, f.run_s, f.unknown_s,
       f.produced, f.good, f.reject, f.ideal_s, f.produced_no_ideal,
       f.availability, f.performance, f.quality, f.oee, f.micro_stops
FROM oee_figures('order', p_from, p_to, p_micro_stops) f
LEFT JOIN work_orders w
       ON w.order_id = f.order_id
      AND w.site = f.site AND w.area = f.area AND w.line = f.line AND w.machine = f.machine
$$;

CREATE FUNCTION oee_by_shift(p_from timestamptz DEFAULT '-infinity',
                             p_to timestamptz DEFAULT 'infinity',
                             p_micro_stops text DEFAULT NULL)
RETURNS TABLE (site text, area text, line text, machine text, shift_id text,
               shift_name text, shift_start timestamptz, shift_end timestamptz,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               performance_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
SELECT f.site, f.area, f.line, f.machine, f.shift_id, s.name, s.start_ts, s.end_ts,
       f.scheduled_s, f.planned_stop_s, f.planned_busy_s, f.downtime_s, f.changeover_s,
       f.micro_stop_s, f.performance_stop_s, f.idle_s, f.run_s, f.unknown_s,
       f.produced, f.good, f.reject, f.ideal_s, f.produced_no_ideal,
       f.availability, f.performance, f.quality, f.oee, f.micro_stops
FROM oee_figures('shift', p_from, p_to, p_micro_stops) f
LEFT JOIN shifts s ON s.shift_id = f.shift_id
$$;

CREATE FUNCTION oee_by_machine_hour(p_from timestamptz DEFAULT '-infinity',
                                    p_to timestamptz DEFAULT 'infinity',
                                    p_micro_stops text DEFAULT NULL)
RETURNS TABLE (site text, area text, line text, machine text, hour timestamptz,
               scheduled_s numeric, planned_stop_s numeric, planned_busy_s numeric,
               downtime_s numeric, changeover_s numeric, micro_stop_s numeric,
               performance_stop_s numeric,
               idle_s numeric, run_s numeric, unknown_s numeric,
               produced bigint, good bigint, reject bigint, ideal_s numeric,
               produced_no_ideal bigint,
               availability numeric, performance numeric, quality numeric, oee numeric,
               micro_stops text)
LANGUAGE sql STABLE AS $$
SELECT f.site, f.area, f.line, f.machine, f.hour,
       f.scheduled_s, f.planned_stop_s, f.planned_busy_s, f.downtime_s, f.changeover_s,
       f.micro_stop_s, f.performance_stop_s, f.idle_s, f.run_s, f.unknown_s,
       f.produced, f.good, f.reject, f.ideal_s, f.produced_no_ideal,
       f.availability, f.performance, f.quality, f.oee, f.micro_stops
FROM oee_figures('hour', p_from, p_to, p_micro_stops) f
$$;
