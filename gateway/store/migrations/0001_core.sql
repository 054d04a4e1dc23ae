-- 0001 core schema: every table of the store contract, identical on plain PostgreSQL and
-- TimescaleDB (the TimescaleDB-only parts live in 0002_timeseries.timescaledb.sql).
--
-- Conventions
--   * Plant hierarchy columns site / area / line / machine, as in the topics (ISA-95).
--   * Times are timestamptz; intervals are half-open [start, end), end NULL while open.
--   * Every unique key of a time-series table (events, counts, state_intervals) contains its
--     time column: TimescaleDB requires the partitioning column in unique indexes, and using
--     the same keys on plain PostgreSQL keeps the two flavours' constraints identical.
--   * Enumerations are CHECK constraints that mirror gateway/events.py, so a row the gateway
--     would never publish cannot be stored either.

-- Raw event envelopes (mes.event/1) as received by the recorder. Never updated.
CREATE TABLE events (
    event_id    uuid        NOT NULL,
    ts          timestamptz NOT NULL,   -- when it happened at the machine
    type        text        NOT NULL CHECK (type IN (
                    'count', 'state',
                    'downtime.started', 'downtime.updated', 'downtime.ended',
                    'order.started', 'order.ended')),
    gateway     text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 0),
    site        text        NOT NULL,
    area        text        NOT NULL,
    line        text        NOT NULL,
    machine     text        NOT NULL,
    order_id    text,
    shift_id    text,
    data        jsonb       NOT NULL,
    topic       text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Redeliveries carry the same envelope, hence the same ts: this key drops them.
    PRIMARY KEY (event_id, ts)
);
CREATE INDEX events_machine_ts_idx ON events (site, area, line, machine, ts DESC);
-- Retention (prune on plain PostgreSQL) and time-range reads scan by ts alone.
CREATE INDEX events_ts_idx ON events (ts DESC);

-- Count deltas, one row per `count` event.
CREATE TABLE counts (
    event_id       uuid        NOT NULL,
    site           text        NOT NULL,
    area           text        NOT NULL,
    line           text        NOT NULL,
    machine        text        NOT NULL,
    order_id       text,                 -- NULL: produced with no active order (flagged)
    shift_id       text,
    interval_start timestamptz NOT NULL,
    interval_end   timestamptz NOT NULL,
    good           bigint      NOT NULL CHECK (good >= 0),
    reject         bigint      NOT NULL CHECK (reject >= 0),
    total          bigint      NOT NULL CHECK (total >= 0),
    quality        text        NOT NULL DEFAULT 'ok'
                   CHECK (quality IN ('ok', 'wrap', 'reset', 'gap', 'spike', 'restart')),
    CHECK (interval_end >= interval_start),
    PRIMARY KEY (event_id, interval_start)
);
CREATE INDEX counts_machine_idx ON counts (site, area, line, machine, interval_start DESC);
CREATE INDEX counts_order_idx ON counts (order_id, interval_start) WHERE order_id IS NOT NULL;
-- The clerk's review page lists the flagged records; they are a small minority.
CREATE INDEX counts_flagged_idx ON counts (quality, interval_start) WHERE quality <> 'ok';

-- Machine state history: one row per continuous stretch in one bucket, split at shift and
-- order boundaries.
CREATE TABLE state_intervals (
    site     text        NOT NULL,
    area     text        NOT NULL,
    line     text        NOT NULL,
    machine  text        NOT NULL,
    start_ts timestamptz NOT NULL,
    end_ts   timestamptz,                -- NULL while the machine is still in this state
    bucket   text        NOT NULL CHECK (bucket IN (
                 'running', 'idle', 'down', 'changeover',
                 'planned_stop', 'not_scheduled', 'unknown')),
    code     text,                       -- the source state code as the PLC gave it
    reason   text,
    order_id text,
    shift_id text,
    event_id uuid,                       -- the state event that opened the interval
    CHECK (end_ts IS NULL OR end_ts >= start_ts),
    PRIMARY KEY (site, area, line, machine, start_ts)
);

