//! Snapshots: writing the core out and rebuilding it.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Triage {
    // ----- snapshots -----------------------------------------------------------------

    /// Everything needed to continue exactly where this core is: restoring it and feeding
    /// the same inputs gives the same effects as never stopping (for non-decreasing `now`).
    pub fn snapshot(&self) -> Snapshot {
        let mut devices: Vec<DeviceSnapshot> = self
            .devices
            .values()
            .map(|d| DeviceSnapshot {
                info: d.info.clone(),
                last_heard: d.last_heard,
                due: d.due,
                ftr_outstanding: d.ftr_outstanding,
            })
            .collect();
        devices.sort_by_key(|d| d.info.id);
        let mut incidents: Vec<Incident> = self.incidents.values().cloned().collect();
        incidents.sort_by_key(|i| i.id);
        let mut dedupe: Vec<DedupeSnapshot> = self
            .dedupe
            .entries()
            .map(|(k, s)| DedupeSnapshot {
                subject: k.subject.clone(),
                kind: k.kind,
                event: k.event,
                tag: k.tag,
                last_received: s.last,
                expires: s.expires,
                incident: s.incident,
            })
            .collect();
        dedupe.sort_by(|a, b| {
            (a.expires, &a.subject, a.kind, a.event, a.tag)
                .cmp(&(b.expires, &b.subject, b.kind, b.event, b.tag))
        });
        let mut seen_signals: Vec<SeenSnapshot> = self
            .seen
            .entries()
            .map(|(k, s)| SeenSnapshot {
                signal: *k,
                received_at: s.last,
                expires: s.expires,
                incident: s.incident,
            })
            .collect();
        seen_signals.sort_by_key(|s| (s.expires, s.signal));
        let mut rates: Vec<RateSnapshot> = self
            .rates
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(d, q)| RateSnapshot {
                device: *d,
                recent: q.iter().copied().collect(),
            })
            .collect();
        rates.sort_by_key(|r| r.device);
        let mut storms: Vec<StormSnapshot> = self
            .storms
            .iter()
            .filter(|(_, s)| !s.recent.is_empty())
            .map(|(k, s)| StormSnapshot {
                area: k.area.clone(),
                kind: k.kind,
                recent: s.recent.iter().cloned().collect(),
            })
            .collect();
        storms.sort_by(|a, b| (&a.area, a.kind).cmp(&(&b.area, b.kind)));
        Snapshot {
            version: SNAPSHOT_VERSION,
            config: self.config.clone(),
            next_incident: self.next_id,
            devices,
            incidents,
            dedupe,
            seen_signals,
            rates,
            storms,
            next_sweep: self.next_sweep,
        }
    }

    /// Rebuilds a core from a snapshot (or from persisted state assembled with
    /// [`Snapshot::rebuild`]). Resolved incidents in it are ignored; an incident whose
    /// state and holder disagree is put back in the queue.
    pub fn from_snapshot(s: Snapshot) -> Result<Triage, RestoreError> {
        if s.version != SNAPSHOT_VERSION {
            return Err(RestoreError::UnsupportedVersion(s.version));
        }
        let mut t = Triage::new(s.config);
        let mut max_id = 0;
        for d in s.devices {
            t.devices.insert(
                d.info.id,
                Dev {
                    info: d.info,
                    last_heard: d.last_heard,
                    due: if d.ftr_outstanding { None } else { d.due },
                    ftr_outstanding: d.ftr_outstanding,
                    timer_at: None,
                },
            );
        }
        for mut inc in s.incidents {
            if inc.state == IncidentState::Resolved || t.incidents.contains_key(&inc.id) {
                continue;
            }
            max_id = max_id.max(inc.id.0);
            if inc.state != IncidentState::Claimed || inc.holder.is_none() {
                inc.state = IncidentState::Offered;
                inc.holder = None;
                inc.offered_at = inc.offered_at.or(Some(inc.raised_at));
                t.queues[lane(inc.priority)].insert((inc.arrived_at, inc.id));
            }
            let key = (inc.subject.clone(), inc.kind);
            t.by_key.entry(key).or_insert(inc.id);
            if let Subject::Group { area } = &inc.subject {
                t.storms
                    .entry(StormKey {
                        area: area.clone(),
                        kind: inc.kind,
                    })
                    .or_default()
                    .group
                    .get_or_insert(inc.id);
            }
            t.incidents.insert(inc.id, inc);
        }
        t.next_id = s.next_incident.max(max_id.saturating_add(1)).max(1);
        t.dedupe = Window::from_entries(
            s.dedupe
                .into_iter()
                .map(|d| {
                    (
                        DedupeKey {
                            subject: d.subject,
                            kind: d.kind,
                            event: d.event,
                            tag: d.tag,
                        },
                        Seen {
                            last: d.last_received,
                            expires: d.expires,
                            incident: d.incident,
                        },
                    )
                })
                .collect(),
        );
        t.seen = Window::from_entries(
            s.seen_signals
                .into_iter()
                .map(|s| {
                    (
                        s.signal,
                        Seen {
                            last: s.received_at,
                            expires: s.expires,
                            incident: s.incident,
                        },
                    )
                })
                .collect(),
        );
        for r in s.rates {
            t.rates.insert(r.device, r.recent.into_iter().collect());
        }
        for st in s.storms {
            t.storms
                .entry(StormKey {
                    area: st.area,
                    kind: st.kind,
                })
                .or_default()
                .recent = st.recent.into_iter().collect();
        }
        t.next_sweep = s.next_sweep;
        t.rebuild_timers();
        Ok(t)
    }

    pub(super) fn on_restore(&mut self, s: Snapshot, now: Timestamp, out: &mut Vec<Effect>) {
        match Triage::from_snapshot(s) {
            Ok(t) => {
                *self = t;
                audit(
                    out,
                    now,
                    None,
                    None,
                    AuditAction::StateRestored,
                    format!(
                        "state restored: {} devices, {} open incidents",
                        self.devices.len(),
                        self.incidents.len()
                    ),
                );
            }
            Err(RestoreError::UnsupportedVersion(version)) => Self::reject(
                out,
                InputKind::Restore,
                None,
                None,
                RejectReason::UnsupportedSnapshot { version },
            ),
        }
    }

    /// Approximate heap bytes held, for capacity planning (maps counted at capacity, plus
    /// the per-entry boxes and sets). An estimate, not an allocator measurement.
    pub fn approx_heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let map = |cap: usize, entry: usize| cap * (entry + 1);
        let mut n = map(self.devices.capacity(), size_of::<(DeviceId, Dev)>())
            + map(
                self.incidents.capacity(),
                size_of::<(IncidentId, Incident)>(),
            )
            + map(
                self.by_key.capacity(),
                size_of::<((Subject, Kind), IncidentId)>(),
            )
            + map(
                self.rates.capacity(),
                size_of::<(DeviceId, VecDeque<Timestamp>)>(),
            );
        // BTreeSet nodes hold up to 11 keys; assume two-thirds full.
        let btree = |len: usize, key: usize| len * key * 3 / 2;
        n += btree(self.timers.len(), size_of::<(Timestamp, Timer)>());
        n += self
            .queues
            .iter()
            .map(|q| btree(q.len(), size_of::<(Timestamp, IncidentId)>()))
            .sum::<usize>();
        n += self
            .rates
            .values()
            .map(|q| q.capacity() * size_of::<Timestamp>())
            .sum::<usize>();
        for inc in self.incidents.values() {
            if let Some(g) = &inc.group {
                n += size_of::<GroupInfo>()
                    + btree(g.members.len() + g.active.len(), size_of::<DeviceId>());
            }
            if inc.runaway.is_some() {
                n += size_of::<RunawayInfo>() + 64;
            }
            n += inc.summary.as_ref().map_or(0, String::capacity);
        }
        n += self.dedupe.len() * (size_of::<DedupeKey>() + 48)
            + self.seen.len() * (size_of::<SignalId>() + 48);
        n
    }
}
