-- SCAIP (SS 91100 / BS 8521-2) social-alarm units over SIP: a protocol for devices, a source
-- for signals and quarantine, a kind of link. The old checks were stricter, so every row
-- already stored satisfies the new ones.
ALTER TABLE links DROP CONSTRAINT links_kind_check,
    ADD CONSTRAINT links_kind_check CHECK (kind IN ('serial', 'mqtt', 'dc09', 'scaip'));
ALTER TABLE devices DROP CONSTRAINT devices_protocol_check,
    ADD CONSTRAINT devices_protocol_check CHECK (protocol IN ('contact_id', 'sia', 'mqtt', 'dc09', 'scaip'));
ALTER TABLE signals DROP CONSTRAINT signals_source_check,
    ADD CONSTRAINT signals_source_check CHECK (source IN ('serial', 'mqtt', 'dc09', 'scaip', 'internal'));
ALTER TABLE quarantine DROP CONSTRAINT quarantine_source_check,
    ADD CONSTRAINT quarantine_source_check CHECK (source IN ('serial', 'mqtt', 'dc09', 'scaip', 'internal'));
