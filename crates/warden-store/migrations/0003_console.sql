-- Operator console: accounts, sessions, client records, out-of-hours jobs and the audit trail.

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9._-]{1,64}$'),
    display_name   text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    role           text NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin', 'on_call')),
    password_hash  text NOT NULL,                  -- argon2id PHC string
    disabled       boolean NOT NULL DEFAULT false,
    failed_logins  integer NOT NULL DEFAULT 0,
    locked_until   timestamptz NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of the session token is kept: a copy of this table opens no session.
CREATE TABLE sessions (
    token_hash   bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ip           text NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE clients (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_ref        text NOT NULL UNIQUE CHECK (char_length(external_ref) BETWEEN 1 AND 64),
    name                text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    date_of_birth       date NULL,
    address             text NOT NULL DEFAULT '',
    postcode            text NOT NULL DEFAULT '',
    phone               text NOT NULL DEFAULT '',
    area                text NULL,
    language            text NOT NULL DEFAULT 'English',
    interpreter_needed  boolean NOT NULL DEFAULT false,
    communication_needs text NOT NULL DEFAULT '',
    preferred_contact   text NOT NULL DEFAULT 'phone'
        CHECK (preferred_contact IN ('phone', 'sms', 'email', 'text_relay', 'letter', 'visit')),
    access_notes        text NOT NULL DEFAULT '',
    medical_notes       text NOT NULL DEFAULT '',
    key_safe            text NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clients_search ON clients (lower(name), lower(postcode));

-- Responders and keyholders in the order they are called.
CREATE TABLE responders (
    client_id    bigint NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    position     integer NOT NULL CHECK (position > 0),
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    relationship text NOT NULL DEFAULT '',
    phone        text NOT NULL DEFAULT '',
    is_keyholder boolean NOT NULL DEFAULT false,
    notes        text NOT NULL DEFAULT '',
    PRIMARY KEY (client_id, position)
);

ALTER TABLE devices ADD COLUMN device_type text NULL;
ALTER TABLE devices ADD COLUMN area text NULL;
CREATE INDEX devices_client_ref ON devices (client_ref);

CREATE TABLE ooh_categories (
    code         text PRIMARY KEY CHECK (code ~ '^[a-z0-9_]{1,32}$'),
    name         text NOT NULL,
    oncall_name  text NULL,
    oncall_phone text NULL
);
INSERT INTO ooh_categories (code, name) VALUES
    ('emergency_repair', 'Emergency repair'),
    ('homelessness', 'Homelessness'),
    ('lone_worker', 'Lone worker'),
    ('other', 'Other');

-- One counter per year gives references OOH-YYYY-NNNNNN without gaps from rollbacks mattering.
CREATE TABLE ooh_counters (
    year integer PRIMARY KEY,
    last integer NOT NULL
);

CREATE TABLE ooh_jobs (
    reference    text PRIMARY KEY,
    category     text NOT NULL REFERENCES ooh_categories (code),
    caller_name  text NOT NULL,
    caller_phone text NOT NULL DEFAULT '',
    address      text NOT NULL DEFAULT '',
    description  text NOT NULL,
    urgency      text NOT NULL CHECK (urgency IN ('emergency', 'urgent', 'routine')),
    status       text NOT NULL CHECK (status IN ('routed', 'unrouted', 'acknowledged', 'in_progress', 'closed')),
    routed_name  text NULL,
    routed_phone text NULL,
    created_by   bigint NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ooh_jobs_created ON ooh_jobs (created_at DESC);

CREATE TABLE ooh_updates (
    seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference text NOT NULL REFERENCES ooh_jobs (reference),
    at        timestamptz NOT NULL DEFAULT now(),
    status    text NOT NULL,
    note      text NOT NULL DEFAULT '',
    by_user   bigint NULL REFERENCES users (id)
);
CREATE INDEX ooh_updates_reference ON ooh_updates (reference, seq);

-- The audit trail: who did or saw what, when, with the record before and after.
CREATE TABLE audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_id     bigint NULL REFERENCES users (id),
    action      text NOT NULL,
    object_type text NOT NULL,
    object_id   text NULL,
    before      jsonb NULL,
    after       jsonb NULL,
    request_id  text NULL,
    ip          text NULL
);
CREATE INDEX audit_object ON audit (object_type, object_id, id);
CREATE INDEX audit_user ON audit (user_id, id);

CREATE TRIGGER audit_append_only
    BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION warden_history_only();
CREATE TRIGGER audit_no_truncate
    BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION warden_history_only();
CREATE TRIGGER ooh_updates_append_only
    BEFORE UPDATE OR DELETE ON ooh_updates
    FOR EACH ROW EXECUTE FUNCTION warden_history_only();
