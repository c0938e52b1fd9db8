//! A Postgres outage, watched (issue 12, part 5): serial and MQTT load keeps running through
//! the real `wardend` while its database is stopped and started again; the harness samples
//! `/metrics` every half second and writes `target/outage.svg` (plotters) with signal → ACK
//! latency (p99 per half second), the spool's depth, and life-critical arrival → console push
//! (p99 per half second) against time, and prints the figures:
//!
//! ```sh
//! SQLX_OFFLINE=true cargo build --release --bin wardend
//! SQLX_OFFLINE=true cargo bench -p warden-benches --bench outage
//! ```
//!
//! With `--bench`: 20 s warm-up, 120 s outage, then the drain and 40 s after, against the
//! release daemon. Without (`cargo test`): a few seconds each, against whichever daemon the
//! test kit picks. Figures are printed, never asserted, except that what the senders saw
//! acknowledged is stored.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use warden_sim::fleet::{Fleet, FleetConfig};
use warden_tests::{Mosquitto, PrivatePg, PtyPair, Wardend, start_fleet, start_receiver};

#[path = "ingest_load/metrics.rs"]
#[allow(dead_code)] // the CPU readings are ingest_load's
mod metrics;

use metrics::{Histogram, Scrape, parse_histogram, scrape};

struct Plan {
    warm: Duration,
    outage: Duration,
    after: Duration,
    units: usize,
    mqtt_per_s: f64,
}

/// One half-second sample.
struct Sample {
    t: f64,
    scrape: Scrape,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let plan = if bench {
        Plan {
            warm: Duration::from_secs(20),
            outage: Duration::from_mins(2),
            after: Duration::from_secs(40),
            units: 200,
            mqtt_per_s: 100.0,
        }
    } else {
        Plan {
            warm: Duration::from_secs(3),
            outage: Duration::from_secs(4),
            after: Duration::from_secs(4),
            units: 20,
            mqtt_per_s: 20.0,
        }
    };
    let binary = if bench {
        let release = warden_tests::target_dir().join("release").join("wardend");
        if !release.is_file() {
            eprintln!(
                "outage: build the release daemon first: SQLX_OFFLINE=true cargo build --release --bin wardend"
            );
            std::process::exit(1);
        }
        release
    } else {
        warden_tests::wardend_binary()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(&plan, &binary));
}

