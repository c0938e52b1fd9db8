//! Incident lifecycle: raise, restore, cancel, claim, release, note, resolve.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Triage {
    // ----- incidents -----------------------------------------------------------------

    pub(super) fn open(&mut self, o: Opening, now: Timestamp, out: &mut Vec<Effect>) -> IncidentId {
        let id = IncidentId(self.next_id);
        self.next_id = self.next_id.saturating_add(1);
        let device = o.subject.device();
        let (client, area) = match (&o.subject, device.and_then(|d| self.devices.get(&d))) {
            (_, Some(d)) => (d.info.client, d.info.area.clone()),
            (Subject::Group { area }, None) => (None, area.clone()),
            _ => (None, None),
        };
        out.push(Effect::IncidentOpened {
            incident: id,
            kind: o.kind,
            priority: o.priority,
            subject: o.subject.clone(),
            device,
            client,
            area: area.clone(),
            arrived_at: o.arrived_at,
            signal: o.signal,
            summary: o.summary.clone(),
        });
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::Opened,
            format!(
                "{} ({}) at {}: {}",
                o.kind,
                o.priority,
                SubjectText(&o.subject),
                o.detail
            ),
        );
        let inc = Incident {
            id,
            subject: o.subject.clone(),
            kind: o.kind,
            priority: o.priority,
            state: IncidentState::Raised,
            holder: None,
            device,
            client,
            area,
            arrived_at: o.arrived_at,
            raised_at: now,
            offered_at: None,
            claimed_at: None,
            answer_time: None,
            requeued_at: None,
            resolved_at: None,
            resolution: None,
            first_signal: o.signal,
            last_signal_at: o.arrived_at,
            signal_count: o.signal_count,
            restore_count: 0,
            condition_active: true,
            cancelled_at: None,
            notes: 0,
            last_command_at: None,
            sla: SlaFired::default(),
            summary: o.summary,
            group: o.group,
            runaway: o.runaway,
        };
        self.by_key.insert((o.subject, o.kind), id);
        self.incidents.insert(id, inc);
        self.enqueue(id, now, out);
        id
    }

    pub(super) fn enqueue(&mut self, id: IncidentId, now: Timestamp, out: &mut Vec<Effect>) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        inc.state = IncidentState::Offered;
        inc.holder = None;
        inc.offered_at = Some(now);
        if inc.answer_time.is_some() {
            // Back in the queue after an answer: it waits again, so its thresholds run
            // again from now (the first answer time stays as it was, for reports).
            inc.requeued_at = Some(now);
            inc.sla = SlaFired::default();
        }
        if let Some((due, _)) = sla_next(&self.config.sla, inc) {
            self.timers.insert((due, Timer::Sla(id)));
        }
        self.queues[lane(inc.priority)].insert((inc.arrived_at, id));
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::Offered,
            format!("in the {} queue", inc.priority),
        );
        self.offers.push(Effect::Offer {
            incident: id,
            priority: inc.priority,
            kind: inc.kind,
            arrived_at: inc.arrived_at,
        });
    }

    /// Closes an incident. An automatic resolution of a life-critical incident is refused
    /// here, whatever the caller thought: only an operator closes those.
    pub(super) fn resolve(
        &mut self,
        id: IncidentId,
        resolution: Resolution,
        actor: Option<Actor>,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(inc) = self.incidents.get(&id) else {
            return false;
        };
        if matches!(resolution, Resolution::Auto { .. }) && inc.priority == Priority::LifeCritical {
            return false;
        }
        let Some(mut inc) = self.incidents.remove(&id) else {
            return false;
        };
        let key = (inc.subject.clone(), inc.kind);
        if self.by_key.get(&key) == Some(&id) {
            self.by_key.remove(&key);
        }
        self.queues[lane(inc.priority)].remove(&(inc.arrived_at, id));
        if let Subject::Group { area } = &inc.subject {
            let skey = StormKey {
                area: area.clone(),
                kind: inc.kind,
            };
            if let Some(s) = self.storms.get_mut(&skey)
                && s.group == Some(id)
            {
                s.group = None;
            }
        }
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(now);
        inc.holder = None;
        inc.resolution = Some(resolution.clone());
        let (action, detail) = match &resolution {
            Resolution::Operator { outcome, .. } => {
                (AuditAction::Resolved, format!("resolved: {outcome}"))
            }
            Resolution::Auto {
                reason: AutoReason::FoldedIntoGroup { group },
            } => (
                AuditAction::FoldedIntoGroup,
                format!("folded into storm group {group}"),
            ),
            Resolution::Auto { reason } => (
                AuditAction::Resolved,
                format!("closed by policy: {}", auto_text(*reason)),
            ),
        };
        out.push(Effect::Resolved {
            incident: id,
            resolution,
            answer_time: inc.answer_time,
            signal_count: inc.signal_count,
        });
        audit(out, now, actor, Some(id), action, detail);
        self.closed.push(inc);
        true
    }

    pub(super) fn find(&self, id: IncidentId) -> Result<&Incident, RejectReason> {
        self.incidents
            .get(&id)
            .ok_or(if id.0 >= 1 && id.0 < self.next_id {
                RejectReason::AlreadyResolved
            } else {
                RejectReason::UnknownIncident
            })
    }

    pub(super) fn claim(
        &mut self,
        id: IncidentId,
        actor: Actor,
        taken_from: Option<Actor>,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        self.queues[lane(inc.priority)].remove(&(inc.arrived_at, id));
        inc.state = IncidentState::Claimed;
        inc.holder = Some(actor);
        inc.claimed_at = Some(now);
        inc.last_command_at = Some(now);
        let first = inc.answer_time.is_none();
        if first {
            inc.answer_time = Some(now.since(inc.arrived_at));
        }
        let answer_time = if first { inc.answer_time } else { None };
        out.push(Effect::Claimed {
            incident: id,
            actor,
            answer_time,
            taken_from,
        });
        let detail = match (taken_from, answer_time) {
            (Some(h), _) => format!("taken over from {h}"),
            (None, Some(t)) => format!("claimed; answered in {t}"),
            (None, None) => "claimed".to_owned(),
        };
        let action = if taken_from.is_some() {
            AuditAction::TakenOver
        } else {
            AuditAction::Claimed
        };
        audit(out, now, Some(actor), Some(id), action, detail);
    }

    pub(super) fn reject(
        out: &mut Vec<Effect>,
        input: InputKind,
        incident: Option<IncidentId>,
        actor: Option<Actor>,
        reason: RejectReason,
    ) {
        out.push(Effect::Rejected {
            input,
            incident,
            actor,
            reason,
        });
    }

    pub(super) fn on_claim(
        &mut self,
        id: IncidentId,
        actor: Actor,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let r = self.find(id).and_then(|inc| {
            if !actor.role.handles_alarms() {
                return Err(RejectReason::RoleNotAllowed { role: actor.role });
            }
            match inc.holder {
                Some(h) if h.id == actor.id => Err(RejectReason::AlreadyHolder),
                Some(h) => Err(RejectReason::ClaimedByOther { holder: h }),
                None => Ok(()),
            }
        });
        match r {
            Ok(()) => self.claim(id, actor, None, now, out),
            Err(reason) => Self::reject(out, InputKind::Claim, Some(id), Some(actor), reason),
        }
    }

    pub(super) fn on_take_over(
        &mut self,
        id: IncidentId,
        actor: Actor,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let r = self.find(id).and_then(|inc| {
            if actor.role != Role::Supervisor {
                return Err(RejectReason::RoleNotAllowed { role: actor.role });
            }
            match inc.holder {
                Some(h) if h.id == actor.id => Err(RejectReason::AlreadyHolder),
                h => Ok(h),
            }
        });
        match r {
            Ok(from) => self.claim(id, actor, from, now, out),
            Err(reason) => Self::reject(out, InputKind::TakeOver, Some(id), Some(actor), reason),
        }
    }

    pub(super) fn on_release(
        &mut self,
        id: IncidentId,
        actor: Actor,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let r = self.find(id).and_then(|inc| {
            if !actor.role.handles_alarms() {
                return Err(RejectReason::RoleNotAllowed { role: actor.role });
            }
            match inc.holder {
                None => Err(RejectReason::NotClaimed),
                Some(h) if h.id == actor.id || actor.role == Role::Supervisor => Ok(h),
                Some(h) => Err(RejectReason::NotHolder { holder: Some(h) }),
            }
        });
        match r {
            Ok(holder) => {
                if let Some(inc) = self.incidents.get_mut(&id) {
                    inc.last_command_at = Some(now);
                }
                out.push(Effect::Released {
                    incident: id,
                    actor,
                    holder,
                });
                let detail = if holder.id == actor.id {
                    "released back to the queue".to_owned()
                } else {
                    format!("released from {holder} back to the queue")
                };
                audit(
                    out,
                    now,
                    Some(actor),
                    Some(id),
                    AuditAction::Released,
                    detail,
                );
                self.enqueue(id, now, out);
            }
            Err(reason) => Self::reject(out, InputKind::Release, Some(id), Some(actor), reason),
        }
    }

    pub(super) fn on_note(
        &mut self,
        id: IncidentId,
        actor: Actor,
        text: String,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let max = self.config.max_note_len;
        let r = self.find(id).and_then(|_| {
            if text.trim().is_empty() {
                Err(RejectReason::EmptyNote)
            } else if text.len() > max as usize {
                Err(RejectReason::NoteTooLong { max })
            } else {
                Ok(())
            }
        });
        if let Err(reason) = r {
            Self::reject(out, InputKind::Note, Some(id), Some(actor), reason);
            return;
        }
        if let Some(inc) = self.incidents.get_mut(&id) {
            inc.notes = inc.notes.saturating_add(1);
            inc.last_command_at = Some(now);
            out.push(Effect::IncidentUpdated {
                incident: id,
                change: Change::Noted,
                signal: None,
                signal_count: inc.signal_count,
            });
            audit(out, now, Some(actor), Some(id), AuditAction::Noted, text);
        }
    }

    pub(super) fn on_resolve(
        &mut self,
        id: IncidentId,
        actor: Actor,
        outcome: OutcomeCode,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let r = self.find(id).and_then(|inc| match actor.role {
            Role::Admin | Role::OnCall => Err(RejectReason::RoleNotAllowed { role: actor.role }),
            Role::Supervisor => Ok(()),
            Role::Operator => match inc.holder {
                Some(h) if h.id == actor.id => Ok(()),
                holder => Err(RejectReason::NotHolder { holder }),
            },
        });
        match r {
            Ok(()) => {
                self.resolve(
                    id,
                    Resolution::Operator { actor, outcome },
                    Some(actor),
                    now,
                    out,
                );
            }
            Err(reason) => Self::reject(out, InputKind::Resolve, Some(id), Some(actor), reason),
        }
    }
}
