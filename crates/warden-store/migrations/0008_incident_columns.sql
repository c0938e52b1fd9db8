-- What the queue and the console read of an incident, as typed columns the engine writes
-- from the core's record (until now they were picked out of `doc` by key name in SQL and in
-- the console). `doc` stays the core's full record, for rebuilding after a restart.
ALTER TABLE incidents
    ADD COLUMN arrived_at     timestamptz NULL,
    ADD COLUMN holder_id      bigint NULL,
    ADD COLUMN area           text NULL,
    ADD COLUMN summary        text NULL,
    ADD COLUMN outcome        text NULL,
    ADD COLUMN group_count    integer NULL,
    ADD COLUMN sla_warned     boolean NOT NULL DEFAULT false,
    ADD COLUMN sla_overflowed boolean NOT NULL DEFAULT false,
    ADD COLUMN sla_critical   boolean NOT NULL DEFAULT false;

-- Rows written before this migration: one last read of the record by key.
UPDATE incidents SET
    arrived_at     = to_timestamp((doc ->> 'arrived_at')::double precision / 1000000),
    holder_id      = (doc #>> '{holder,id}')::bigint,
    area           = COALESCE(doc ->> 'area', doc #>> '{subject,area}'),
    summary        = doc ->> 'summary',
    outcome        = doc #>> '{resolution,outcome}',
    group_count    = jsonb_array_length(doc #> '{group,members}'),
    sla_warned     = COALESCE((doc #>> '{sla,warned}')::boolean, false),
    sla_overflowed = COALESCE((doc #>> '{sla,overflowed}')::boolean, false),
    sla_critical   = COALESCE((doc #>> '{sla,critical}')::boolean, false);
