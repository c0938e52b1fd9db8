-- Redeliveries are recognised by message id *and* payload, within a bounded window
-- (issue 9).
--
-- Until now `signals.dedupe_key` was unique for all time and the payload was never compared,
-- so a unit whose message counter restarted (a power loss, a firmware reset) had every new
-- alarm that reused an old id acknowledged and thrown away. Now a signal is a redelivery
-- only when the same key arrived with the same payload (SHA-256 of the raw bytes) within the
-- writer's `dedupe_window` (default 24 h). Same key with another payload, or after the
-- window, is a new signal and is stored.
--
-- Why a separate table rather than a unique index on `signals`: "same key and same hash
-- within the window" cannot be a unique index on `signals` itself, because the same key and
-- payload must be storable again once the window has passed, and `signals` is append-only
-- evidence that can never be pruned. `dedupe` holds one row per (key, payload hash): its
-- primary key makes the claim race-free across concurrent batches and several Warden nodes
-- (INSERT ... ON CONFLICT waits for a concurrent claim of the same pair to commit, then
-- re-checks its window against the committed row), `seen_at` is when the stored copy was
-- first seen, and an expired row is claimed again by updating it in place. The writer prunes
-- rows older than the window in the background; pruning is housekeeping, never needed for
-- correctness, since the window is checked on every claim.
--
-- `signal_id` names the signal stored under the latest claim. It carries no foreign key:
-- the claim is made before the signal row is inserted in the same transaction, and a
-- rolled-back transaction takes both with it.
CREATE TABLE dedupe (
    dedupe_key   text NOT NULL,
    payload_hash bytea NOT NULL CHECK (octet_length(payload_hash) = 32),  -- SHA-256 of raw
    signal_id    uuid NOT NULL,
    seen_at      timestamptz NOT NULL,
    PRIMARY KEY (dedupe_key, payload_hash)
);
CREATE INDEX dedupe_seen_at ON dedupe (seen_at);

-- The key alone no longer identifies a signal: the all-time unique index goes, a plain index
-- stays for looking signals up by their key.
DROP INDEX signals_dedupe_key;
CREATE INDEX signals_dedupe_key ON signals (dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Signals of the last day keep being recognised across the upgrade (the old unique index
-- guaranteed one signal per key, so no pair repeats). Older ones are past the default window.
INSERT INTO dedupe (dedupe_key, payload_hash, signal_id, seen_at)
SELECT dedupe_key, sha256(raw), id, committed_at
FROM signals
WHERE dedupe_key IS NOT NULL AND received_at > now() - interval '24 hours'
ON CONFLICT (dedupe_key, payload_hash) DO NOTHING;
