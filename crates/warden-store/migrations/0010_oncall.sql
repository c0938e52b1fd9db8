-- On call and escalation: who can be reached, who is on duty, which chain an unanswered
-- incident climbs, where each escalation stands, and every page sent.
--
-- Rotas and chains keep their rules as the core's serde records (`warden_core::oncall`):
-- the core evaluates them, the store only keeps them. An escalation's state is the core's
-- `Escalation` record plus the time it next fires, so a restart resumes every chain where
-- it stood, and several wardend processes can share the work (`FOR UPDATE SKIP LOCKED`).

CREATE TABLE people (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- The console account whose inbox receives this person's console pages, if any.
    user_id    bigint NULL UNIQUE REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Ordered ways to reach a person. Only verified ones count as reachable.
CREATE TABLE contact_methods (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    position  integer NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('console', 'webhook', 'email', 'sms', 'voice')),
    address   text NOT NULL DEFAULT '' CHECK (char_length(address) <= 500),
    verified  boolean NOT NULL DEFAULT false,
    UNIQUE (person_id, position)
);

CREATE TABLE teams (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200)
);

CREATE TABLE team_members (
    team_id   bigint NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    person_id bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, person_id)
);

-- `layers` is a JSON array of `warden_core::oncall::Layer`; `zone` an IANA zone name.
CREATE TABLE rotas (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200),
    zone          text NOT NULL,
    bank_holidays date[] NOT NULL DEFAULT '{}',
    layers        jsonb NOT NULL DEFAULT '[]'
);

CREATE TABLE rota_overrides (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rota_id   bigint NOT NULL REFERENCES rotas (id) ON DELETE CASCADE,
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz NOT NULL CHECK (ends_at > starts_at),
    person_id bigint NOT NULL REFERENCES people (id)
);
CREATE INDEX rota_overrides_rota ON rota_overrides (rota_id, ends_at);

-- `doc` is a `warden_core::oncall::Chain`.
CREATE TABLE chains (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200),
    doc  jsonb NOT NULL
);

-- Which chain an incident climbs: the first route (by position) whose set fields all match
-- the incident. NULL matches anything.
CREATE TABLE routes (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position integer NOT NULL UNIQUE,
    priority text NULL CHECK (priority IN ('life_critical', 'urgent', 'technical', 'information')),
    kind     text NULL,
    area     text NULL,
    chain_id bigint NOT NULL REFERENCES chains (id)
);

-- One per incident that started escalating. `state` is a `warden_core::oncall::Escalation`;
-- `next_at` mirrors its due time for the index. NULL: stopped.
CREATE TABLE escalations (
    incident_id bigint PRIMARY KEY,
    chain_id    bigint NOT NULL REFERENCES chains (id),
    state       jsonb NOT NULL,
    next_at     timestamptz NULL,
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX escalations_due ON escalations (next_at) WHERE next_at IS NOT NULL;

-- Every page: who, through what, why, and what became of it.
CREATE TABLE pages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint NOT NULL,
    person_id   bigint NOT NULL REFERENCES people (id),
    step        integer NOT NULL,
    round       integer NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('step', 'fallback', 'reminder')),
    channel     text NOT NULL,
    address     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    status      text NOT NULL CHECK (status IN ('delivered', 'failed', 'acknowledged')),
    outcome     text NULL,
    acked_at    timestamptz NULL,
    acked_by    bigint NULL REFERENCES people (id)
);
CREATE INDEX pages_incident ON pages (incident_id, id);
CREATE INDEX pages_person ON pages (person_id, id);
