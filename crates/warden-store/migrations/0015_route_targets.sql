-- Escalation routes may also match an incident's client and an out-of-hours job's category
-- (NULL matches anything, as for the other fields). A route naming an out-of-hours category
-- is how the desk finds who is on call for it.
ALTER TABLE routes
    ADD COLUMN client_id bigint NULL REFERENCES clients (id),
    ADD COLUMN ooh_category text NULL REFERENCES ooh_categories (code);
-- A person whose pages are kept can leave the directory without losing the history.
ALTER TABLE people ADD COLUMN active boolean NOT NULL DEFAULT true;
