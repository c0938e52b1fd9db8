//! What the daemon and the machine say about themselves: `/metrics` scrapes and Prometheus
//! histograms taken over an interval, and CPU time per process group from `/proc`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use warden_tests::http_get;

/// Linux reports process CPU time in ticks of 1/USER_HZ s, 100 on every mainstream build.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// A `/metrics` scrape.
#[derive(Debug, Default, Clone)]
pub struct Scrape(pub String);

pub fn scrape(admin: SocketAddr) -> Scrape {
    Scrape(
        http_get(admin, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default(),
    )
}

impl Scrape {
    /// The sum of the samples whose line starts with `selector` (a metric name, optionally
    /// with the start of its label set).
    pub fn sum(&self, selector: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(selector))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    }
}

/// Two scrapes of `/metrics`, so histograms can be taken over the time between them.
#[derive(Debug)]
pub struct Interval {
    pub before: Scrape,
    pub after: Scrape,
}

impl Interval {
    /// The histogram `name` (only the series carrying `label`, when given) recorded between
    /// the two scrapes.
    pub fn histogram(&self, name: &str, label: Option<(&str, &str)>) -> Histogram {
        parse_histogram(&self.after.0, name, label).minus(&parse_histogram(
            &self.before.0,
            name,
            label,
        ))
    }
}

/// A Prometheus histogram: cumulative counts per upper bound (`+Inf` last), sum and count.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

pub fn parse_histogram(text: &str, name: &str, label: Option<(&str, &str)>) -> Histogram {
    let mut h = Histogram::default();
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some((series, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (suffix, labels) = match series.split_once('{') {
            Some((s, l)) => (s, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels: HashMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if let Some((k, v)) = label
            && labels.get(k) != Some(&v)
        {
            continue;
        }
        match suffix {
            "_bucket" => {
                let le = match labels.get("le") {
                    Some(&"+Inf") => f64::INFINITY,
                    Some(le) => le.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += value;
            }
            "_sum" => h.sum += value,
            "_count" => h.count += value,
            _ => {}
        }
    }
    h.buckets = buckets.into_values().collect();
    h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    h
}

impl Histogram {
    /// This histogram minus an earlier scrape of the same series.
    pub fn minus(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| b.total_cmp(&le).is_eq())
                .map_or(0.0, |(_, n)| *n)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| (le, n - before(le)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    pub fn total(&self) -> f64 {
        self.buckets.last().map_or(self.count, |&(_, n)| n)
    }

    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            f64::NAN
        }
    }

    /// The `q` quantile as Prometheus' `histogram_quantile` computes it: linear within the
    /// bucket that holds the rank; the highest finite bound when the rank is in `+Inf`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let width = cumulative - below;
                let fraction = if width > 0.0 {
                    (rank - below) / width
                } else {
                    1.0
                };
                return Some(lower + (le - lower) * fraction);
            }
            lower = le;
            below = cumulative;
        }
        Some(lower)
    }
}

/// CPU ticks used so far by every process, keyed by pid, with the group it counts under
/// (`daemon` is the daemon's pid: its binary may have any name).
pub fn cpu_ticks(daemon: u32) -> HashMap<u32, (String, u64)> {
    let me = std::process::id();
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split at the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let fields: Vec<&str> = tail.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12th and 13th after comm.
        let ticks = fields
            .get(11)
            .and_then(|u| u.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
        let group = if pid == me {
            "bench (senders)"
        } else if pid == daemon {
            "wardend"
        } else {
            match comm {
                "postgres" | "mosquitto" | "socat" | "psql" => comm,
                _ => "other",
            }
        };
        out.insert(pid, (group.to_owned(), ticks));
    }
    out
}

/// Cores kept busy per group between two [`cpu_ticks`] samples `secs` apart.
#[allow(clippy::cast_precision_loss)]
pub fn cpu_usage(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    secs: f64,
) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for (pid, (group, ticks)) in after {
        let earlier = before.get(pid).map_or(0, |(_, t)| *t);
        *out.entry(group.clone()).or_default() +=
            ticks.saturating_sub(earlier) as f64 / TICKS_PER_SECOND / secs.max(1e-9);
    }
    out
}
