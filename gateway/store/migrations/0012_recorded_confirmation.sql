-- 0012 an order confirmed before revisions existed stays confirmed (both flavours).
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
