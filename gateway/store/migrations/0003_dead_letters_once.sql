-- A dead letter is stored once per (topic, payload).
--
-- The recorder acknowledges a batch only after it commits; when the acks are lost (the
-- connection drops between commit and PUBACK) the broker delivers the batch again. Events
-- are deduplicated by event_id, and dead letters now by their exact bytes: the same bad
-- payload on the same topic is one row, whenever it came.

-- Earlier duplicates (if any) are folded into their first row before the unique index.
DELETE FROM dead_letters d
USING dead_letters first
WHERE d.topic = first.topic AND d.payload = first.payload AND d.id > first.id;

ALTER TABLE dead_letters
    ADD COLUMN payload_sha256 bytea GENERATED ALWAYS AS (sha256(payload)) STORED;

CREATE UNIQUE INDEX dead_letters_once_idx ON dead_letters (topic, payload_sha256);
