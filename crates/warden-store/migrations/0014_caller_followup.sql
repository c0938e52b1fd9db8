-- Caller follow-up on out-of-hours jobs (the councils' service standards): how the caller
-- wants to hear back, their language or format needs, and every message sent to them (the
-- reference when the job is logged, then each status change), delivered after commit
-- through the escalator's e-mail and SMS channels, with each attempt's outcome.
ALTER TABLE ooh_jobs
    ADD COLUMN caller_contact text NOT NULL DEFAULT 'phone'
        CHECK (caller_contact IN ('phone', 'sms', 'email', 'none')),
    ADD COLUMN caller_email text NOT NULL DEFAULT '' CHECK (char_length(caller_email) <= 254),
    ADD COLUMN caller_needs text NOT NULL DEFAULT '' CHECK (char_length(caller_needs) <= 500);

CREATE TABLE caller_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference       text NOT NULL REFERENCES ooh_jobs (reference),
    -- The status update it tells the caller about.
    update_seq      bigint NOT NULL REFERENCES ooh_updates (seq),
    channel         text NOT NULL CHECK (channel IN ('sms', 'email')),
    address         text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NULL DEFAULT clock_timestamp(),
    outcome         text NULL
);
CREATE INDEX caller_messages_reference ON caller_messages (reference, id);
CREATE INDEX caller_messages_pending ON caller_messages (next_attempt_at) WHERE status = 'pending';

-- Every delivery attempt of a caller message (append-only).
CREATE TABLE caller_message_attempts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES caller_messages (id),
    at         timestamptz NOT NULL,
    status     text NOT NULL,
    outcome    text NOT NULL
);
CREATE INDEX caller_message_attempts_message ON caller_message_attempts (message_id, id);
CREATE TRIGGER caller_message_attempts_append_only
    BEFORE UPDATE OR DELETE ON caller_message_attempts
    FOR EACH ROW EXECUTE FUNCTION warden_history_only();
