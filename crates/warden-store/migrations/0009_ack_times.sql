-- When each signal or quarantine record was acknowledged (ACK/PUBACK sent), kept beside the
-- evidence instead of stamped into it.
--
-- Until now the writer set `signals.acked_at` with an UPDATE per signal. On an append-only
-- table that is the most expensive write of all: a second copy of every row (raw bytes and
-- decoded JSON included), a new entry in each of its indexes, and the append-only trigger
-- rendering the old and the new row to jsonb to prove only `acked_at` changed. Ingest spent
-- more on it than on storing the signal. Now the time goes into this narrow append-only
-- table with one multi-row INSERT per batch. The `acked_at` columns stay (rows stamped before
-- this migration keep their time, and the trigger still allows exactly that one change);
-- readers take the earlier of the two through `signal_acks`.
CREATE TABLE acks (
    id       uuid NOT NULL,           -- signals.id or quarantine.id (UUID v7, never reused)
    acked_at timestamptz NOT NULL
);
CREATE INDEX acks_id ON acks (id);

CREATE TRIGGER acks_append_only
    BEFORE UPDATE OR DELETE ON acks
    FOR EACH ROW EXECUTE FUNCTION warden_history_only();
CREATE TRIGGER acks_no_truncate
    BEFORE TRUNCATE ON acks
    FOR EACH STATEMENT EXECUTE FUNCTION warden_history_only();

-- The first acknowledgement of each record (a redelivery acknowledged again keeps the first).
CREATE VIEW first_acks AS
SELECT id, min(acked_at) AS acked_at FROM acks GROUP BY id;

-- Signals with their acknowledgement time, old stamp or new row.
CREATE VIEW signals_acked AS
SELECT s.id, s.source, s.link_id, s.account, s.device_id, s.kind, s.raw, s.decoded,
       s.received_at, s.committed_at, COALESCE(s.acked_at, a.acked_at) AS acked_at, s.dedupe_key
FROM signals s LEFT JOIN first_acks a ON a.id = s.id;
