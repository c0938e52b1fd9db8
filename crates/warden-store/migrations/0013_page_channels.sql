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

-- A page whose incident was answered (claimed, resolved) after the pass recorded it and
-- before its channel sent it is not sent: 'cancelled', with the reason.
ALTER TABLE pages DROP CONSTRAINT pages_status_check;
ALTER TABLE pages ADD CONSTRAINT pages_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'acknowledged', 'cancelled'));

-- Every delivery attempt of a page through its channel, with what came of it (append-only:
-- the page row keeps only the last outcome).
CREATE TABLE page_attempts (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id  bigint NOT NULL REFERENCES pages (id),
    at       timestamptz NOT NULL,
    -- What the attempt left the page as: delivered, failed (for good), pending (retried).
    status   text NOT NULL,
    outcome  text NOT NULL
);
CREATE INDEX page_attempts_page ON page_attempts (page_id, id);
CREATE TRIGGER page_attempts_append_only
    BEFORE UPDATE OR DELETE ON page_attempts
    FOR EACH ROW EXECUTE FUNCTION warden_history_only();
