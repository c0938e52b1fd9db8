-- Acknowledging a page from outside the console: how it was acknowledged (the console, a
-- signed link in the message, or a reply to an SMS through the gateway), beside who and when.
ALTER TABLE pages ADD COLUMN acked_via text NULL
    CHECK (acked_via IN ('console', 'link', 'sms'));

-- Keys every wardend process on this database shares, created once by whichever asks first
-- (the key that signs acknowledgement links). Never shown or logged.
CREATE TABLE notify_keys (
    name       text PRIMARY KEY,
    key        bytea NOT NULL CHECK (octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
