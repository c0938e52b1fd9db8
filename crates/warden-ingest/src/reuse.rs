//! Spotting a unit that reuses message ids in a burst.
//!
//! One reused id is usually harmless: the message is stored as a new signal (the store
//! answers `Committed::Reused`). Several from one unit within minutes mean its message
//! counter went back (a firmware reset, a power loss that cleared it), and someone should
//! look at the unit: ingest then raises one technical path-fault signal for that device. The
//! tracker says when: at most once per window per device, not once per message.
//!
//! Bounds: at most [`MAX_TRACKED_DEVICES`] devices, each with at most [`MAX_REMEMBERED`]
//! times. When the map is full, devices with nothing inside the window go first, then the
//! one heard from least recently. Forgetting costs at most a late or repeated path fault,
//! never a signal.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Reused ids from one device within [`REUSE_WINDOW`] that raise a path fault.
pub const REUSE_THRESHOLD: usize = 3;
/// The window over which reused ids are counted, and the least time between two path
/// faults for one device.
pub const REUSE_WINDOW: Duration = Duration::from_mins(10);
/// Most devices tracked at once.
pub const MAX_TRACKED_DEVICES: usize = 10_000;
/// Most reuse times kept per device (the count reported is capped here).
const MAX_REMEMBERED: usize = 64;

/// Counts reused message ids per device; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct ReusedIds {
    inner: Arc<Mutex<Tracker>>,
}

#[derive(Debug)]
struct Tracker {
    threshold: usize,
    window: Duration,
    max_devices: usize,
    devices: HashMap<i64, Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    /// When ids were reused, oldest first, all within the window of the latest note.
    at: VecDeque<Instant>,
    /// When a path fault was last raised for the device.
    raised: Option<Instant>,
}

/// A burst that crossed the threshold: raise one path fault for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Ids reused within the window, this one included (at most 64 are counted).
    pub count: usize,
    /// The window they were counted over.
    pub window: Duration,
}

impl Burst {
    /// The path fault's text, e.g. "message ids reused: firmware reset? (3 ids reused
    /// within 10 min)".
    pub fn detail(&self) -> String {
        let secs = self.window.as_secs();
        let window = if secs.is_multiple_of(60) {
            format!("{} min", secs / 60)
        } else {
            format!("{secs} s")
        };
        let count = if self.count >= MAX_REMEMBERED {
            format!("{}+", self.count)
        } else {
            self.count.to_string()
        };
        format!("message ids reused: firmware reset? ({count} ids reused within {window})")
    }
}

impl Default for ReusedIds {
    fn default() -> Self {
        ReusedIds::new(REUSE_THRESHOLD, REUSE_WINDOW, MAX_TRACKED_DEVICES)
    }
}

impl ReusedIds {
    /// A tracker raising at `threshold` reuses (at least 1) within `window`, for at most
    /// `max_devices` devices (at least 1).
    pub fn new(threshold: usize, window: Duration, max_devices: usize) -> Self {
        ReusedIds {
            inner: Arc::new(Mutex::new(Tracker {
                threshold: threshold.clamp(1, MAX_REMEMBERED),
                window,
                max_devices: max_devices.max(1),
                devices: HashMap::new(),
            })),
        }
    }

    /// Notes that `device` reused a message id at `now`. Returns the burst when this reuse
    /// makes `threshold` within the window and no path fault was raised for the device
    /// within the window; the fault then counts as raised at `now`.
    pub fn note(&self, device: i64, now: Instant) -> Option<Burst> {
        // The lock is never held across an await, and a panic while holding it leaves
        // plain counters behind, so a poisoned lock is still usable.
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (threshold, window) = (t.threshold, t.window);
        if !t.devices.contains_key(&device) && t.devices.len() >= t.max_devices {
            t.evict(now);
        }
        let recent = t.devices.entry(device).or_default();
        while recent
            .at
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= window)
        {
            recent.at.pop_front();
        }
        if recent.at.len() == MAX_REMEMBERED {
            recent.at.pop_front();
        }
        recent.at.push_back(now);
        let quiet = recent
            .raised
            .is_none_or(|at| now.saturating_duration_since(at) >= window);
        if recent.at.len() >= threshold && quiet {
            recent.raised = Some(now);
            return Some(Burst {
                count: recent.at.len(),
                window,
            });
        }
        None
    }

    /// Forgets that a path fault was raised for `device` (it could not be stored), so the
    /// next reuse in the burst tries again.
    pub fn unraise(&self, device: i64) {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(recent) = t.devices.get_mut(&device) {
            recent.raised = None;
        }
    }
}