-- Downtimes, updated in place as they start, get a reason, and end; every clerk change is
-- also written to `revisions`.
CREATE TABLE downtimes (
    downtime_id text        PRIMARY KEY,  -- stable across gateway restarts
    site        text        NOT NULL,
    area        text        NOT NULL,
    line        text        NOT NULL,
    machine     text        NOT NULL,
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz,              -- NULL while the downtime is open
    duration_s  double precision CHECK (duration_s >= 0),
    reason_code text,                     -- NULL: unassigned, waiting for the clerk
    reason_text text,
    category    text,
    planned     boolean     NOT NULL DEFAULT false,
    order_id    text,
    shift_id    text,
    source      text        NOT NULL DEFAULT 'auto' CHECK (source IN ('auto', 'clerk')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (end_ts IS NULL OR end_ts >= start_ts)
);
CREATE INDEX downtimes_machine_idx ON downtimes (site, area, line, machine, start_ts DESC);
CREATE INDEX downtimes_open_idx ON downtimes (site, area, line, machine) WHERE end_ts IS NULL;

-- Work orders. A scheduled order (CSV import) has no machine until it is started on one.
CREATE TABLE work_orders (
    order_id           text        PRIMARY KEY,
    site               text,
    area               text,
    line               text,
    machine            text,
    product            text,
    quantity           bigint      CHECK (quantity >= 0),
    ideal_cycle_time_s double precision CHECK (ideal_cycle_time_s > 0),
    status             text        NOT NULL DEFAULT 'planned'
                       CHECK (status IN ('planned', 'running', 'completed', 'confirmed')),
    origin             text        CHECK (origin IN (
                           'mqtt', 'http', 'cli', 'plc', 'schedule', 'synthetic')),
    started_at         timestamptz,
    ended_at           timestamptz,
    confirmed_at       timestamptz,
    confirmed_by       text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- The machine path is given whole or not at all.
    CHECK (num_nulls(site, area, line, machine) IN (0, 4)),
    CHECK (status = 'planned' OR machine IS NOT NULL),
    CHECK (ended_at IS NULL OR started_at IS NULL OR ended_at >= started_at)
);
-- At most one active order per machine (domain rule), enforced by the database.
CREATE UNIQUE INDEX work_orders_one_running_idx
    ON work_orders (site, area, line, machine) WHERE status = 'running';

-- Shift calendar. Time outside every shift of a machine's calendar is `not_scheduled`.
CREATE TABLE shifts (
    shift_id text        PRIMARY KEY,
    calendar text        NOT NULL,
    name     text,                        -- e.g. "early", as shown to the clerk
    start_ts timestamptz NOT NULL,
    end_ts   timestamptz NOT NULL,
    CHECK (end_ts > start_ts)
);
CREATE INDEX shifts_calendar_idx ON shifts (calendar, start_ts);

-- Clerk corrections: an append-only audit trail. Raw rows are never changed; the totals
-- shown are raw + revisions.
CREATE TABLE revisions (
    revision_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    author      text        NOT NULL CHECK (btrim(author) <> ''),
    entity      text        NOT NULL CHECK (entity IN ('work_order', 'shift', 'downtime', 'count')),
    entity_id   text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('adjust', 'recode', 'split', 'move', 'confirm')),
    old_value   jsonb,
    new_value   jsonb,
    reason      text        NOT NULL CHECK (btrim(reason) <> '')
);
CREATE INDEX revisions_entity_idx ON revisions (entity, entity_id, revision_id);

-- Enforced by trigger, not only by grants, so that no role (including the gateway's own)
-- can rewrite history by accident.
CREATE FUNCTION revisions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'revisions are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER revisions_no_update_delete
    BEFORE UPDATE OR DELETE ON revisions
    FOR EACH ROW EXECUTE FUNCTION revisions_append_only();
CREATE TRIGGER revisions_no_truncate
    BEFORE TRUNCATE ON revisions
    FOR EACH STATEMENT EXECUTE FUNCTION revisions_append_only();

-- ERP exports per order. `figures` and `last_revision_id` record what was posted, so that a
-- later correction can be shown as the delta still to post; `sha256` lets a repeated export
-- prove it produced the same file.
CREATE TABLE exports (
    export_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         text        NOT NULL REFERENCES work_orders (order_id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text        NOT NULL,
    format           text        NOT NULL CHECK (format IN ('csv', 'json')),
    final            boolean     NOT NULL DEFAULT false,
    last_revision_id bigint,
    figures          jsonb       NOT NULL,
    sha256           text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$')
);
CREATE INDEX exports_order_idx ON exports (order_id, created_at DESC);

-- Messages the recorder could not accept, kept byte for byte (they may not even be UTF-8)
-- with the reason, for inspection and replay.
CREATE TABLE dead_letters (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text        NOT NULL,
    payload     bytea       NOT NULL,
    error       text        NOT NULL
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
