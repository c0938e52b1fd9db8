-- Warden's system of record, first schema.
--
-- `signals` and `quarantine` are append-only evidence: every byte a link delivered is kept,
-- decodable or not, and the only change allowed afterwards is stamping `acked_at` once.
-- The trigger at the end enforces that, so the audit trail holds even against a stray
-- psql session or a buggy repository function.

-- Links: serial ports, MQTT connections and DC-09 receivers, with their last known state.
CREATE TABLE links (
    id            text PRIMARY KEY,                 -- e.g. 'serial:ttyS0', 'mqtt:broker'
    kind          text NOT NULL CHECK (kind IN ('serial', 'mqtt', 'dc09')),
    up            boolean NOT NULL,
    last_heard_at timestamptz NULL,                 -- last time the link was reported up
    changed_at    timestamptz NOT NULL              -- last time `up` flipped (or first seen)
);

-- Registered alarm units. `account` is what the unit sends on the wire.
CREATE TABLE devices (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account               text NOT NULL UNIQUE,
    protocol              text NOT NULL CHECK (protocol IN ('contact_id', 'sia', 'mqtt', 'dc09')),
    test_interval_seconds integer NULL CHECK (test_interval_seconds > 0),
    client_ref            text NULL,
    label                 text NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);

-- Every decoded signal, raw bytes included. `id` is a UUID v7 chosen by the caller, so the
-- group-commit writer can tell which rows a multi-row insert skipped as duplicates.
CREATE TABLE signals (
    id           uuid PRIMARY KEY,
    source       text NOT NULL CHECK (source IN ('serial', 'mqtt', 'dc09', 'internal')),
    link_id      text NOT NULL,
    account      text NULL,
    device_id    bigint NULL REFERENCES devices (id),
    kind         text NOT NULL,                     -- 'event', 'heartbeat', 'presence', ...
    raw          bytea NOT NULL,
    decoded      jsonb NOT NULL,
    received_at  timestamptz NOT NULL,              -- first byte seen, microsecond precision
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    acked_at     timestamptz NULL,                  -- ACK/PUBACK sent (best effort, see writer)
    dedupe_key   text NULL                          -- e.g. MQTT message id: redeliveries count once
);
CREATE UNIQUE INDEX signals_dedupe_key ON signals (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX signals_received_at ON signals (received_at);
CREATE INDEX signals_device_received_at ON signals (device_id, received_at);

-- Input that could not become a signal, kept byte for byte with the reason.
CREATE TABLE quarantine (
    id           uuid PRIMARY KEY,
    source       text NOT NULL CHECK (source IN ('serial', 'mqtt', 'dc09', 'internal')),
    link_id      text NOT NULL,
    raw          bytea NOT NULL,
    -- A short code from a fixed set in the code ('bad_frame', 'bad_json', 'unknown_version',
    -- 'oversized', 'unknown_account', 'schema'): safe as a metric label.
    reason_code  text NOT NULL CHECK (char_length(reason_code) BETWEEN 1 AND 32),
    reason       text NOT NULL,                     -- the full human-readable message
    received_at  timestamptz NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    acked_at     timestamptz NULL
);
CREATE INDEX quarantine_received_at ON quarantine (received_at);

-- Append-only guard shared by both evidence tables. The one permitted change is setting
-- `acked_at` from NULL with every other column unchanged; the comparison goes through jsonb
-- so columns added later are protected without touching this function.
CREATE FUNCTION warden_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.acked_at IS NULL
           AND NEW.acked_at IS NOT NULL
           AND (to_jsonb(NEW) - 'acked_at') = (to_jsonb(OLD) - 'acked_at') THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'warden: % is append-only evidence; % rejected', TG_TABLE_NAME, TG_OP
        USING HINT = 'only setting acked_at once, from NULL, is allowed';
END;
$$;

CREATE TRIGGER signals_append_only
    BEFORE UPDATE OR DELETE ON signals
    FOR EACH ROW EXECUTE FUNCTION warden_append_only();
CREATE TRIGGER signals_no_truncate
    BEFORE TRUNCATE ON signals
    FOR EACH STATEMENT EXECUTE FUNCTION warden_append_only();
CREATE TRIGGER quarantine_append_only
    BEFORE UPDATE OR DELETE ON quarantine
    FOR EACH ROW EXECUTE FUNCTION warden_append_only();
CREATE TRIGGER quarantine_no_truncate
    BEFORE TRUNCATE ON quarantine
    FOR EACH STATEMENT EXECUTE FUNCTION warden_append_only();
