-- The person of the on-call directory an out-of-hours job was routed to (NULL when routed
-- to a category's fixed contact, or not routed): on-call staff see and update only the jobs
-- routed to the person linked to their account.
ALTER TABLE ooh_jobs ADD COLUMN routed_person bigint NULL REFERENCES people (id);
CREATE INDEX ooh_jobs_routed_person ON ooh_jobs (routed_person, created_at DESC)
    WHERE routed_person IS NOT NULL;
