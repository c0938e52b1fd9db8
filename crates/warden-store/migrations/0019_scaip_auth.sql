-- SCAIP units that must authenticate (SIP digest, realm "warden"): HA1 = MD5(cid:warden:password),
-- never the password. A unit listed here is heard only when its requests carry a valid
-- digest for its own cid; one not listed is identified by its cid alone.
CREATE TABLE scaip_auth (
    device_id bigint PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    ha1       text NOT NULL CHECK (ha1 ~ '^[0-9a-f]{32}$'),
    set_at    timestamptz NOT NULL DEFAULT now()
);
