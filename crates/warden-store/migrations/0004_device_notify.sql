-- Every change to the device registry is announced on channel `warden_devices` with the
-- account as payload, so every ingest cache forgets that account at once (a unit registered,
-- moved to another protocol or removed is never served from a stale entry).
CREATE FUNCTION warden_devices_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('warden_devices', OLD.account);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('warden_devices', NEW.account);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER devices_notify AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION warden_devices_notify();
