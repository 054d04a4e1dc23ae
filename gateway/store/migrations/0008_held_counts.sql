-- 0008 held counts, and the starved/blocked buckets (both flavours).
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
