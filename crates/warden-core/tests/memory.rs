//! The core's share of "100k registered devices and 10k open incidents in at most 300 MB
//! RSS". Its own test binary, so no other test's allocations disturb the measurement.

use warden_core::{
    Config, DeviceId, DeviceInfo, Incident, Input, Micros, Name, SignalId, SignalIn, SignalWhat,
    Source, Timestamp, Triage,
};
use warden_types::Qualifier;

/// Resident set size from /proc (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn info(id: i64, areas: &[Name]) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId(id),
        area: Some(areas[usize::try_from(id).unwrap_or(0) % areas.len()].clone()),
        test_interval: Some(Micros::from_hours(24)),
        device_type: Some(Name::from("pendant")),
        client: Some(id),
    }
}

#[test]
#[allow(clippy::cast_precision_loss)] // megabytes for a human to read
fn a_hundred_thousand_devices_and_ten_thousand_open_incidents_fit_well_within_budget() {
    let before = rss_bytes();
    let areas: Vec<Name> = (0..200)
        .map(|a| Name::from(format!("scheme-{a}")))
        .collect();
    let mut core = Triage::new(Config::default());
    let t0 = Timestamp::from_secs(1_800_000_000);
    for id in 1..=100_000 {
        core.handle(Input::RegisterDevice(info(id, &areas)), t0);
    }
    let mut out = Vec::new();
    for id in 1..=10_000i64 {
        let t = t0.saturating_add(Micros::from_millis(id * 10));
        out.clear();
        core.handle_into(
            Input::Signal(SignalIn {
                id: SignalId(u128::try_from(id).unwrap_or(0)),
                source: Source::Serial,
                link: Name::from("serial:ttyS0"),
                account: None,
                device: Some(info(id, &areas)),
                what: SignalWhat::ContactId {
                    code: if id % 2 == 0 { 101 } else { 154 },
                    qualifier: Qualifier::New,
                },
                received_at: t,
            }),
            t,
            &mut out,
        );
    }
    assert_eq!(core.open_incident_count(), 10_000);
    assert_eq!(core.device_count(), 100_000);
    let estimate = core.approx_heap_bytes();
    eprintln!(
        "size_of Incident {} B; estimated heap {:.1} MB",
        std::mem::size_of::<Incident>(),
        estimate as f64 / 1e6
    );
    assert!(estimate < 60_000_000, "estimate {estimate} B");
    if let (Some(b), Some(a)) = (before, rss_bytes()) {
        let grown = a.saturating_sub(b);
        eprintln!("RSS grew {:.1} MB", grown as f64 / 1e6);
        assert!(
            grown < 100_000_000,
            "the core alone must leave most of the 300 MB budget to the daemon: {grown} B"
        );
    }
}
