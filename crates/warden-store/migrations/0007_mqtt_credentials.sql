-- Credentials for the embedded MQTT broker (rumqttd): one per MQTT unit (user name = its
-- device id = its account, and its client id must be the same) and Warden's own service
-- credential (no device). Only argon2id hashes are kept; the passwords are generated and
-- shown once.
CREATE TABLE mqtt_credentials (
    username      text PRIMARY KEY,
    device_id     bigint NULL UNIQUE REFERENCES devices (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('device', 'service')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'device') = (device_id IS NOT NULL))
);
