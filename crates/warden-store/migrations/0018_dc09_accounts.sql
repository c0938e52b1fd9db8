-- Per-account DC-09 settings: the receiver (`R`) and line (`L`) prefixes the transmitter must
-- send, and its own timestamp window (seconds behind / ahead of Warden's clock) where the
-- receiver-wide one does not fit (a transmitter with a poor clock). NULL: not checked / the
-- receiver's default.
CREATE TABLE dc09_accounts (
    device_id      bigint PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    receiver       text NULL CHECK (receiver ~ '^[0-9A-F]{1,6}$'),
    line           text NULL CHECK (line ~ '^[0-9A-F]{1,6}$'),
    before_seconds integer NULL CHECK (before_seconds BETWEEN 0 AND 3600),
    after_seconds  integer NULL CHECK (after_seconds BETWEEN 0 AND 3600),
    set_at         timestamptz NOT NULL DEFAULT now()
);
