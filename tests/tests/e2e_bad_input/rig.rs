//! The rig: one real `wardend` with its serial line and broker, and how a case is run,
//! observed in Postgres and `/metrics`, and judged.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use warden_tests::{Mosquitto, PtyPair, RawLine, TestDb, Wardend, http_get, wait_until};

use crate::catalogue::{
    ACK, BRIDGE, BROKER_LIMIT, Case, NAK, NUMERIC_MQTT, PANEL, PANEL_2, Path, cid_frame, pendant,
    reply_name, up,
};

/// How long the next good pendant may take to be offered.
pub(crate) const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a case's input may take to be stored and triaged.
pub(crate) const SETTLE_DEADLINE: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------
// The rig
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) reply: Option<u8>,
    /// (id, raw, device account or "")
    pub(crate) signals: Vec<(String, Vec<u8>, String)>,
    /// (reason code, raw)
    pub(crate) quarantine: Vec<(String, Vec<u8>)>,
    /// (id, priority, kind, device account or "", open, offered)
    pub(crate) incidents: Vec<(i64, String, String, String, bool, bool)>,
    pub(crate) audits: Vec<String>,
    pub(crate) metric_delta: f64,
}

impl Seen {
    pub(crate) fn observed(&self, path: Path) -> String {
        let mut out = String::new();
        if path == Path::Serial {
            out.push_str(reply_name(self.reply));
            out.push_str(", ");
        }
        for (_, p, k, d, open, offered) in &self.incidents {
            let _ = write!(
                out,
                "incident {p} {k}{}{}{}, ",
                if d.is_empty() {
                    " no-device".to_owned()
                } else {
                    format!(" dev={d}")
                },
                if *open { "" } else { " CLOSED" },
                if *offered { "" } else { " NOT-OFFERED" },
            );
        }
        if self.incidents.is_empty() {
            out.push_str("no incident, ");
        }
        if self.quarantine.is_empty() {
            out.push_str("no quarantine, ");
        }
        for (code, _) in &self.quarantine {
            let _ = write!(out, "quarantine {code}, ");
        }
        let _ = write!(
            out,
            "{} signal(s), metric +{}",
            self.signals.len(),
            self.metric_delta
        );
        out
    }
}

pub(crate) struct Rig {
    pub(crate) db: TestDb,
    pub(crate) broker: Mosquitto,
    pub(crate) warden: Wardend,
    pub(crate) line: RawLine,
    pub(crate) probes: u16,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) _pty: PtyPair,
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The ids the engine gives each event of a stored signal: the first carries the signal's
/// id, the i-th its id with the low bits xor i.
pub(crate) fn event_ids(signal: &str) -> Vec<String> {
    let hex: String = signal.chars().filter(|c| *c != '-').collect();
    let Ok(base) = u128::from_str_radix(&hex, 16) else {
        return vec![signal.to_owned()];
    };
    (0..4u128)
        .map(|i| {
            let h = format!("{:032x}", base ^ i);
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        })
        .collect()
}