async fn run(plan: &Plan, binary: &std::path::Path) {
    let pg = tokio::task::block_in_place(PrivatePg::start);
    let broker = Mosquitto::start("max_queued_messages 0\nmax_inflight_messages 1000");
    let pty = PtyPair::start();
    let config = format!(
        "[database]\nurl = \"{}\"\n[mqtt]\nport = {}\nclient_id = \"warden-outage\"\n\
         [[serial]]\nname = \"rx1\"\npath = \"{}\"\nheartbeat_window = \"10s\"\n",
        pg.url,
        broker.port,
        pty.warden.display()
    );
    let warden = Wardend::start_binary(binary, &config);
    for a in ["3101", "3102"] {
        warden.add_device(a, "contact_id", &[]);
    }
    let fleet = Fleet::new(FleetConfig {
        port: broker.port,
        devices: plan.units,
        id_prefix: "o-".into(),
        connections: 4,
        heartbeat_interval: Duration::from_hours(1),
        inflight: 200,
        reconnect_delay: Duration::from_millis(300),
        drain_timeout: Duration::from_mins(1),
        ..FleetConfig::default()
    })
    .expect("fleet");
    let ids = fleet.handle().device_ids();
    for (i, id) in ids.iter().enumerate() {
        let extra: &[&str] = if i % 10 == 0 {
            &["--label", "pendant"]
        } else {
            &[]
        };
        warden.add_device(id, "mqtt", extra);
    }
    warden.wait_mqtt_up(broker.port);
    // An operator's console with its live push open, so the push (and its latency histogram)
    // runs as in a centre.
    let console = open_console(&warden).await;
    let (fh, fleet) = start_fleet(fleet).await;
    let (rx, receiver) = start_receiver(&pty);

    let started = Instant::now();
    let total = plan.warm + plan.outage + plan.after + Duration::from_mins(10);
    let stop = started + total;
    // MQTT: tests from every unit, a pendant from every tenth unit every tenth message.
    let mqtt = {
        let (fh, rate) = (fh.clone(), plan.mqtt_per_s);
        tokio::spawn(async move {
            use warden_protocol::mqtt::AlarmKind;
            let t0 = tokio::time::Instant::now();
            let mut n = 0usize;
            loop {
                #[allow(clippy::cast_precision_loss)]
                let due = t0 + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(due).await;
                let id = &ids[n % ids.len()];
                let kind = if n.is_multiple_of(10) {
                    AlarmKind::Pendant
                } else {
                    AlarmKind::Test
                };
                if fh.alarm(id, kind).await.is_err() || Instant::now() > stop {
                    break;
                }
                n += 1;
            }
        })
    };
    // Serial: the receiver is stop-and-wait; keep its buffer fed.
    let serial = {
        let rx = rx.clone();
        tokio::spawn(async move {
            use warden_types::Qualifier;
            for n in 0u32.. {
                // Every tenth frame a pendant press from a unit not seen before (an
                // unregistered account: its own new life-critical incident, so each press
                // is offered and pushed), the rest periodic tests.
                let (account, code) = if n.is_multiple_of(10) {
                    (format!("6{:03}", n / 10 % 1000), 101)
                } else {
                    (["3101", "3102"][(n % 2) as usize].to_owned(), 602)
                };
                let group = u8::try_from(n / 1000 % 100).unwrap_or(0);
                let zone = u16::try_from(n % 1000).unwrap_or(0);
                if rx
                    .send_event(&account, Qualifier::New, code, group, zone)
                    .await
                    .is_err()
                {
                    break;
                }
                while rx.stats().queued > rx.stats().settled + 50 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if Instant::now() > stop {
                    break;
                }
            }
        })
    };

    let mut samples: Vec<Sample> = Vec::new();
    let sample = |samples: &mut Vec<Sample>| {
        samples.push(Sample {
            t: started.elapsed().as_secs_f64(),
            scrape: scrape(warden.admin),
        });
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let until = |t: Duration| started + t;
    while Instant::now() < until(plan.warm) {
        tick.tick().await;
        sample(&mut samples);
    }
    tokio::task::block_in_place(|| pg.stop_server());
    let stopped_at = started.elapsed().as_secs_f64();
    while Instant::now() < until(plan.warm + plan.outage) {
        tick.tick().await;
        sample(&mut samples);
    }
    let spooled = scrape(warden.admin).sum("warden_spool_records");
    tokio::task::block_in_place(|| pg.start_server());
    let restarted_at = started.elapsed().as_secs_f64();
    // Drained when the writer is direct again.
    let mut drained_at = None;
    let end = until(plan.warm + plan.outage + plan.after);
    while Instant::now() < end || (drained_at.is_none() && Instant::now() < stop) {
        tick.tick().await;
        sample(&mut samples);
        if drained_at.is_none()
            && samples
                .last()
                .is_some_and(|s| s.scrape.sum("warden_degraded") < 0.5)
        {
            drained_at = Some(started.elapsed().as_secs_f64());
        }
    }
    mqtt.abort();
    serial.abort();
    console.abort();
    let fleet_report = fleet.stop().await;
    let rx_report = receiver.stop().await;

    // Per half second: ACK p99 (all sources), spool depth, life-critical → console p99.
    let mut ack = Vec::new();
    let mut depth = Vec::new();
    let mut console = Vec::new();
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let h = |name: &str, label| {
            parse_histogram(&b.scrape.0, name, label).minus(&parse_histogram(
                &a.scrape.0,
                name,
                label,
            ))
        };
        if let Some(q) = h("warden_ack_latency_seconds", None).quantile(0.99) {
            ack.push((b.t, q * 1000.0));
        }
        depth.push((b.t, b.scrape.sum("warden_spool_records")));
        if let Some(q) = h(
            "warden_console_push_seconds",
            Some(("priority", "life_critical")),
        )
        .quantile(0.99)
        {
            console.push((b.t, q * 1000.0));
        }
    }
    let during = |from: f64, to: f64, name: &str, label| -> Histogram {
        let at = |t: f64| {
            samples
                .iter()
                .min_by(|x, y| (x.t - t).abs().total_cmp(&(y.t - t).abs()))
                .map(|s| parse_histogram(&s.scrape.0, name, label))
                .unwrap_or_default()
        };
        at(to).minus(&at(from))
    };
    let ack_out = during(stopped_at, restarted_at, "warden_ack_latency_seconds", None);
    let con_out = during(
        stopped_at,
        restarted_at,
        "warden_console_push_seconds",
        Some(("priority", "life_critical")),
    );
    let ms = |q: Option<f64>| q.map_or("n/a".to_owned(), |v| format!("{:.1} ms", v * 1000.0));
    println!("outage: Postgres stopped at {stopped_at:.1} s, started at {restarted_at:.1} s");
    println!(
        "  signal → ACK during the outage: {} ACKs, p50 {}, p99 {}, max bucket {}",
        ack_out.total(),
        ms(ack_out.quantile(0.5)),
        ms(ack_out.quantile(0.99)),
        ms(ack_out.quantile(1.0))
    );
    println!(
        "  life-critical arrival → console push during the outage: {} pushes, p50 {}, p99 {}",
        con_out.total(),
        ms(con_out.quantile(0.5)),
        ms(con_out.quantile(0.99))
    );
    // Where the console's tail is, when it has one: the half seconds above 100 ms.
    let slow: Vec<String> = console
        .iter()
        .filter(|(_, ms)| *ms > 100.0)
        .map(|(t, ms)| format!("{t:.1} s: {ms:.0} ms"))
        .collect();
    if !slow.is_empty() {
        println!(
            "  life-critical push p99 above 100 ms in: {}",
            slow.join(", ")
        );
    }
    match drained_at {
        Some(t) => println!(
            "  drain: {spooled:.0} spooled records drained in {:.1} s after Postgres started (sampled every 0.5 s)",
            t - restarted_at
        ),
        None => println!("  drain: not finished ({spooled:.0} records spooled)"),
    }
    println!(
        "  senders: MQTT {} published / {} PUBACKed by the broker; serial {} ACKed, {} NAKed, {} unanswered",
        fleet_report.published,
        fleet_report.pubacked,
        rx_report.as_ref().map_or(0, |r| r.stats.acked),
        rx_report.as_ref().map_or(0, |r| r.stats.naked),
        rx_report.as_ref().map_or(0, |r| r.stats.timeouts)
    );
    let stored: i64 = pg
        .query("SELECT count(*) FROM signals WHERE source IN ('mqtt', 'serial')")
        .parse()
        .unwrap_or(-1);
    let serial_acked = rx_report.as_ref().map_or(0, |r| r.stats.acked);
    println!("  signals stored: {stored}");
    assert!(
        stored >= i64::try_from(serial_acked).unwrap_or(i64::MAX),
        "every ACKed serial frame is stored"
    );
    let out = warden_tests::target_dir().join("outage.svg");
    match plot(&out, &ack, &depth, &console, stopped_at, restarted_at) {
        Ok(()) => println!("  plot: {}", out.display()),
        Err(e) => println!("  plot not written: {e}"),
    }
    drop(warden);
}

