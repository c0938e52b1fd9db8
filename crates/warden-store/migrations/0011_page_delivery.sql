-- Pages delivered after the escalation pass commits (webhooks, later e-mail and SMS): they
-- wait as 'pending' with a retry schedule. A delivery is leased by moving next_attempt_at
-- forward before the request is made, so two wardend processes never send the same page at
-- once; the receiver de-duplicates retries by the page id (`Idempotency-Key`).
ALTER TABLE pages DROP CONSTRAINT pages_status_check;
ALTER TABLE pages ADD CONSTRAINT pages_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'acknowledged'));
ALTER TABLE pages
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz NULL;
CREATE INDEX pages_pending ON pages (next_attempt_at) WHERE status = 'pending';
