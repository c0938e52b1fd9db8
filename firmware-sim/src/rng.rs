//! A small seeded generator (`SplitMix64`). Scenarios must be repeatable from their seed, and
//! the workspace carries no `rand`; statistical quality beyond "looks random" is not needed.

use std::time::Duration;

use warden_protocol::mqtt::AlarmKind;

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Derives an independent stream, so each connection or generator gets its own sequence
    /// whatever order the tasks happen to run in.
    pub(crate) fn fork(&self, stream: u64) -> Self {
        let mut r = Self(self.0 ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float uniformly distributed in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        #[allow(clippy::cast_precision_loss)]
        let (v, scale) = ((self.next_u64() >> 11) as f64, (1u64 << 53) as f64);
        v / scale
    }

    /// A uniform index below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        usize::try_from(self.next_u64() % n).unwrap_or(0)
    }

    /// A uniform duration in `[0, max)`.
    pub(crate) fn duration_below(&mut self, max: Duration) -> Duration {
        max.mul_f64(self.unit())
    }

    /// The gap to the next arrival of a Poisson process with `rate_per_s` arrivals a second.
    pub(crate) fn exponential(&mut self, rate_per_s: f64) -> Duration {
        // 1 - unit() lies in (0, 1], so the logarithm is finite.
        let gap = -(1.0 - self.unit()).ln() / rate_per_s;
        Duration::try_from_secs_f64(gap).unwrap_or(Duration::MAX)
    }

    /// Picks a kind from a weighted mix; `None` when every weight is zero.
    pub(crate) fn pick(&mut self, mix: &[(AlarmKind, u32)]) -> Option<AlarmKind> {
        let total: u64 = mix.iter().map(|&(_, w)| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let mut roll = self.next_u64() % total;
        for &(kind, w) in mix {
            if roll < u64::from(w) {
                return Some(kind);
            }
            roll -= u64::from(w);
        }
        None
    }
}
