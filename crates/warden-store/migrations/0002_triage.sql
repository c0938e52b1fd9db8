-- Triage state: the engine's current view of every incident, the append-only history of
-- every effect (transitions, audit entries, SLA events), which signals have been triaged,
-- and an outbox for escalation delivery. Written by the engine in one transaction per batch.

CREATE TABLE incidents (
    id             bigint PRIMARY KEY,
    priority       text NOT NULL CHECK (priority IN ('life_critical', 'urgent', 'technical', 'information')),
    kind           text NOT NULL,
    state          text NOT NULL,
    device_id      bigint NULL,
    raised_at      timestamptz NOT NULL,
    offered_at     timestamptz NULL,
    claimed_at     timestamptz NULL,
    answer_time_us bigint NULL,
    resolved_at    timestamptz NULL,
    signal_count   integer NOT NULL,
    -- The core's full incident record (serde), from which state is rebuilt on restart.
    doc            jsonb NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX incidents_open ON incidents (priority, raised_at) WHERE resolved_at IS NULL;

CREATE TABLE incident_events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    effect      jsonb NOT NULL
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, seq);

-- A signal is triaged exactly once: its id lands here in the same transaction as the
-- effects it caused, so a restart replays exactly the signals not yet triaged.
CREATE TABLE triaged (
    signal_id uuid PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NULL,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at timestamptz NULL
);
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;

-- The incident history is evidence too: no update, delete or truncate.
CREATE FUNCTION warden_history_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'warden: % is append-only history; % rejected', TG_TABLE_NAME, TG_OP;
END;
$$;
CREATE TRIGGER incident_events_append_only
    BEFORE UPDATE OR DELETE ON incident_events
    FOR EACH ROW EXECUTE FUNCTION warden_history_only();
CREATE TRIGGER incident_events_no_truncate
    BEFORE TRUNCATE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION warden_history_only();
