//! Storm-group changes held back and written together (see [`Held`]).

use std::collections::BTreeSet;
use std::time::Duration;

use uuid::Uuid;
use warden_core::Effect;

/// How long a storm group's membership changes may wait before they are written.
pub(crate) const GROUP_FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Storm-group membership changes not yet written. A storm group's record lists every
/// member unit; rewriting it for every batch of a 20,000-unit storm made each commit large
/// and slow, and a pendant press waited behind those commits. Signals whose only effect is
/// joining (or leaving) an open group are held here, their "triaged" marks included, and
/// written with one copy of each group's record at most every [`GROUP_FLUSH_EVERY`], or at
/// once when anything else touches the group, a command is answered, or the engine stops.
/// A crash loses only held work: the marks were never written, so those signals are
/// replayed into the rebuilt groups on the next start.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Signals whose "triaged" marks wait with their group changes.
    pub(crate) marks: Vec<Uuid>,
    /// Their effects (group membership changes and audit lines).
    pub(crate) effects: Vec<Effect>,
    /// The storm-group incidents they changed.
    pub(crate) groups: BTreeSet<u64>,
    /// When the oldest held change was made.
    pub(crate) since: Option<tokio::time::Instant>,
}

impl Held {
    pub(crate) fn is_empty(&self) -> bool {
        self.marks.is_empty() && self.effects.is_empty() && self.groups.is_empty()
    }

    /// Whether the oldest held change has waited [`GROUP_FLUSH_EVERY`].
    pub(crate) fn is_due(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= GROUP_FLUSH_EVERY)
    }

    /// Whether any of `effects` concerns a group with held changes (those must be written
    /// first, in the same batch, so the group's rows land in order).
    pub(crate) fn touched_by(&self, effects: &[&Effect]) -> bool {
        effects
            .iter()
            .any(|e| e.incident().is_some_and(|id| self.groups.contains(&id.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{AuditAction, AuditEntry, IncidentId, Timestamp};

    fn audit(incident: u64) -> Effect {
        Effect::Audit(AuditEntry {
            at: Timestamp::from_secs(1),
            actor: None,
            incident: Some(IncidentId(incident)),
            action: AuditAction::GroupMemberRestored,
            detail: String::new(),
        })
    }

    #[test]
    fn nothing_held_is_empty_never_due_and_touched_by_nothing() {
        let h = Held::default();
        assert!(h.is_empty());
        assert!(!h.is_due());
        assert!(!h.touched_by(&[&audit(1)]));
    }

    #[test]
    fn held_changes_are_touched_by_effects_on_their_group_only() {
        let h = Held {
            groups: [7].into_iter().collect(),
            since: Some(tokio::time::Instant::now()),
            ..Held::default()
        };
        assert!(!h.is_empty());
        assert!(h.touched_by(&[&audit(3), &audit(7)]));
        assert!(!h.touched_by(&[&audit(3)]));
        assert!(!h.is_due(), "due only after {GROUP_FLUSH_EVERY:?}");
    }

    #[test]
    fn held_changes_fall_due_after_the_flush_interval() {
        let h = Held {
            since: tokio::time::Instant::now().checked_sub(GROUP_FLUSH_EVERY),
            ..Held::default()
        };
        assert!(h.is_due());
    }
}
