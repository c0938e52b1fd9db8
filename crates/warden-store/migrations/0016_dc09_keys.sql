-- SIA DC-09 transmitters' AES keys, one per registered device (hex of 16, 24 or 32 bytes).
-- Read only by ingest, never shown by the console or logged; a device with a key must send
-- encrypted messages. (Encryption of this column at rest is the security issue's.)
CREATE TABLE dc09_keys (
    device_id bigint PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    key_hex   text NOT NULL CHECK (key_hex ~ '^([0-9A-F]{32}|[0-9A-F]{48}|[0-9A-F]{64})$'),
    set_at    timestamptz NOT NULL DEFAULT now()
);
