-- 0006 work orders per machine (both flavours: work_orders is a plain table on both).
--
-- On a line one work order runs through several machines at once, each machine one
-- operation of it (the ERP export is per order and operation/machine). Keyed by order_id
-- alone, work_orders held one row per order, with the machine of whichever event came last:
-- the other machines' operations were lost. From here on a row is one order on one machine,
-- keyed by (order_id, site, area, line, machine); the recorder upserts, derives `running` and
-- keeps a clerk's `confirmed` per row (gateway/store/typed.py). "At most one running order
-- per machine" stays the partial unique index work_orders_one_running_idx of 0001.
--
-- Rows without a machine. 0001 allowed a `planned` row with no machine (a schedule known
-- before any machine starts the order); a key column cannot be NULL. Nothing writes such
-- rows: orders reach the store only through order.started / order.ended, which always carry
-- the machine, and the gateway puts its schedule's master data into those events. So any
-- such row was written by hand; it is kept, with its master data, in `planned_orders`, which
-- nothing else reads or writes. A planned row for a named machine (status 'planned', machine
-- given) is still allowed in work_orders: it is that order's operation on that machine, and
-- the recorder fills it in when the order starts there.
--
-- Existing rows stay as they are (their start and end were the order's over every machine).
-- The operations the old key lost are rebuilt from the raw events that retention has kept:
-- each (order, machine) with order events and no row gets one, derived as the recorder
-- derives it, confirmed if the clerk confirmed the order; then `running` is derived anew on
-- every machine.

CREATE TABLE planned_orders (
    order_id           text        PRIMARY KEY,
    product            text,
    quantity           bigint      CHECK (quantity >= 0),
    ideal_cycle_time_s double precision CHECK (ideal_cycle_time_s > 0),
    origin             text        CHECK (origin IN (
                           'mqtt', 'http', 'cli', 'plc', 'schedule', 'synthetic')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO planned_orders (order_id, product, quantity, ideal_cycle_time_s, origin,
                            created_at, updated_at)
SELECT order_id, product, quantity, ideal_cycle_time_s, origin, created_at, updated_at
FROM work_orders
WHERE machine IS NULL;

-- An export names an order, which is now one row per machine (or none yet): no foreign key
-- can point at that.
ALTER TABLE exports DROP CONSTRAINT exports_order_id_fkey;

DELETE FROM work_orders WHERE machine IS NULL;
ALTER TABLE work_orders DROP CONSTRAINT work_orders_pkey;
ALTER TABLE work_orders
    ALTER COLUMN site SET NOT NULL,
    ALTER COLUMN area SET NOT NULL,
    ALTER COLUMN line SET NOT NULL,
    ALTER COLUMN machine SET NOT NULL,
    ADD PRIMARY KEY (order_id, site, area, line, machine);

-- The lost operations, from the stored order events (see typed.py WORK_ORDERS: the newest
-- event per order and machine gives the fields, each detail comes from the newest event
-- that has it, the first start and the last end make the span).
WITH ev AS (
    SELECT data->>'order_id' AS order_id, event_id, ts, type, site, area, line, machine, data
    FROM events
    WHERE type IN ('order.started', 'order.ended')
), newest AS (
    SELECT DISTINCT ON (order_id, site, area, line, machine) *
    FROM ev
    ORDER BY order_id, site, area, line, machine, ts DESC, type = 'order.ended' DESC,
             event_id DESC
), span AS (
    SELECT order_id, site, area, line, machine,
           min(ts) FILTER (WHERE type = 'order.started') AS started_at,
           max(ts) FILTER (WHERE type = 'order.ended') AS ended_at,
           (array_agg(data->>'product' ORDER BY ts DESC, type = 'order.ended' DESC,
                      event_id DESC) FILTER (WHERE data->>'product' IS NOT NULL))[1]
               AS product,
           (array_agg((data->>'quantity')::bigint ORDER BY ts DESC, type = 'order.ended' DESC,
                      event_id DESC) FILTER (WHERE data->>'quantity' IS NOT NULL))[1]
               AS quantity,
           (array_agg((data->>'ideal_cycle_time_s')::float8
                      ORDER BY ts DESC, type = 'order.ended' DESC, event_id DESC)
                FILTER (WHERE data->>'ideal_cycle_time_s' IS NOT NULL))[1]
               AS ideal_cycle_time_s
    FROM ev
    GROUP BY order_id, site, area, line, machine
), confirmed AS (
    SELECT DISTINCT ON (order_id) order_id, confirmed_at, confirmed_by
    FROM work_orders
    WHERE status = 'confirmed'
    ORDER BY order_id, confirmed_at DESC NULLS LAST
), known AS (
    SELECT DISTINCT ON (order_id) order_id, product, quantity, ideal_cycle_time_s
    FROM work_orders
    ORDER BY order_id, last_event_ts DESC NULLS LAST
)
INSERT INTO work_orders (order_id, site, area, line, machine, product, quantity,
                         ideal_cycle_time_s, status, origin, started_at, ended_at,
                         confirmed_at, confirmed_by,
                         last_event_ts, last_event_type, last_event_id)
SELECT n.order_id, n.site, n.area, n.line, n.machine,
       coalesce(s.product, k.product), coalesce(s.quantity, k.quantity),
       coalesce(s.ideal_cycle_time_s, k.ideal_cycle_time_s),
       CASE WHEN c.order_id IS NOT NULL OR n.data->>'status' = 'confirmed' THEN 'confirmed'
            ELSE 'completed' END,
       n.data->>'origin', s.started_at, s.ended_at, c.confirmed_at, c.confirmed_by,
       n.ts, n.type, n.event_id
FROM newest n
JOIN span s USING (order_id, site, area, line, machine)
LEFT JOIN confirmed c USING (order_id)
LEFT JOIN known k USING (order_id)
ON CONFLICT (order_id, site, area, line, machine) DO NOTHING;

-- Running, derived on every machine as typed.py ORDER_DEMOTE / ORDER_PROMOTE derive it for
-- the machines of a batch: demote first, then promote (the unique index is checked row by
-- row).
WITH newest AS (
    SELECT DISTINCT ON (site, area, line, machine)
           order_id, site, area, line, machine, last_event_type
    FROM work_orders
    WHERE last_event_id IS NOT NULL
    ORDER BY site, area, line, machine,
             last_event_ts DESC, last_event_type = 'order.started' DESC, last_event_id DESC
)
UPDATE work_orders w SET status = 'completed', updated_at = now()
WHERE w.status = 'running'
  AND NOT EXISTS (
      SELECT 1 FROM newest r
      WHERE r.last_event_type = 'order.started' AND r.order_id = w.order_id
        AND r.site = w.site AND r.area = w.area AND r.line = w.line AND r.machine = w.machine);

WITH newest AS (
    SELECT DISTINCT ON (site, area, line, machine)
           order_id, site, area, line, machine, last_event_type
    FROM work_orders
    WHERE last_event_id IS NOT NULL
    ORDER BY site, area, line, machine,
             last_event_ts DESC, last_event_type = 'order.started' DESC, last_event_id DESC
)
UPDATE work_orders w SET status = 'running', updated_at = now()
FROM newest r
WHERE r.last_event_type = 'order.started' AND w.status = 'completed'
  AND r.order_id = w.order_id
  AND r.site = w.site AND r.area = w.area AND r.line = w.line AND r.machine = w.machine;

-- OEE per order reads the product from the order's row on the same machine (0005 joined on
-- order_id alone, which now would repeat each row once per machine of the order).
CREATE OR REPLACE FUNCTION oee_by_order(p_from timestamptz DEFAULT '-infinity',
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
LEFT JOIN work_orders w
       ON w.order_id = f.order_id
      AND w.site = f.site AND w.area = f.area AND w.line = f.line AND w.machine = f.machine
$$;
