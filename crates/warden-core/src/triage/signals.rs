//! Signals: classification, correlation, dedupe, runaways and storms.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Triage {
    // ----- signals -------------------------------------------------------------------

    pub(super) fn on_signal(&mut self, s: SignalIn, now: Timestamp, out: &mut Vec<Effect>) {
        let dev_id = s.device.as_ref().map(|d| d.id);
        let SignalIn {
            id,
            source,
            link,
            account,
            device,
            what,
            received_at,
        } = s;
        if let Some(info) = device {
            self.register(info, now);
        }
        let class = {
            let info = dev_id.and_then(|d| self.devices.get(&d)).map(|d| &d.info);
            self.classifier.classify(&what, info)
        };
        let link_level = matches!(
            what,
            SignalWhat::LinkLost | SignalWhat::LinkRestored | SignalWhat::SelfCheck { .. }
        );
        if let Some(dev) = dev_id
            && !link_level
            && !matches!(what, SignalWhat::Presence { online: false })
        {
            self.heard(dev, received_at, Some(id), now, out);
        }
        if class.event == Event::Heard {
            return;
        }
        let subject = match (link_level, dev_id, account) {
            (true, _, _) | (false, None, None) => Subject::Link { link: link.clone() },
            (false, Some(id), _) => Subject::Device { id },
            (false, None, Some(account)) => Subject::Account { account },
        };
        let informational = class.priority == Priority::Information
            && class.kind != Kind::Unknown
            && class.event != Event::Cancel;
        let dkey = if informational {
            None
        } else {
            let dkey = DedupeKey {
                subject: subject.clone(),
                kind: class.kind,
                event: class.event,
                tag: class.tag,
            };
            if let Some(seen) = self.seen.get(&id, now) {
                out.push(Effect::Duplicate {
                    signal: id,
                    incident: seen.incident,
                });
                return;
            }
            if let Some(prev) = self.dedupe.get(&dkey, now) {
                let close = received_at.since(prev.last).0.unsigned_abs()
                    <= self.config.dedupe_window.0.unsigned_abs();
                // A duplicate is dropped only while what it joined is still open: a press
                // after its incident was resolved is a new press, never swallowed. One that
                // joined nothing (a restore with nothing open) is a duplicate only while
                // nothing has been opened for it since: a restore after a new raise closes it.
                let target_open = match prev.incident {
                    Some(i) => self.incidents.contains_key(&i),
                    None => !self.by_key.contains_key(&(subject.clone(), class.kind)),
                };
                if close && target_open {
                    out.push(Effect::Duplicate {
                        signal: id,
                        incident: prev.incident,
                    });
                    return;
                }
            }
            Some(dkey)
        };
        // Life-critical signals are never counted or folded.
        let runaway = match dev_id {
            Some(dev) if class.priority != Priority::LifeCritical && !link_level => {
                self.runaway_check(dev, received_at)
            }
            _ => RunawayHit::No,
        };
        if informational && runaway == RunawayHit::No {
            // A test, an opening or closing: proof of life, already recorded above.
            return;
        }
        // What arrived, for a code nobody knows; what was found, for a failed self-check.
        let summary = (class.kind == Kind::Unknown
            || matches!(what, SignalWhat::SelfCheck { ok: false, .. }))
        .then(|| summary_of(&what));
        let mut detail = String::with_capacity(96);
        describe(&mut detail, &what, source.as_str(), &link, id);
        let sig = Sig {
            id: Some(id),
            subject,
            kind: class.kind,
            event: class.event,
            priority: class.priority,
            received_at,
            summary,
            detail,
        };
        let touched = match (runaway, dev_id) {
            (RunawayHit::No, _) | (_, None) => match sig.event {
                Event::Raise | Event::Status => Some(self.raise(sig, now, out)),
                Event::Restore => self.restore(sig, AutoReason::Restored, now, out),
                Event::Cancel => self.cancel(&sig, now, out),
                Event::Heard => None,
            },
            (hit, Some(dev)) => Some(self.runaway_fold(hit, dev, &sig, now, out)),
        };
        if let Some(dkey) = dkey {
            let keep = self.config.dedupe_window;
            self.seen.insert(id, received_at, touched, now, keep);
            self.dedupe.insert(dkey, received_at, touched, now, keep);
        }
    }

    /// Updates supervision for a unit that was just heard from.
    pub(super) fn heard(
        &mut self,
        dev: DeviceId,
        received_at: Timestamp,
        signal: Option<SignalId>,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(d) = self.devices.get_mut(&dev) else {
            return;
        };
        if d.last_heard.is_none_or(|l| received_at > l) {
            d.last_heard = Some(received_at);
        }
        let outstanding = std::mem::take(&mut d.ftr_outstanding);
        if let Some(iv) = d.info.test_interval {
            let base = d.last_heard.unwrap_or(received_at);
            d.due = Some(base.saturating_add(self.config.supervision.allowance(iv)));
            arm(&mut self.timers, dev, d);
        }
        if outstanding {
            let priority = self
                .classifier
                .priority_of(Kind::FailToReport, Some(&d.info));
            let sig = Sig {
                id: signal,
                subject: Subject::Device { id: dev },
                kind: Kind::FailToReport,
                event: Event::Restore,
                priority,
                received_at,
                summary: None,
                detail: format!("unit {dev} heard again"),
            };
            self.restore(sig, AutoReason::DeviceHeard, now, out);
        }
    }

    /// Counts a non-life-critical signal towards the unit's rate and says whether it is to be
    /// folded: into the unit's open runaway incident, or into a new one because the rate is
    /// exceeded now.
    pub(super) fn runaway_check(&mut self, dev: DeviceId, received_at: Timestamp) -> RunawayHit {
        let key = (Subject::Device { id: dev }, Kind::Runaway);
        if let Some(&rid) = self.by_key.get(&key) {
            return RunawayHit::Fold(rid);
        }
        let max = self.config.runaway.max_signals as usize;
        let horizon = received_at.saturating_sub(self.config.runaway.window);
        let q = self.rates.entry(dev).or_default();
        q.push_back(received_at);
        while q.front().is_some_and(|t| *t < horizon) || q.len() > max.saturating_add(1) {
            q.pop_front();
        }
        if q.len() <= max {
            return RunawayHit::No;
        }
        let signals = count(q.len());
        q.clear();
        RunawayHit::Detected(signals)
    }

    /// Folds a signal into the unit's runaway incident, opening it if the rate was just
    /// exceeded.
    pub(super) fn runaway_fold(
        &mut self,
        hit: RunawayHit,
        dev: DeviceId,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> IncidentId {
        if let RunawayHit::Fold(rid) = hit
            && let Some(inc) = self.incidents.get_mut(&rid)
        {
            inc.record_signal(sig.received_at);
            let r = inc.runaway.get_or_insert_default();
            r.folded = r.folded.saturating_add(1);
            let c = r.kinds.entry(sig.kind).or_default();
            *c = c.saturating_add(1);
            let folded = r.folded;
            out.push(Effect::IncidentUpdated {
                incident: rid,
                change: Change::RunawaySignal {
                    kind: sig.kind,
                    folded,
                },
                signal: sig.id,
                signal_count: inc.signal_count,
            });
            audit(
                out,
                now,
                None,
                Some(rid),
                AuditAction::RunawaySignal,
                format!("folded {} ({} so far): {}", sig.kind, folded, sig.detail),
            );
            return rid;
        }
        let signals = match hit {
            RunawayHit::Detected(n) => n,
            _ => 1,
        };
        let priority = {
            let info = self.devices.get(&dev).map(|d| &d.info);
            self.classifier.priority_of(Kind::Runaway, info)
        };
        let mut kinds = std::collections::BTreeMap::new();
        kinds.insert(sig.kind, 1);
        let id = self.open(
            Opening {
                subject: Subject::Device { id: dev },
                kind: Kind::Runaway,
                priority,
                arrived_at: sig.received_at,
                signal: sig.id,
                summary: None,
                detail: format!(
                    "unit {dev} sent {signals} signals within {}; further signals are folded here: {}",
                    self.config.runaway.window, sig.detail
                ),
                group: None,
                runaway: Some(Box::new(RunawayInfo { folded: 1, kinds })),
                signal_count: 1,
            },
            now,
            out,
        );
        out.push(Effect::RunawayDetected {
            incident: id,
            device: dev,
            signals,
        });
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::RunawayDetected,
            format!("unit {dev}: {signals} signals within the runaway window"),
        );
        id
    }

    /// A new alarm or trouble: join the open incident of the same cause, join or form a
    /// storm group, or open a new incident.
    pub(super) fn raise(&mut self, sig: Sig, now: Timestamp, out: &mut Vec<Effect>) -> IncidentId {
        let key = (sig.subject.clone(), sig.kind);
        if let Some(&id) = self.by_key.get(&key) {
            self.join(id, &sig, now, out);
            return id;
        }
        if sig.priority == Priority::Technical
            && sig.kind.is_groupable()
            && let Some(dev) = sig.subject.device()
        {
            let area = self.devices.get(&dev).and_then(|d| d.info.area.clone());
            let skey = StormKey {
                area,
                kind: sig.kind,
            };
            return self.storm_raise(skey, dev, sig, now, out);
        }
        self.open(Opening::from_sig(sig), now, out)
    }

    pub(super) fn join(
        &mut self,
        id: IncidentId,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        inc.record_signal(sig.received_at);
        inc.condition_active = true;
        if sig.summary.is_some() {
            inc.summary.clone_from(&sig.summary);
        }
        out.push(Effect::IncidentUpdated {
            incident: id,
            change: Change::Signal { event: sig.event },
            signal: sig.id,
            signal_count: inc.signal_count,
        });
        audit(
            out,
            now,
            None,
            Some(id),
            AuditAction::SignalJoined,
            format!("signal {} joined: {}", inc.signal_count, sig.detail),
        );
    }

    pub(super) fn storm_raise(
        &mut self,
        skey: StormKey,
        dev: DeviceId,
        sig: Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> IncidentId {
        let group = self.storms.get(&skey).and_then(|s| s.group);
        if let Some(g) = group
            && self.incidents.contains_key(&g)
        {
            self.group_join(g, dev, &sig, now, out);
            return g;
        }
        let threshold = self.config.storm.devices as usize;
        let horizon = sig.received_at.saturating_sub(self.config.storm.window);
        let storm = self.storms.entry(skey.clone()).or_default();
        storm.group = None;
        while storm.recent.front().is_some_and(|r| r.at < horizon) {
            storm.recent.pop_front();
        }
        storm.recent.retain(|r| r.device != dev);
        if storm.recent.len() >= threshold {
            let recent: Vec<StormReport> = storm.recent.drain(..).collect();
            return self.form_group(skey, dev, recent, &sig, now, out);
        }
        let at = sig.received_at;
        let id = self.open(Opening::from_sig(sig), now, out);
        self.storms
            .entry(skey)
            .or_default()
            .recent
            .push_back(StormReport {
                at,
                device: dev,
                incident: id,
            });
        id
    }

    pub(super) fn form_group(
        &mut self,
        skey: StormKey,
        dev: DeviceId,
        recent: Vec<StormReport>,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> IncidentId {
        let arrived_at = recent
            .iter()
            .map(|r| r.at)
            .chain([sig.received_at])
            .min()
            .unwrap_or(sig.received_at);
        let area_text = skey.area.as_ref().map_or("no area", |a| a.as_str());
        let gid = self.open(
            Opening {
                subject: Subject::Group {
                    area: skey.area.clone(),
                },
                kind: skey.kind,
                priority: Priority::Technical,
                arrived_at,
                signal: sig.id,
                summary: None,
                detail: format!(
                    "storm: more than {} units in {} report {} within {}",
                    self.config.storm.devices, area_text, skey.kind, self.config.storm.window
                ),
                group: Some(Box::default()),
                runaway: None,
                signal_count: 0,
            },
            now,
            out,
        );
        self.storms.entry(skey.clone()).or_default().group = Some(gid);
        let mut info = GroupInfo::default();
        let mut signals: u32 = 0;
        let mut folded = Vec::new();
        for r in recent {
            let key = (Subject::Device { id: r.device }, skey.kind);
            let foldable = self.by_key.get(&key) == Some(&r.incident)
                && self
                    .incidents
                    .get(&r.incident)
                    .is_some_and(|i| i.state != IncidentState::Claimed);
            if foldable {
                signals = signals.saturating_add(
                    self.incidents
                        .get(&r.incident)
                        .map_or(1, |i| i.signal_count),
                );
                self.resolve(
                    r.incident,
                    Resolution::Auto {
                        reason: AutoReason::FoldedIntoGroup { group: gid },
                    },
                    None,
                    now,
                    out,
                );
                info.members.insert(r.device);
                info.active.insert(r.device);
                folded.push(r.incident);
            } else if !self.incidents.contains_key(&r.incident) {
                // It reported the cause within the window but has restored since.
                info.members.insert(r.device);
            }
        }
        info.members.insert(dev);
        info.active.insert(dev);
        signals = signals.saturating_add(1);
        let devices = count(info.members.len());
        if let Some(g) = self.incidents.get_mut(&gid) {
            g.signal_count = signals;
            g.group = Some(Box::new(info));
        }
        let mut detail = format!("{devices} units grouped; folded");
        for f in &folded {
            let _ = write!(detail, " {f}");
        }
        out.push(Effect::StormGrouped {
            incident: gid,
            area: skey.area,
            kind: skey.kind,
            devices,
            folded,
        });
        audit(out, now, None, Some(gid), AuditAction::StormGrouped, detail);
        gid
    }

    pub(super) fn group_join(
        &mut self,
        gid: IncidentId,
        dev: DeviceId,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(inc) = self.incidents.get_mut(&gid) else {
            return;
        };
        inc.record_signal(sig.received_at);
        inc.condition_active = true;
        let g = inc.group.get_or_insert_default();
        g.members.insert(dev);
        g.active.insert(dev);
        let (devices, active) = (count(g.members.len()), count(g.active.len()));
        out.push(Effect::IncidentUpdated {
            incident: gid,
            change: Change::GroupMember {
                device: dev,
                devices,
                active,
            },
            signal: sig.id,
            signal_count: inc.signal_count,
        });
        audit(
            out,
            now,
            None,
            Some(gid),
            AuditAction::GroupJoined,
            format!(
                "unit {dev} joined ({devices} units, {active} in fault): {}",
                sig.detail
            ),
        );
    }

    /// A condition cleared: record it on the open incident (or storm group) and close it
    /// when the kind's policy says so, it is not life-critical and nobody holds it.
    pub(super) fn restore(
        &mut self,
        sig: Sig,
        reason: AutoReason,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> Option<IncidentId> {
        let policy = self.classifier.policy(sig.kind);
        let key = (sig.subject.clone(), sig.kind);
        if let Some(&id) = self.by_key.get(&key)
            && let Some(inc) = self.incidents.get_mut(&id)
        {
            inc.restore_count = inc.restore_count.saturating_add(1);
            inc.record_signal(sig.received_at);
            inc.condition_active = false;
            let heard = matches!(reason, AutoReason::DeviceHeard);
            out.push(Effect::IncidentUpdated {
                incident: id,
                change: if heard {
                    Change::DeviceHeard
                } else {
                    Change::Restored
                },
                signal: sig.id,
                signal_count: inc.signal_count,
            });
            audit(
                out,
                now,
                None,
                Some(id),
                if heard {
                    AuditAction::DeviceHeard
                } else {
                    AuditAction::RestoreRecorded
                },
                sig.detail.clone(),
            );
            let closable = policy.auto_close_on_restore
                && inc.priority != Priority::LifeCritical
                && inc.state != IncidentState::Claimed;
            if closable {
                self.resolve(id, Resolution::Auto { reason }, None, now, out);
            }
            return Some(id);
        }
        if sig.kind.is_groupable()
            && let Some(dev) = sig.subject.device()
        {
            let area = self.devices.get(&dev).and_then(|d| d.info.area.clone());
            let skey = StormKey {
                area,
                kind: sig.kind,
            };
            if let Some(gid) = self.storms.get(&skey).and_then(|s| s.group)
                && let Some(inc) = self.incidents.get_mut(&gid)
                && let Some(g) = inc.group.as_mut()
                && g.active.remove(&dev)
            {
                let active = count(g.active.len());
                inc.restore_count = inc.restore_count.saturating_add(1);
                inc.record_signal(sig.received_at);
                if active == 0 {
                    inc.condition_active = false;
                }
                out.push(Effect::IncidentUpdated {
                    incident: gid,
                    change: Change::GroupMemberRestored {
                        device: dev,
                        active,
                    },
                    signal: sig.id,
                    signal_count: inc.signal_count,
                });
                audit(
                    out,
                    now,
                    None,
                    Some(gid),
                    AuditAction::GroupMemberRestored,
                    format!(
                        "unit {dev} restored ({active} still in fault): {}",
                        sig.detail
                    ),
                );
                let closable = active == 0
                    && policy.auto_close_on_restore
                    && inc.priority != Priority::LifeCritical
                    && inc.state != IncidentState::Claimed;
                if closable {
                    self.resolve(gid, Resolution::Auto { reason }, None, now, out);
                }
                return Some(gid);
            }
        }
        if sig.kind == Kind::Unknown {
            // An unknown code is shown whatever its qualifier.
            return Some(self.raise(sig, now, out));
        }
        if sig.id.is_some() && sig.kind.is_alarm() {
            // An alarm's restore with no open incident: usually the alarm was resolved
            // before the unit reset, but it may also mean the alarm itself never arrived.
            // Recorded, so the trail shows it either way.
            audit(
                out,
                now,
                None,
                None,
                AuditAction::RestoreRecorded,
                format!(
                    "restore with no open {} incident for {}: {}",
                    sig.kind.as_str(),
                    SubjectText(&sig.subject),
                    sig.detail
                ),
            );
        }
        None
    }

    /// A cancel/reset: recorded on every open alarm incident of the subject.
    pub(super) fn cancel(
        &mut self,
        sig: &Sig,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) -> Option<IncidentId> {
        let mut touched = None;
        for kind in Kind::ALL {
            if !kind.is_alarm() {
                continue;
            }
            let key = (sig.subject.clone(), kind);
            let Some(&id) = self.by_key.get(&key) else {
                continue;
            };
            let Some(inc) = self.incidents.get_mut(&id) else {
                continue;
            };
            inc.cancelled_at = Some(sig.received_at);
            inc.record_signal(sig.received_at);
            out.push(Effect::IncidentUpdated {
                incident: id,
                change: Change::Cancelled,
                signal: sig.id,
                signal_count: inc.signal_count,
            });
            let closable = self.classifier.policy(kind).auto_close_on_cancel
                && inc.priority != Priority::LifeCritical
                && inc.state != IncidentState::Claimed;
            let note = if closable {
                "cancel recorded; closed by policy"
            } else {
                "cancel recorded; an operator must close the incident"
            };
            audit(
                out,
                now,
                None,
                Some(id),
                AuditAction::CancelRecorded,
                format!("{note}: {}", sig.detail),
            );
            if closable {
                self.resolve(
                    id,
                    Resolution::Auto {
                        reason: AutoReason::Cancelled,
                    },
                    None,
                    now,
                    out,
                );
            }
            touched = touched.or(Some(id));
        }
        touched
    }
}
