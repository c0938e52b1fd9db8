//! Timers: supervision deadlines and answer-time thresholds.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Triage {
    // ----- timers --------------------------------------------------------------------

    pub(super) fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        self.dedupe.prune(now);
        self.seen.prune(now);
        if now >= self.next_sweep {
            self.sweep(now);
        }
        // Collect what is really due, keyed by its real due time, so the firing order does
        // not depend on where lazily rescheduled timers happened to sit.
        let mut due: Vec<(Timestamp, Timer)> = Vec::new();
        while let Some(&(t, timer)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Supervision(dev) => {
                    let Some(d) = self.devices.get_mut(&dev) else {
                        continue;
                    };
                    d.timer_at = None;
                    match d.due {
                        Some(at) if at <= now => due.push((at, timer)),
                        Some(_) => arm(&mut self.timers, dev, d),
                        None => {}
                    }
                }
                Timer::Sla(id) => {
                    if let Some(inc) = self.incidents.get(&id)
                        && let Some((at, _)) = sla_next(&self.config.sla, inc)
                    {
                        if at <= now {
                            due.push((at, timer));
                        } else {
                            self.timers.insert((at, timer));
                        }
                    }
                }
            }
        }
        due.sort_unstable();
        for (at, timer) in due {
            match timer {
                Timer::Supervision(dev) => self.fail_to_report(dev, at, now, out),
                Timer::Sla(id) => self.fire_sla(id, now, out),
            }
        }
    }

    /// Forgets runaway and storm windows that have been idle for a whole window, so units
    /// and areas that went quiet cost nothing. Deterministic (driven by ticks), so restored
    /// and uninterrupted cores sweep alike.
    pub(super) fn sweep(&mut self, now: Timestamp) {
        let rh = now.saturating_sub(self.config.runaway.window);
        self.rates.retain(|_, q| q.back().is_some_and(|t| *t >= rh));
        let sh = now.saturating_sub(self.config.storm.window);
        self.storms
            .retain(|_, s| s.group.is_some() || s.recent.back().is_some_and(|r| r.at >= sh));
        let every = self
            .config
            .runaway
            .window
            .max(self.config.storm.window)
            .max(Micros::from_secs(1));
        self.next_sweep = now.saturating_add(every);
    }

    pub(super) fn fail_to_report(
        &mut self,
        dev: DeviceId,
        at: Timestamp,
        now: Timestamp,
        out: &mut Vec<Effect>,
    ) {
        let Some(d) = self.devices.get_mut(&dev) else {
            return;
        };
        if d.due != Some(at) {
            return;
        }
        d.due = None;
        d.ftr_outstanding = true;
        let last_heard = d.last_heard;
        let interval = d.info.test_interval.unwrap_or_default();
        let priority = self
            .classifier
            .priority_of(Kind::FailToReport, Some(&d.info));
        let detail = match last_heard {
            Some(l) => {
                format!("unit {dev} not heard since {l}; test interval {interval}, overdue at {at}")
            }
            None => format!(
                "unit {dev} never heard since registration; test interval {interval}, overdue at {at}"
            ),
        };
        let incident = if priority == Priority::Information {
            None
        } else {
            Some(self.raise(
                Sig {
                    id: None,
                    subject: Subject::Device { id: dev },
                    kind: Kind::FailToReport,
                    event: Event::Raise,
                    priority,
                    received_at: at,
                    summary: None,
                    detail: detail.clone(),
                },
                now,
                out,
            ))
        };
        out.push(Effect::FailToReport {
            incident,
            device: dev,
            last_heard,
            due: at,
        });
        audit(out, now, None, incident, AuditAction::FailToReport, detail);
    }

    pub(super) fn fire_sla(&mut self, id: IncidentId, now: Timestamp, out: &mut Vec<Effect>) {
        loop {
            let Some(inc) = self.incidents.get_mut(&id) else {
                return;
            };
            let Some((at, stage)) = sla_next(&self.config.sla, inc) else {
                return;
            };
            if at > now {
                self.timers.insert((at, Timer::Sla(id)));
                return;
            }
            let waited = now.since(super::sla_base(inc));
            let (priority, effect, action, word) = match stage {
                SlaStage::Warn => {
                    inc.sla.warned = true;
                    (
                        inc.priority,
                        Effect::SlaWarning {
                            incident: id,
                            priority: inc.priority,
                            waited,
                        },
                        AuditAction::SlaWarning,
                        "warning",
                    )
                }
                SlaStage::Overflow => {
                    inc.sla.overflowed = true;
                    (
                        inc.priority,
                        Effect::Overflow {
                            incident: id,
                            priority: inc.priority,
                            waited,
                        },
                        AuditAction::Overflow,
                        "overflow to supervisors",
                    )
                }
                SlaStage::Critical => {
                    inc.sla.critical = true;
                    (
                        inc.priority,
                        Effect::Critical {
                            incident: id,
                            priority: inc.priority,
                            waited,
                        },
                        AuditAction::Critical,
                        "critical",
                    )
                }
            };
            out.push(effect);
            audit(
                out,
                now,
                None,
                Some(id),
                action,
                format!("{priority} incident unanswered for {waited}: {word}"),
            );
        }
    }

    pub(super) fn rebuild_timers(&mut self) {
        self.timers.clear();
        for (&id, d) in &mut self.devices {
            d.timer_at = None;
            arm(&mut self.timers, id, d);
        }
        for inc in self.incidents.values() {
            if let Some((at, _)) = sla_next(&self.config.sla, inc) {
                self.timers.insert((at, Timer::Sla(inc.id)));
            }
        }
    }
}