pub(crate) fn sql_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Rig {
    pub(crate) fn start() -> Self {
        let db = TestDb::create("e2e_bad_input");
        let broker = Mosquitto::start(&format!("message_size_limit {BROKER_LIMIT}"));
        let pty = PtyPair::start();
        let config = format!(
            "[database]\nurl = \"{}\"\n[mqtt]\nport = {}\nclient_id = \"warden-bad-input\"\n\
             [[serial]]\nname = \"rx1\"\npath = \"{}\"\nheartbeat_window = \"10m\"\n",
            db.url,
            broker.port,
            pty.warden.display()
        );
        let warden = Wardend::start(&config);
        for (account, protocol) in [
            (PANEL, "contact_id"),
            (PANEL_2, "contact_id"),
            (NUMERIC_MQTT, "mqtt"),
            (BRIDGE, "mqtt"),
        ] {
            warden.add_device(account, protocol, &["--test-interval", "24h"]);
        }
        // The units each case and each probe speaks for, registered in one statement.
        db.query(
            "INSERT INTO devices (account, protocol) \
             SELECT (3000 + n)::text, 'contact_id' FROM generate_series(1, 20) n \
             UNION ALL SELECT (7000 + n)::text, 'contact_id' FROM generate_series(1, 99) n \
             UNION ALL SELECT 'm' || lpad(n::text, 2, '0'), 'mqtt' FROM generate_series(1, 40) n \
             UNION ALL SELECT 'probe-' || n, 'mqtt' FROM generate_series(1, 99) n",
        );
        // The MQTT bridge relays the 30xx panels' Contact ID messages: a pass-through speaks
        // for a panel only from its registered bridge.
        db.query(
            "UPDATE devices SET bridge_device_id = (SELECT id FROM devices WHERE account = 'bridge-1') \
             WHERE account LIKE '30__'",
        );
        warden.wait_mqtt_up(broker.port);
        let line = RawLine::open(&pty);
        Self {
            db,
            broker,
            warden,
            line,
            probes: 0,
            dir: tempfile::tempdir().expect("temp dir"),
            _pty: pty,
        }
    }

    pub(crate) fn now(&self) -> String {
        self.db.query("SELECT clock_timestamp()")
    }

    pub(crate) fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        let file = self.dir.path().join("payload");
        std::fs::write(&file, payload).map_err(|e| e.to_string())?;
        let mut cmd = std::process::Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.broker.port.to_string()])
            .args(["-q", "1", "-t", topic]);
        if payload.is_empty() {
            cmd.arg("-n");
        } else {
            cmd.arg("-f").arg(&file);
        }
        let out = cmd.output().map_err(|e| format!("mosquitto_pub: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "mosquitto_pub failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Signals (not Warden's own) and quarantine rows since `t0`, and how many of those
    /// signals are not yet triaged.
    pub(crate) fn rows_since(&self, t0: &str) -> (i64, i64, i64) {
        let out = self.db.query(&format!(
            "SELECT (SELECT count(*) FROM signals WHERE received_at >= '{t0}' AND source <> 'internal'), \
                    (SELECT count(*) FROM quarantine WHERE received_at >= '{t0}'), \
                    (SELECT count(*) FROM signals s WHERE received_at >= '{t0}' AND source <> 'internal' \
                       AND NOT EXISTS (SELECT 1 FROM triaged t WHERE t.signal_id = s.id))"
        ));
        let n: Vec<i64> = out.split('|').filter_map(|v| v.parse().ok()).collect();
        (
            n.first().copied().unwrap_or(0),
            n.get(1).copied().unwrap_or(0),
            n.get(2).copied().unwrap_or(0),
        )
    }

    /// Waits until the case's input is stored and triaged and nothing more arrives.
    pub(crate) fn settle(&self, t0: &str) {
        let start = Instant::now();
        let mut last = (-1, -1, -1);
        let mut stable = 0;
        while start.elapsed() < SETTLE_DEADLINE {
            let now = self.rows_since(t0);
            if now == last && now.0 + now.1 > 0 && now.2 == 0 {
                stable += 1;
                if stable >= 3 {
                    return;
                }
            } else {
                stable = 0;
            }
            last = now;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn observe(&self, t0: &str) -> Seen {
        let mut seen = Seen::default();
        for row in self
            .db
            .query(&format!(
                "SELECT s.id, encode(s.raw, 'hex'), coalesce(d.account, '') FROM signals s \
                 LEFT JOIN devices d ON d.id = s.device_id \
                 WHERE s.received_at >= '{t0}' AND s.source <> 'internal' ORDER BY s.received_at"
            ))
            .lines()
        {
            let f: Vec<&str> = row.split('|').collect();
            if let [id, raw, acct] = f[..] {
                seen.signals
                    .push((id.to_owned(), unhex(raw), acct.to_owned()));
            }
        }
        for row in self
            .db
            .query(&format!(
                "SELECT reason_code, encode(raw, 'hex') FROM quarantine \
                 WHERE received_at >= '{t0}' ORDER BY received_at"
            ))
            .lines()
        {
            if let Some((code, raw)) = row.split_once('|') {
                seen.quarantine.push((code.to_owned(), unhex(raw)));
            }
        }
        let ids: Vec<String> = seen
            .signals
            .iter()
            .flat_map(|(id, _, _)| event_ids(id))
            .collect();
        if !ids.is_empty() {
            let list = sql_list(&ids);
            for row in self
                .db
                .query(&format!(
                    "SELECT i.id, i.priority, i.kind, coalesce(d.account, ''), i.resolved_at IS NULL, \
                            i.offered_at IS NOT NULL FROM incidents i \
                     LEFT JOIN devices d ON d.id = i.device_id \
                     WHERE i.id IN (SELECT incident_id FROM incident_events WHERE effect->>'signal' IN ({list})) \
                     ORDER BY i.id"
                ))
                .lines()
            {
                let f: Vec<&str> = row.split('|').collect();
                if let [id, p, k, d, open, offered] = f[..] {
                    seen.incidents.push((
                        id.parse().unwrap_or(-1),
                        p.to_owned(),
                        k.to_owned(),
                        d.to_owned(),
                        open == "t",
                        offered == "t",
                    ));
                }
            }
            let like = ids
                .iter()
                .map(|id| format!("effect->>'detail' LIKE '%{id}%'"))
                .collect::<Vec<_>>()
                .join(" OR ");
            seen.audits = self
                .db
                .query(&format!(
                    "SELECT effect->>'detail' FROM incident_events WHERE kind = 'audit' AND ({like})"
                ))
                .lines()
                .map(str::to_owned)
                .collect();
        }
        seen
    }

    /// (d): the process runs, answers, and its engine is not stopped.
    pub(crate) fn health(&mut self) -> Result<(), String> {
        if !self.warden.is_running() {
            return Err("wardend exited".into());
        }
        match http_get(self.warden.admin, "/healthz") {
            Some((200, _)) => {}
            other => return Err(format!("/healthz answered {other:?}")),
        }
        match http_get(self.warden.admin, "/readyz") {
            Some((_, body)) if body.contains("triage engine") => {
                return Err(format!("/readyz: {}", body.trim()));
            }
            Some(_) => {}
            None => return Err("/readyz did not answer".into()),
        }
        let running = self.warden.metric("warden_engine_running");
        if running < 0.5 {
            return Err(format!("warden_engine_running {running}"));
        }
        Ok(())
    }

    /// (e): a fresh pendant press on `path` becomes an offered life-critical incident within
    /// [`PROBE_DEADLINE`]. Serial presses are resent on NAK, as a receiver would.
    pub(crate) fn probe(&mut self, path: Path) -> Result<Duration, String> {
        self.probes += 1;
        let n = self.probes;
        let start = Instant::now();
        let account = match path {
            Path::Serial => {
                let account = format!("{}", 7000 + n);
                let frame = cid_frame(&account, 'E', "101", n);
                self.line.discard_replies();
                let mut acked = false;
                for _ in 0..3 {
                    self.line.send(&frame);
                    match self.line.reply(Duration::from_secs(2)) {
                        Some(ACK) => {
                            acked = true;
                            break;
                        }
                        Some(NAK) => {}
                        other => return Err(format!("pendant frame answered {other:?}")),
                    }
                }
                if !acked {
                    return Err("pendant frame NAKed three times".into());
                }
                account
            }
            Path::Mqtt => {
                let account = format!("probe-{n}");
                self.publish(&up(&account), pendant(&format!("p-{n}")).as_bytes())?;
                account
            }
        };
        let sql = format!(
            "SELECT count(*) FROM incidents i JOIN devices d ON d.id = i.device_id \
             WHERE d.account = '{account}' AND i.priority = 'life_critical' \
             AND i.offered_at IS NOT NULL AND i.resolved_at IS NULL"
        );
        let left = PROBE_DEADLINE.saturating_sub(start.elapsed());
        if wait_until(left, || self.db.count(&sql) == 1) {
            Ok(start.elapsed())
        } else {
            Err(format!(
                "pendant press of {account} not offered within {PROBE_DEADLINE:?}"
            ))
        }
    }

    /// Runs one case and returns (observed, failed checks).
    pub(crate) fn run(&mut self, case: &Case) -> (String, Vec<String>) {
        let mut failed = Vec::new();
        let t0 = self.now();
        let metric = case.metric();
        let before = self.warden.metric(&metric);
        let received_sel = format!(
            "warden_signals_received_total{{source=\"{}\"}}",
            case.path.source()
        );
        let rejected_sel = format!(
            "warden_signals_rejected_total{{source=\"{}\"",
            case.path.source()
        );
        let (recv_before, rej_before) = (
            self.warden.metric(&received_sel),
            self.warden.metric(&rejected_sel),
        );
        let mut reply = None;
        match case.path {
            Path::Serial => {
                self.line.discard_replies();
                self.line.send(&case.bytes);
                reply = self.line.reply(Duration::from_secs(5));
            }
            Path::Mqtt => {
                if let Err(e) = self.publish(&case.topic, &case.bytes) {
                    failed.push(e);
                }
            }
        }
        if case.dropped_by_broker {
            std::thread::sleep(Duration::from_millis(1500));
        } else {
            self.settle(&t0);
        }
        let mut seen = self.observe(&t0);
        seen.reply = reply;
        seen.metric_delta = self.warden.metric(&metric) - before;

        if case.dropped_by_broker {
            if !seen.signals.is_empty() || !seen.quarantine.is_empty() {
                failed.push("Warden stored a message the broker should have dropped".into());
            }
            let moved = (self.warden.metric(&received_sel) - recv_before)
                + (self.warden.metric(&rejected_sel) - rej_before);
            if moved != 0.0 {
                failed.push(format!("signal counters moved by {moved}"));
            }
        } else {
            check(case, &seen, &mut failed);
        }
        if let Err(e) = self.health() {
            failed.push(format!("(d) {e}"));
        }
        let observed = seen.observed(case.path);
        match self.probe(case.path) {
            Ok(d) => (format!("{observed}; next pendant {d:.0?}"), failed),
            Err(e) => {
                failed.push(format!("(e) {e}"));
                (observed, failed)
            }
        }
    }
}

/// (a), (b), (c) for one case.
pub(crate) fn check(case: &Case, seen: &Seen, failed: &mut Vec<String>) {
    if let Some(want) = case.reply
        && seen.reply != Some(want)
    {
        failed.push(format!(
            "receiver got {} instead of {}",
            reply_name(seen.reply),
            reply_name(Some(want))
        ));
    }
    // (a) every expected incident, each matched by a distinct open, offered incident.
    let mut used = Vec::new();
    for w in &case.incidents {
        let hit = seen.incidents.iter().find(|(id, p, k, d, open, offered)| {
            !used.contains(id)
                && *open
                && *offered
                && w.pri.admits(p)
                && w.kind.is_none_or(|want| want == k)
                && w.dev.admits(d)
        });
        match hit {
            Some((id, ..)) => used.push(*id),
            None => failed.push(format!(
                "(a) no open, offered incident {}{}{}",
                w.pri,
                w.kind.map(|k| format!(" {k}")).unwrap_or_default(),
                w.dev
            )),
        }
    }
    if case.any_record
        && seen.incidents.is_empty()
        && seen.quarantine.is_empty()
        && seen.audits.is_empty()
    {
        failed.push("(a) no incident, quarantine row or audit entry records it".into());
    }
    // (b) the evidence, raw bytes exact.
    if let Some((code, raw)) = &case.quarantine {
        let kept = seen.quarantine.iter().any(|(c, r)| c == code && r == raw);
        if !kept {
            let near = seen
                .quarantine
                .iter()
                .map(|(c, r)| format!("{c} ({} bytes)", r.len()))
                .collect::<Vec<_>>();
            failed.push(format!(
                "(b) no quarantine row {code} with the {} raw bytes exactly (rows: {near:?})",
                raw.len()
            ));
        }
    }
    if let Some((raw, dev)) = &case.stored {
        let kept = seen
            .signals
            .iter()
            .any(|(_, r, d)| r == raw && dev.admits(d));
        if !kept {
            failed.push(format!(
                "(b) no signal kept with the {} raw bytes exactly{dev}",
                raw.len()
            ));
        }
    }
    if !case.incidents.is_empty() && case.quarantine.is_none() && seen.audits.is_empty() {
        failed.push("(b) no audit entry of an incident names the signal".into());
    }
    if let Some(text) = &case.audit
        && !seen.audits.iter().any(|a| a.contains(text.as_str()))
    {
        failed.push(format!("(b) no audit entry says {text:?}"));
    }
    // (c)
    if seen.metric_delta < 1.0 {
        failed.push(format!("(c) {} did not move", case.metric()));
    }
}
