-- A DC-09 transmitter's own supervision interval: no message (a NULL link test or an event)
-- within it raises link lost on `dc09:<account>`, its next message link restored.
ALTER TABLE dc09_accounts ADD COLUMN supervision_seconds integer NULL CHECK (supervision_seconds > 0);
