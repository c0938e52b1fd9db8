//! The device registry and configuration changes.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Triage {
    // ----- registry and configuration ------------------------------------------------

    pub(super) fn register(&mut self, info: DeviceInfo, now: Timestamp) {
        let allowance = |iv| self.config.supervision.allowance(iv);
        let id = info.id;
        if let Some(d) = self.devices.get_mut(&id) {
            if d.info == info {
                return;
            }
            let interval_changed = d.info.test_interval != info.test_interval;
            d.info = info;
            if interval_changed && !d.ftr_outstanding {
                d.due = d
                    .info
                    .test_interval
                    .map(|iv| d.last_heard.unwrap_or(now).saturating_add(allowance(iv)));
                arm(&mut self.timers, id, d);
            }
        } else {
            let mut d = Dev {
                due: info
                    .test_interval
                    .map(|iv| now.saturating_add(allowance(iv))),
                info,
                last_heard: None,
                ftr_outstanding: false,
                timer_at: None,
            };
            arm(&mut self.timers, id, &mut d);
            self.devices.insert(id, d);
        }
    }

    pub(super) fn on_forget(&mut self, device: DeviceId, now: Timestamp, out: &mut Vec<Effect>) {
        if self.devices.remove(&device).is_none() {
            Self::reject(
                out,
                InputKind::ForgetDevice,
                None,
                None,
                RejectReason::UnknownDevice { device },
            );
            return;
        }
        self.rates.remove(&device);
        audit(
            out,
            now,
            None,
            None,
            AuditAction::DeviceForgotten,
            format!("unit {device} removed from the registry; its open incidents stay"),
        );
    }

    pub(super) fn on_configure(&mut self, config: Config, now: Timestamp, out: &mut Vec<Effect>) {
        if let Err(e) = config.validate() {
            Self::reject(
                out,
                InputKind::Configure,
                None,
                None,
                RejectReason::InvalidConfig {
                    message: e.to_string(),
                },
            );
            return;
        }
        self.classifier = Classifier::new(&config);
        self.config = config;
        let sup = self.config.supervision;
        for d in self.devices.values_mut() {
            if d.ftr_outstanding {
                continue;
            }
            match (d.info.test_interval, d.last_heard) {
                (Some(iv), Some(l)) => d.due = Some(l.saturating_add(sup.allowance(iv))),
                (None, _) => d.due = None,
                (Some(_), None) => {}
            }
        }
        self.rebuild_timers();
        audit(
            out,
            now,
            None,
            None,
            AuditAction::ConfigChanged,
            "configuration replaced".to_owned(),
        );
    }
}
