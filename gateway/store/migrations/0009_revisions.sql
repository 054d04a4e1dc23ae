-- 0009 the clerk's loop: users, API tokens, append-only revisions, the export ledger, and
-- "shown figures = raw + revisions" defined once (both flavours).
--
-- Raw rows (events, counts, state_intervals, downtimes, held_counts) are never changed by a
-- clerk. Every correction is one row of `revisions`: who, when, from where, on which target,
-- which field, old and new value, and why. Reports (oee_* via oee_count_parts), the review
-- queue and the ERP export all read the views and functions below, never raw + their own
-- arithmetic.
--
-- 0001 created a placeholder `revisions` of another shape that nothing ever wrote. If it is
-- empty it is replaced; if someone wrote rows by hand they are kept, read-only, as
-- `revisions_0001`.

CREATE TABLE users (
    name          text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    role          text        NOT NULL CHECK (role IN ('viewer', 'clerk', 'supervisor')),
    display_name  text,
    -- argon2id; set by the login page (next issue). API clients use api_tokens.
    password_hash text        CHECK (password_hash LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens `mgw_<token_id>_<secret>`: the id finds the row, the secret is checked
-- against its argon2id hash. The secret itself is never stored.
CREATE TABLE api_tokens (
    token_id   text        PRIMARY KEY CHECK (token_id ~ '^[a-z0-9]{8,32}$'),
    user_name  text        NOT NULL REFERENCES users (name),
    hash       text        NOT NULL CHECK (hash LIKE '$argon2id$%'),
    label      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_name);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM revisions) THEN
        ALTER TABLE revisions RENAME TO revisions_0001;
    ELSE
        DROP TABLE revisions;
    END IF;
END
$$;

-- target_kind and its key:
--   order        one order's operation on one machine (order_id + machine path)
--   order_shift  the same within one shift (+ shift_id)
--   downtime     one downtime, recorded or created by a split (downtime_id)
--   held_count   one held count (held_id)
--   queue_entry  a review-queue entry acknowledged without a correction (entry key)
-- target_key is the target in one text (the application writes it; a JSON array of the
-- key columns); target_rev numbers the revisions of one target 1, 2, 3, ...: an edit names
-- the number it saw, and the unique key turns two edits of the same state into one success
-- and one conflict, never a silent overwrite.
CREATE TABLE revisions (
    revision_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id   uuid        NOT NULL,     -- the rows one action wrote (move: two orders)
    created_at  timestamptz NOT NULL DEFAULT now(),
    user_name   text        NOT NULL REFERENCES users (name),
    source      text        NOT NULL CHECK (source IN ('web', 'cli', 'api')),
    action      text        NOT NULL CHECK (action IN (
                    'adjust', 'accept', 'reject', 'recode', 'split', 'merge', 'move',
                    'confirm', 'reopen', 'acknowledge')),
    target_kind text        NOT NULL CHECK (target_kind IN (
                    'order', 'order_shift', 'downtime', 'held_count', 'queue_entry')),
    target_key  text        NOT NULL,
    target_rev  integer     NOT NULL CHECK (target_rev >= 1),
    site        text,
    area        text,
    line        text,
    machine     text,
    order_id    text,
    shift_id    text,
    downtime_id text,
    held_id     text,
    field       text        NOT NULL,
    old_value   jsonb,
    new_value   jsonb,
    reason      text        NOT NULL CHECK (btrim(reason) <> ''),
    UNIQUE (target_kind, target_key, target_rev),
    CHECK (CASE target_kind
        WHEN 'order' THEN field IN ('good', 'scrap', 'rework', 'status')
                          AND order_id IS NOT NULL AND machine IS NOT NULL
        WHEN 'order_shift' THEN field IN ('good', 'scrap', 'rework')
                          AND order_id IS NOT NULL AND machine IS NOT NULL
                          AND shift_id IS NOT NULL
        WHEN 'downtime' THEN field IN ('reason', 'start', 'end', 'merged_into', 'created')
                          AND downtime_id IS NOT NULL
        WHEN 'held_count' THEN field = 'accepted' AND held_id IS NOT NULL
        ELSE field = 'acknowledged' END),
    -- Part counts are whole numbers, and never negative once corrected.
    CHECK (field NOT IN ('good', 'scrap', 'rework', 'accepted')
           OR (jsonb_typeof(new_value) = 'number' AND new_value::numeric >= 0
               AND new_value::numeric = trunc(new_value::numeric)))
);
CREATE INDEX revisions_order_idx ON revisions (order_id, machine) WHERE order_id IS NOT NULL;
CREATE INDEX revisions_downtime_idx ON revisions (downtime_id) WHERE downtime_id IS NOT NULL;
CREATE INDEX revisions_held_idx ON revisions (held_id) WHERE held_id IS NOT NULL;
CREATE INDEX revisions_created_idx ON revisions (created_at);

-- Enforced by trigger as well as by grants (deploy/postgres/roles.sql gives the review
-- service SELECT and INSERT only): no role rewrites history by accident.
CREATE TRIGGER revisions_no_update_delete
    BEFORE UPDATE OR DELETE ON revisions
    FOR EACH ROW EXECUTE FUNCTION revisions_append_only();
CREATE TRIGGER revisions_no_truncate
    BEFORE TRUNCATE ON revisions
    FOR EACH STATEMENT EXECUTE FUNCTION revisions_append_only();

-- The export ledger: what was handed to the ERP. One run per recorded export, one line per
-- confirmation (order, operation, counter). A line is the whole confirmation the first
-- time, then only deltas (kind 'delta') when a later correction changed the figures.
-- 0001's `exports` (one row per order) is left as it is; nothing writes it any more.
CREATE TABLE export_runs (
    run_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    user_name  text        NOT NULL REFERENCES users (name),
    source     text        NOT NULL CHECK (source IN ('web', 'cli', 'api')),
    selection  jsonb       NOT NULL,
    format     text        NOT NULL CHECK (format IN ('csv', 'json')),
    lines      integer     NOT NULL CHECK (lines >= 0),
    sha256     text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$')
);

CREATE TABLE export_lines (
    run_id        bigint      NOT NULL REFERENCES export_runs (run_id),
    order_id      text        NOT NULL,
    site          text        NOT NULL,
    area          text        NOT NULL,
    line          text        NOT NULL,
    machine       text        NOT NULL,
    counter       integer     NOT NULL CHECK (counter >= 1),
    kind          text        NOT NULL CHECK (kind IN ('confirmation', 'delta')),
    posting_date  date        NOT NULL,
    final         boolean     NOT NULL,
    yield         bigint      NOT NULL,
    scrap         bigint      NOT NULL,
    rework        bigint      NOT NULL,
    setup_s       numeric     NOT NULL,
    run_s         numeric     NOT NULL,
    down_s        numeric     NOT NULL,
    line_data     jsonb       NOT NULL,   -- the line exactly as exported
    PRIMARY KEY (order_id, site, area, line, machine, counter)
);

CREATE TRIGGER export_runs_no_update_delete
    BEFORE UPDATE OR DELETE ON export_runs
    FOR EACH ROW EXECUTE FUNCTION revisions_append_only();
CREATE TRIGGER export_lines_no_update_delete
    BEFORE UPDATE OR DELETE ON export_lines
    FOR EACH ROW EXECUTE FUNCTION revisions_append_only();

-- ---------------------------------------------------------------------------------------
-- Shown figures = raw + revisions. Defined here once.
-- ---------------------------------------------------------------------------------------

-- The newest revision of each (target, field): fields whose new value replaces the shown one
-- (status, downtime reason/start/end/merged_into, held accepted, acknowledgements).
CREATE VIEW revision_latest AS
SELECT DISTINCT ON (target_kind, target_key, field)
       revision_id, created_at, user_name, action, target_kind, target_key, target_rev,
       site, area, line, machine, order_id, shift_id, downtime_id, held_id, field,
       old_value, new_value, reason
FROM revisions
ORDER BY target_kind, target_key, field, revision_id DESC;

-- Every correction of parts as a signed delta on (machine, order, shift) at an instant:
--   order / order_shift adjustments and moves: new - old of each revision (figures good,
--   scrap, rework); an order-level one has no shift;
--   held counts: the parts accepted (good for a good or total counter, scrap for a reject
--   counter), each revision the change of the accepted number, at the held reading.
-- `at` places a correction in time for windowed reports: an order's at its start on that
-- machine, an order-within-shift's where the order's time in that shift begins.
CREATE VIEW part_corrections AS
SELECT r.revision_id, r.target_kind, r.site, r.area, r.line, r.machine, r.order_id,
       CASE WHEN r.target_kind = 'order_shift' THEN r.shift_id END AS shift_id,
       r.field AS figure,
       (r.new_value::numeric
        - CASE WHEN jsonb_typeof(r.old_value) = 'number' THEN r.old_value::numeric ELSE 0 END
       )::bigint AS delta,
       coalesce(CASE WHEN r.target_kind = 'order_shift'
                     THEN greatest(s.start_ts, w.started_at) ELSE w.started_at END,
                s.start_ts, r.created_at) AS at
FROM revisions r
LEFT JOIN work_orders w
       ON w.order_id = r.order_id AND w.site = r.site AND w.area = r.area
      AND w.line = r.line AND w.machine = r.machine
LEFT JOIN shifts s ON s.shift_id = r.shift_id AND r.target_kind = 'order_shift'
WHERE r.target_kind IN ('order', 'order_shift') AND r.field IN ('good', 'scrap', 'rework')
UNION ALL
SELECT r.revision_id, r.target_kind, h.site, h.area, h.line, h.machine, h.order_id,
       h.shift_id,
       CASE h.role WHEN 'reject_count' THEN 'scrap' ELSE 'good' END,
       (r.new_value::numeric
        - CASE WHEN jsonb_typeof(r.old_value) = 'number' THEN r.old_value::numeric ELSE 0 END
       )::bigint,
       h.ts
FROM revisions r
JOIN held_counts h ON h.held_id = r.held_id
WHERE r.target_kind = 'held_count' AND r.field = 'accepted';

-- Held counts with the clerk's decision: pending until a revision accepts all, part or none.
CREATE VIEW held_counts_shown AS
SELECT h.*,
       CASE WHEN d.revision_id IS NULL THEN 'pending'
            WHEN d.new_value::bigint = 0 THEN 'rejected'
            WHEN d.new_value::bigint >= h.claimed THEN 'accepted'
            ELSE 'partly accepted' END AS decision,
       coalesce(d.new_value::bigint, 0) AS accepted,
       d.user_name AS decided_by, d.created_at AS decided_at, d.reason AS decision_reason,
       coalesce(d.target_rev, 0) AS revision
FROM held_counts h
LEFT JOIN revision_latest d
       ON d.target_kind = 'held_count' AND d.field = 'accepted' AND d.held_id = h.held_id;

-- Downtimes as shown: the recorded ones and the pieces splits created, each with its newest
-- start, end and reason revision; a downtime merged into another is gone. `lineage` is the
-- recorded downtime a piece came from (itself for a recorded one).
CREATE VIEW downtimes_shown AS
WITH pieces AS (
    SELECT d.downtime_id, d.downtime_id AS lineage, d.site, d.area, d.line, d.machine,
           d.start_ts, d.end_ts, d.reason_code, d.reason_text, d.category, d.planned, d.loss,
           d.micro_stop, d.order_id, d.shift_id
    FROM downtimes d
    UNION ALL
    SELECT r.downtime_id, r.new_value->>'lineage', r.site, r.area, r.line, r.machine,
           (r.new_value->>'start')::timestamptz, (r.new_value->>'end')::timestamptz,
           r.new_value->>'reason_code', r.new_value->>'reason_text', r.new_value->>'category',
           coalesce((r.new_value->>'planned')::boolean, false), r.new_value->>'loss',
           false, r.order_id, r.shift_id
    FROM revisions r
    WHERE r.target_kind = 'downtime' AND r.field = 'created'
), edits AS (
    SELECT downtime_id,
           max(target_rev) AS revision,
           (array_agg(new_value ORDER BY revision_id DESC)
                FILTER (WHERE field = 'reason'))[1] AS reason,
           (array_agg(new_value ORDER BY revision_id DESC)
                FILTER (WHERE field = 'start'))[1] AS start_v,
           (array_agg(new_value ORDER BY revision_id DESC)
                FILTER (WHERE field = 'end'))[1] AS end_v,
           (array_agg(new_value ORDER BY revision_id DESC)
                FILTER (WHERE field = 'merged_into'))[1] AS merged_into
    FROM revisions
    WHERE target_kind = 'downtime'
    GROUP BY downtime_id
)
SELECT p.downtime_id, p.lineage, p.site, p.area, p.line, p.machine,
       coalesce((e.start_v #>> '{}')::timestamptz, p.start_ts) AS start_ts,
       CASE WHEN e.end_v IS NOT NULL THEN (e.end_v #>> '{}')::timestamptz ELSE p.end_ts END
           AS end_ts,
       CASE WHEN e.reason IS NOT NULL THEN e.reason->>'reason_code' ELSE p.reason_code END
           AS reason_code,
       CASE WHEN e.reason IS NOT NULL THEN e.reason->>'reason_text' ELSE p.reason_text END
           AS reason_text,
       CASE WHEN e.reason IS NOT NULL THEN e.reason->>'category' ELSE p.category END
           AS category,
       CASE WHEN e.reason IS NOT NULL THEN coalesce((e.reason->>'planned')::boolean, false)
            ELSE p.planned END AS planned,
       CASE WHEN e.reason IS NOT NULL THEN e.reason->>'loss' ELSE p.loss END AS loss,
       -- A piece the clerk reshaped (split, merged) is judged by its own length.
       CASE WHEN e.start_v IS NULL AND e.end_v IS NULL THEN p.micro_stop END AS micro_stop,
       p.order_id, p.shift_id,
       CASE WHEN e.downtime_id IS NULL AND p.lineage = p.downtime_id THEN 'auto'
            ELSE 'clerk' END AS source,
       coalesce(e.revision, 0) AS revision
FROM pieces p
LEFT JOIN edits e ON e.downtime_id = p.downtime_id
WHERE e.merged_into IS NULL;

-- One order's operations (one row per machine it ran on), or every operation whose time
-- overlaps [p_from, p_to): recorded and shown figures, status, pending held counts and the
-- target's revision number.
CREATE FUNCTION order_operations_shown(p_from timestamptz DEFAULT '-infinity',
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
       coalesce(st.new_value #>> '{}',
                CASE WHEN w.status = 'confirmed' THEN 'completed' ELSE w.status END),
       w.started_at, w.ended_at,
       CASE WHEN st.new_value #>> '{}' = 'confirmed' THEN st.created_at END,
       CASE WHEN st.new_value #>> '{}' = 'confirmed' THEN st.user_name END,
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

-- One order's figures per machine and shift: recorded counts plus the corrections that name
-- that shift (order-within-shift adjustments, held counts), with each target's revision.
CREATE FUNCTION order_shifts_shown(p_order text)
RETURNS TABLE (order_id text, site text, area text, line text, machine text, shift_id text,
               recorded_good bigint, recorded_scrap bigint, good bigint, scrap bigint,
               rework bigint, revision integer)
LANGUAGE sql STABLE AS $$
WITH raw AS (
    SELECT c.site, c.area, c.line, c.machine, c.shift_id,
           sum(c.good)::bigint AS good, sum(c.reject)::bigint AS reject
    FROM counts c
    WHERE c.order_id = p_order
    GROUP BY c.site, c.area, c.line, c.machine, c.shift_id
), fix AS (
    SELECT p.site, p.area, p.line, p.machine, p.shift_id,
           sum(p.delta) FILTER (WHERE p.figure = 'good')::bigint AS good,
           sum(p.delta) FILTER (WHERE p.figure = 'scrap')::bigint AS scrap,
           sum(p.delta) FILTER (WHERE p.figure = 'rework')::bigint AS rework
    FROM part_corrections p
    WHERE p.order_id = p_order AND p.shift_id IS NOT NULL
    GROUP BY p.site, p.area, p.line, p.machine, p.shift_id
), revs AS (
    SELECT r.site, r.area, r.line, r.machine, r.shift_id, max(r.target_rev) AS revision
    FROM revisions r
    WHERE r.target_kind = 'order_shift' AND r.order_id = p_order
    GROUP BY r.site, r.area, r.line, r.machine, r.shift_id
)
SELECT p_order, k.site, k.area, k.line, k.machine, k.shift_id,
       coalesce(raw.good, 0), coalesce(raw.reject, 0),
       coalesce(raw.good, 0) + coalesce(fix.good, 0),
       coalesce(raw.reject, 0) + coalesce(fix.scrap, 0),
       coalesce(fix.rework, 0), coalesce(revs.revision, 0)
FROM (SELECT site, area, line, machine, shift_id FROM raw
      UNION SELECT site, area, line, machine, shift_id FROM fix
      UNION SELECT site, area, line, machine, shift_id FROM revs) k
LEFT JOIN raw ON raw.site = k.site AND raw.area = k.area AND raw.line = k.line
             AND raw.machine = k.machine AND raw.shift_id IS NOT DISTINCT FROM k.shift_id
LEFT JOIN fix ON fix.site = k.site AND fix.area = k.area AND fix.line = k.line
             AND fix.machine = k.machine AND fix.shift_id IS NOT DISTINCT FROM k.shift_id
LEFT JOIN revs ON revs.site = k.site AND revs.area = k.area AND revs.line = k.line
              AND revs.machine = k.machine AND revs.shift_id IS NOT DISTINCT FROM k.shift_id
$$;

-- OEE counts parts as shown: the recorded count records (0005) plus every part correction at
-- its instant (part_corrections.at). Rework is not a count of produced parts and stays out.
-- Corrections carry the order's ideal cycle time on that machine.
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
           w.ideal_cycle_time_s
    FROM part_corrections k
    LEFT JOIN work_orders w
           ON w.order_id = k.order_id AND w.site = k.site AND w.area = k.area
          AND w.line = k.line AND w.machine = k.machine
    WHERE k.figure IN ('good', 'scrap') AND k.at >= p_from AND k.at < p_to
    GROUP BY k.site, k.area, k.line, k.machine, k.order_id, k.shift_id,
             CASE WHEN p_hourly THEN date_trunc('hour', k.at, 'UTC') END, w.ideal_cycle_time_s
)
SELECT * FROM recorded
UNION ALL
SELECT site, area, line, machine, order_id, shift_id, hour, produced,
       coalesce(good, 0), coalesce(reject, 0), ideal_cycle_time_s
FROM corrected
$$;