/// Signs an operator in and keeps the console's WebSocket open, reading what it pushes.
async fn open_console(warden: &Wardend) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt as _;
    use std::io::{Read as _, Write as _};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    const PASSWORD: &str = "outage bench operator 2026";
    let out = warden.cli_with_stdin(
        &["user", "add", "--username", "bench", "--role", "operator"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = format!(r#"{{"username":"bench","password":"{PASSWORD}"}}"#);
    let mut s = std::net::TcpStream::connect(warden.console).expect("console");
    write!(
        s,
        "POST /api/v1/login HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        warden.console,
        body.len()
    )
    .expect("login request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("login response");
    let cookie = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().split(';').next().unwrap_or("").to_owned())
        })
        .expect("session cookie");
    let mut req = format!("ws://{}/api/v1/ws", warden.console)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Cookie", cookie.parse().expect("cookie header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} })
}

/// One panel of the plot: title, unit, points, colour.
type Panel<'a> = (
    &'a str,
    &'a str,
    &'a [(f64, f64)],
    plotters::style::RGBColor,
);

/// DejaVu Sans from Debian's fonts-dejavu-core, for the plot's text.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn plot(
    out: &PathBuf,
    ack: &[(f64, f64)],
    depth: &[(f64, f64)],
    console: &[(f64, f64)],
    stopped: f64,
    restarted: f64,
) -> Result<(), String> {
    use plotters::prelude::*;
    let font = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e}"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| "font not usable".to_owned())?;
    let root = SVGBackend::new(out, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((3, 1));
    let t_max = depth.last().map_or(1.0, |p| p.0);
    let series: [Panel<'_>; 3] = [
        ("signal → ACK p99 per 0.5 s", "ms", ack, BLUE),
        ("spool depth", "records", depth, RED),
        (
            "life-critical arrival → console push p99 per 0.5 s",
            "ms",
            console,
            GREEN,
        ),
    ];
    for (area, (title, unit, points, color)) in panels.iter().zip(series) {
        let y_max = points.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{title} (Postgres down {stopped:.0}–{restarted:.0} s)"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(stopped, 0.0), (restarted, y_max)],
                RGBColor(255, 200, 200).mix(0.4).filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &color))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
