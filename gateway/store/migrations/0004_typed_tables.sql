-- 0004 the typed tables as the recorder fills them from events (both flavours).
--
-- The recorder derives counts, state_intervals, downtimes, work_orders and shifts from the
-- events of each batch, in the batch's transaction (gateway/store/typed.py). Events may come
-- twice and out of order, so every row that several events shape keeps the identity of the
-- event its fields came from: a newer event replaces them, an older or repeated one does
-- not, and the tables end up the same whatever the order of arrival.

-- shift.started joins the event types (gateway/events.py).
ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
    'count', 'state',
    'downtime.started', 'downtime.updated', 'downtime.ended',
    'order.started', 'order.ended',
    'shift.started'));

-- The ideal cycle time in force for the parts of a count record (the order's, else the
-- machine's), so performance needs no join to guess it. NULL: not known to the gateway.
ALTER TABLE counts
    ADD COLUMN ideal_cycle_time_s double precision CHECK (ideal_cycle_time_s > 0);

-- Downtimes: `micro_stop` is set when the downtime ends (shorter than the machine's
-- micro_stop_s). The descriptive fields come from the newest event, ordered by
-- (event_ts, event_rank, event_id) with rank started 0 < updated 1 < ended 2; the end
-- fields come from the ended event with the latest end (end_event_id breaks ties).
ALTER TABLE downtimes
    ADD COLUMN micro_stop   boolean,
    ADD COLUMN event_ts     timestamptz,
    ADD COLUMN event_rank   smallint CHECK (event_rank BETWEEN 0 AND 2),
    ADD COLUMN event_id     uuid,
    ADD COLUMN end_event_id uuid;
CREATE INDEX downtimes_micro_idx ON downtimes (site, area, line, machine, start_ts)
    WHERE micro_stop;

-- Work orders: the newest order event (by ts, then ended before started of the same
-- order, then event_id) gives the descriptive fields; started_at is the first start and
-- ended_at the last end seen. `running` is derived per machine: the order whose newest
-- event is the machine's newest order event, when that event is a start.
ALTER TABLE work_orders
    ADD COLUMN last_event_ts   timestamptz,
    ADD COLUMN last_event_type text CHECK (last_event_type IN ('order.started', 'order.ended')),
    ADD COLUMN last_event_id   uuid;
CREATE INDEX work_orders_machine_idx ON work_orders (site, area, line, machine, last_event_ts);
-- "ended_at >= started_at" (0001) cannot hold at every moment: an order that ran, ended and
-- resumed, whose events arrive out of order, is known for a while by its resumed start and
-- its earlier end only. The recorder must not refuse that order (its events would become
-- dead letters), and once its first start arrives the pair is in order again.
ALTER TABLE work_orders DROP CONSTRAINT work_orders_check2;

-- Shifts: breaks as a JSON array of {"start", "end"} (ISO-8601 UTC), replaced together with
-- the row by a newer shift.started event.
ALTER TABLE shifts
    ADD COLUMN breaks   jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(breaks) = 'array'),
    ADD COLUMN event_ts timestamptz,
    ADD COLUMN event_id uuid;

-- Time-window reads (OEE, review pages) select counts and state intervals by time across
-- machines; the per-machine indexes of 0001 lead with the machine.
CREATE INDEX counts_interval_start_idx ON counts (interval_start);
CREATE INDEX state_intervals_start_idx ON state_intervals (start_ts);
