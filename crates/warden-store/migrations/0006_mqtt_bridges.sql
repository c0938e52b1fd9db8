-- A panel whose Contact ID messages arrive through an MQTT bridge (a unit that relays a
-- receiver's or panel's messages in its `contact_id` pass-through) names that bridge here.
-- Only the named bridge may speak for the panel's account; a pass-through from any other
-- MQTT unit is stored without a device and triaged as `not_a_bridge`.
ALTER TABLE devices
    ADD COLUMN bridge_device_id bigint NULL REFERENCES devices (id) ON DELETE SET NULL,
    ADD CONSTRAINT devices_bridge_not_self CHECK (bridge_device_id <> id);
