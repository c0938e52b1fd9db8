//! The incident view: what consoles read of incidents (typed columns, never the record).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Store {
    /// Open incidents (`ids == None`) or the given ones, with holder, device and client.
    pub async fn incident_views(
        &self,
        ids: Option<&[i64]>,
    ) -> Result<Vec<IncidentViewRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT i.id, i.priority, i.kind, i.state, i.raised_at, i.claimed_at, i.resolved_at, \
                    i.signal_count, i.arrived_at, i.holder_id, i.area, i.summary, i.outcome, \
                    i.group_count, i.sla_warned, i.sla_overflowed, i.sla_critical, \
                    u.display_name AS holder_name, d.id AS device_id, d.account AS device_account, \
                    d.label AS device_label, c.id AS client_id, c.name AS client_name, \
                    NULLIF(concat_ws(', ', NULLIF(c.address, ''), NULLIF(c.postcode, '')), '') \
                        AS client_address \
             FROM incidents i \
             LEFT JOIN users u ON u.id = i.holder_id \
             LEFT JOIN devices d ON d.id = i.device_id \
             LEFT JOIN clients c ON c.external_ref = d.client_ref \
             WHERE CASE WHEN $1::bigint[] IS NULL THEN i.resolved_at IS NULL ELSE i.id = ANY($1) END \
             ORDER BY i.id",
        )
        .bind(ids)
        .fetch_all(self.pool())
        .await?)
    }

    /// What a queue entry shows of every registered device and of every user who can hold
    /// an incident, for the console's in-memory mirror (degraded mode).
    pub async fn queue_cards(&self) -> Result<QueueCards, StoreError> {
        let devices: Vec<DeviceCard> = sqlx::query_as(
            "SELECT d.id AS device_id, d.account AS device_account, d.label AS device_label, \
                    c.id AS client_id, c.name AS client_name, \
                    NULLIF(concat_ws(', ', NULLIF(c.address, ''), NULLIF(c.postcode, '')), '') \
                        AS client_address \
             FROM devices d LEFT JOIN clients c ON c.external_ref = d.client_ref",
        )
        .fetch_all(self.pool())
        .await?;
        let users: Vec<(i64, String)> = sqlx::query_as("SELECT id, display_name FROM users")
            .fetch_all(self.pool())
            .await?;
        Ok(QueueCards { devices, users })
    }

    /// An incident's history, oldest first.
    pub async fn incident_events(&self, id: i64) -> Result<Vec<IncidentEvent>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, kind, at, effect FROM incident_events WHERE incident_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?)
    }
}