impl Tracker {
    /// Makes room for one more device.
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        let live =
            |at: Option<&Instant>| at.is_some_and(|&at| now.saturating_duration_since(at) < window);
        self.devices
            .retain(|_, r| live(r.at.back()) || live(r.raised.as_ref()));
        if self.devices.len() >= self.max_devices
            && let Some(stalest) = self
                .devices
                .iter()
                .min_by_key(|(_, r)| r.at.back().copied().or(r.raised))
                .map(|(device, _)| *device)
        {
            self.devices.remove(&stalest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_mins(1);

    #[test]
    fn the_third_reuse_within_ten_minutes_raises_once_and_later_ones_stay_quiet() {
        let ids = ReusedIds::default();
        let t0 = Instant::now();
        assert_eq!(ids.note(7, t0), None);
        assert_eq!(ids.note(7, t0 + MIN), None);
        let burst = ids.note(7, t0 + 2 * MIN).expect("third reuse raises");
        assert_eq!(burst.count, 3);
        assert_eq!(
            burst.detail(),
            "message ids reused: firmware reset? (3 ids reused within 10 min)"
        );
        for i in 3..12 {
            assert_eq!(ids.note(7, t0 + i * MIN), None, "minute {i}");
        }
        // Ten minutes after the fault, the unit is still reusing ids: raised again, once.
        let again = ids
            .note(7, t0 + 12 * MIN)
            .expect("raised again after the window");
        assert!(again.count >= 3);
        assert_eq!(ids.note(7, t0 + 13 * MIN), None);
    }

    #[test]
    fn reuses_spread_wider_than_the_window_never_raise() {
        let ids = ReusedIds::default();
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(ids.note(7, t0 + i * 6 * MIN), None, "reuse {i}");
        }
    }

    #[test]
    fn devices_are_counted_separately() {
        let ids = ReusedIds::default();
        let t0 = Instant::now();
        assert_eq!(ids.note(1, t0), None);
        assert_eq!(ids.note(2, t0), None);
        assert_eq!(ids.note(1, t0), None);
        assert_eq!(ids.note(2, t0), None);
        assert!(ids.note(1, t0).is_some());
        assert!(ids.note(2, t0).is_some());
    }

    #[test]
    fn a_fault_that_could_not_be_stored_is_raised_again_by_the_next_reuse() {
        let ids = ReusedIds::default();
        let t0 = Instant::now();
        ids.note(7, t0);
        ids.note(7, t0);
        assert!(ids.note(7, t0).is_some());
        ids.unraise(7);
        assert!(ids.note(7, t0).is_some());
    }

    #[test]
    fn tracked_devices_stay_within_the_bound_and_new_bursts_still_raise() {
        let ids = ReusedIds::new(3, 10 * MIN, 100);
        let t0 = Instant::now();
        ids.note(-1, t0);
        ids.note(-1, t0);
        for d in 0..1000 {
            ids.note(d, t0 + MIN);
            let len = ids.inner.lock().expect("lock").devices.len();
            assert!(len <= 100, "{len} devices tracked");
        }
        // Everyone is inside the window, so the stalest went first: device -1. Three
        // fresh reuses still raise.
        let t1 = t0 + 2 * MIN;
        ids.note(5000, t1);
        ids.note(5000, t1);
        assert!(ids.note(5000, t1).is_some());
    }
}
