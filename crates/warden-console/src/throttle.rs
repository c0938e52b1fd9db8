//! Progressive sign-in delays: no account or address is ever locked out, but each failure
//! in a row past a free allowance doubles the wait before the next attempt is even checked
//! (1 s, 2 s, 4 s, ... up to a ceiling). The right password is always admitted once its
//! wait is over, so an outsider cannot lock an operator out at shift change by typing
//! wrong passwords; guessing is slowed to a crawl.
//!
//! The same rule serves two places: accounts (kept in `users.failed_logins` and
//! `users.locked_until`, written before the password hash is checked, see
//! `Store::reserve_login`) and, in memory here, client addresses and unknown usernames (so
//! an unknown name is delayed exactly like a real one and the answer time tells nothing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The wait imposed after `failures` failed attempts in a row: none while `failures` is
/// below `free`, then 1 s doubling per failure, never over `max`.
pub fn delay_after(failures: u32, free: u32, max: Duration) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(30);
    Duration::from_secs(1u64 << doublings).min(max)
}

/// In-memory delays per key (a client address or an unknown username).
#[derive(Debug)]
pub struct Throttle {
    free: u32,
    max: Duration,
    seen: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    next: Instant,
}

/// Keys kept at most; beyond it the entries whose wait is over are forgotten.
const MAX_KEYS: usize = 10_000;

impl Throttle {
    pub fn new(free: u32, max: Duration) -> Self {
        Throttle {
            free,
            max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the next attempt for `key` if its wait is over: the attempt counts as a
    /// failure until [`Throttle::succeeded`] says otherwise (so attempts made in parallel
    /// cannot slip past the count). `Err(wait)`: how long until it may be tried again.
    pub fn reserve(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut seen = self.seen();
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, e| e.next > now);
        }
        let e = seen.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            next: now,
        });
        if e.next > now {
            return Err(e.next - now);
        }
        e.failures = e.failures.saturating_add(1);
        e.next = now + delay_after(e.failures, self.free, self.max);
        Ok(())
    }

    /// The attempt reserved for `key` failed: its delay runs from now (the check itself
    /// may have taken a while).
    pub fn failed(&self, key: &str, now: Instant) {
        if let Some(e) = self.seen().get_mut(key) {
            e.next = e
                .next
                .max(now + delay_after(e.failures, self.free, self.max));
        }
    }

    /// The attempt reserved for `key` succeeded: its count starts again.
    pub fn succeeded(&self, key: &str) {
        self.seen().remove(key);
    }
}

/// At most `n` events per user in any hour (key-safe reveals), counted in this process.
#[derive(Debug, Default)]
pub struct HourlyLimit {
    seen: Mutex<HashMap<i64, std::collections::VecDeque<Instant>>>,
}

impl HourlyLimit {
    /// Counts an event for `user` unless it would be over `per_hour`.
    pub fn allow(&self, user: i64, per_hour: u32, now: Instant) -> bool {
        let hour = Duration::from_hours(1);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let times = seen.entry(user).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= hour)
        {
            times.pop_front();
        }
        if times.len() >= per_hour as usize {
            return false;
        }
        times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hourly_limit_counts_per_user_over_a_sliding_hour() {
        let l = HourlyLimit::default();
        let now = Instant::now();
        assert!(l.allow(1, 2, now));
        assert!(l.allow(1, 2, now + Duration::from_mins(10)));
        assert!(!l.allow(1, 2, now + Duration::from_mins(20)));
        assert!(l.allow(2, 2, now + Duration::from_mins(20)));
        assert!(l.allow(1, 2, now + Duration::from_mins(61)));
        assert!(!l.allow(1, 2, now + Duration::from_mins(62)));
    }

    #[test]
    fn the_delay_is_free_then_doubles_up_to_its_ceiling() {
        let max = Duration::from_secs(30);
        let waits: Vec<u64> = (0..10).map(|f| delay_after(f, 3, max).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(delay_after(u32::MAX, 3, max), max);
    }

    #[test]
    fn a_key_is_held_back_after_its_free_failures_and_released_by_a_success() {
        let t = Throttle::new(2, Duration::from_secs(30));
        let now = Instant::now();
        assert_eq!(t.reserve("a", now), Ok(()));
        assert_eq!(t.reserve("a", now), Ok(()));
        // The second failure set a 1 s wait.
        assert_eq!(t.reserve("a", now), Err(Duration::from_secs(1)));
        // Another key is not affected.
        assert_eq!(t.reserve("b", now), Ok(()));
        let later = now + Duration::from_secs(1);
        assert_eq!(t.reserve("a", later), Ok(()));
        assert_eq!(t.reserve("a", later), Err(Duration::from_secs(2)));
        // A failure re-arms the delay from when it was known.
        t.failed("a", later + Duration::from_secs(1));
        assert_eq!(
            t.reserve("a", later + Duration::from_secs(2)),
            Err(Duration::from_secs(1))
        );
        t.succeeded("a");
        assert_eq!(t.reserve("a", later), Ok(()));
    }
}
