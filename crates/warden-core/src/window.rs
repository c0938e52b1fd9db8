//! A time-bounded memory of keys (deduplication windows).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::hash::FastBuild;
use crate::ids::IncidentId;
use crate::time::{Micros, Timestamp};

/// What is remembered about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The `received_at` of the signal that was accepted.
    pub last: Timestamp,
    /// The `now` after which the entry is dead.
    pub expires: Timestamp,
    /// The incident the accepted signal went to.
    pub incident: Option<IncidentId>,
}

/// Keys remembered until `expires` (a `now`-based instant). Entries are pruned in expiry
/// order; a dead entry still in the map is ignored, so pruning never changes a decision.
#[derive(Debug, Clone)]
pub(crate) struct Window<K> {
    map: HashMap<K, Seen, FastBuild>,
    order: VecDeque<(Timestamp, K)>,
}

impl<K> Default for Window<K> {
    fn default() -> Self {
        Window {
            map: HashMap::with_hasher(FastBuild),
            order: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Window<K> {
    /// The live entry for `key`, if any.
    pub fn get(&self, key: &K, now: Timestamp) -> Option<Seen> {
        self.map.get(key).copied().filter(|s| s.expires >= now)
    }

    /// Remembers `key` for `keep` after `now`.
    pub fn insert(
        &mut self,
        key: K,
        last: Timestamp,
        incident: Option<IncidentId>,
        now: Timestamp,
        keep: Micros,
    ) {
        self.prune(now);
        let expires = now.saturating_add(keep);
        self.order.push_back((expires, key.clone()));
        self.map.insert(
            key,
            Seen {
                last,
                expires,
                incident,
            },
        );
    }

    /// Forgets entries that expired before `now`.
    pub fn prune(&mut self, now: Timestamp) {
        while let Some((exp, _)) = self.order.front() {
            if *exp >= now {
                break;
            }
            if let Some((exp, key)) = self.order.pop_front()
                && self.map.get(&key).is_some_and(|s| s.expires == exp)
            {
                self.map.remove(&key);
            }
        }
    }

    /// Every entry (for snapshots), in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&K, &Seen)> {
        self.map.iter()
    }

    /// Rebuilds from entries (snapshot restore). Entries are ordered by expiry.
    pub fn from_entries(mut entries: Vec<(K, Seen)>) -> Self {
        entries.sort_by_key(|(_, s)| s.expires);
        let mut w = Window::default();
        for (k, s) in entries {
            w.order.push_back((s.expires, k.clone()));
            w.map.insert(k, s);
        }
        w
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}
