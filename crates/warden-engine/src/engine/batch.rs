//! Building a batch's rows and what it announces once durable.

use std::collections::BTreeSet;

use uuid::Uuid;
use warden_core::{Change, Effect, IncidentId};
use warden_store::{EventRow, TriageBatch};

use super::Engine;
use crate::persist::{Published, row_of};

impl Engine {
    /// What to announce once a batch is durable.
    pub(super) fn published(&self, effects: &[Effect], batch: &TriageBatch) -> Published {
        let open_changed = effects
            .iter()
            .any(|e| matches!(e, Effect::IncidentOpened { .. } | Effect::Resolved { .. }));
        Published {
            offers: effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Offer {
                        incident,
                        priority,
                        arrived_at,
                        ..
                    } => Some((incident.0, *priority, *arrived_at)),
                    _ => None,
                })
                .collect(),
            late: effects
                .iter()
                .filter(|e| matches!(e, Effect::Overflow { .. } | Effect::Critical { .. }))
                .cloned()
                .collect(),
            open: open_changed.then(|| self.core.open_incident_count()),
            incidents: batch.incidents.iter().map(|i| i.id).collect(),
            uncommitted: Vec::new(),
        }
    }

    /// The storm groups a signal's effects only added it to (or restored it in), or `None`
    /// when it did anything else: those are the effects that may be held back.
    pub(super) fn group_only(&self, effects: &[Effect]) -> Option<BTreeSet<u64>> {
        let open_group = |id: &IncidentId| {
            self.core
                .incident(*id)
                .is_some_and(|i| i.is_open() && i.group.is_some())
        };
        let mut groups = BTreeSet::new();
        for e in effects {
            match e {
                Effect::IncidentUpdated {
                    incident,
                    change: Change::GroupMember { .. } | Change::GroupMemberRestored { .. },
                    ..
                }
                // A member repeating itself changes nothing, but its history line must land
                // after the group's held changes, so it waits with them.
                | Effect::Duplicate {
                    incident: Some(incident),
                    ..
                } if open_group(incident) => {
                    groups.insert(incident.0);
                }
                Effect::Audit(_) => {}
                _ => return None,
            }
        }
        (!groups.is_empty()).then_some(groups)
    }

    pub(super) fn batch(
        &mut self,
        triaged: Vec<Uuid>,
        effects: &[&Effect],
        extra: &BTreeSet<u64>,
    ) -> TriageBatch {
        let mut touched: BTreeSet<u64> = extra.clone();
        let mut events = Vec::with_capacity(effects.len());
        let mut outbox = Vec::new();
        for &e in effects {
            let incident = e.incident().map(|i| i.0);
            if let Some(id) = incident
                && e.changes_incident()
            {
                touched.insert(id);
            }
            let row = EventRow {
                incident_id: incident.and_then(|i| i64::try_from(i).ok()),
                kind: e.name().to_owned(),
                effect: serde_json::to_value(e).unwrap_or_default(),
            };
            if e.needs_notification() {
                outbox.push(row.clone());
            }
            events.push(row);
        }
        let closed = std::mem::take(&mut self.closed);
        // An incident the core still holds is written from its current record; one resolved
        // in this batch has left the core and is written from its final record.
        let incidents = touched
            .into_iter()
            .filter_map(|id| {
                self.core
                    .incident(IncidentId(id))
                    .or_else(|| closed.get(&id))
                    .map(row_of)
            })
            .collect();
        TriageBatch {
            triaged,
            events,
            incidents,
            outbox,
            must_flush: true,
            at: None,
        }
    }
}
