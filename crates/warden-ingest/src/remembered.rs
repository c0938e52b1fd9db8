//! What the IP receivers remember of the registry per account (DC-09 keys and settings,
//! SCAIP passwords): a frame is judged with what the registry says now, or, when it cannot
//! be read (the database is away and the writer spools), with what it said last (nothing can
//! change it meanwhile). While the writer is degraded no question is asked for an account
//! already remembered, so the answer does not wait on a database that is gone.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

use crate::Ingest;

/// Accounts remembered at most (then forgotten all at once and read again).
const MAX_ACCOUNTS: usize = 100_000;

/// The registry's last answer for each account.
pub(crate) struct Remembered<V> {
    /// Named in log lines, e.g. `DC-09`.
    receiver: &'static str,
    known: Mutex<HashMap<String, V>>,
}

impl<V: Clone> Remembered<V> {
    pub(crate) fn new(receiver: &'static str) -> Self {
        Remembered {
            receiver,
            known: Mutex::default(),
        }
    }

    fn remembered(&self, account: &str) -> Option<V> {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account)
            .cloned()
    }

    /// The registry's answer for `account` (`read`, bounded to 1 s), remembered; what it
    /// said last when it cannot answer; `None` when it never did.
    pub(crate) async fn lookup<E: Display>(
        &self,
        ingest: &Ingest,
        account: &str,
        read: impl Future<Output = Result<V, E>>,
    ) -> Option<V> {
        if ingest.writer.degraded().since.is_some()
            && let Some(known) = self.remembered(account)
        {
            return Some(known);
        }
        let error = match tokio::time::timeout(Duration::from_secs(1), read).await {
            Ok(Ok(v)) => {
                let mut map = self.known.lock().unwrap_or_else(PoisonError::into_inner);
                if map.len() >= MAX_ACCOUNTS && !map.contains_key(account) {
                    map.clear();
                }
                map.insert(account.to_owned(), v.clone());
                return Some(v);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        let known = self.remembered(account);
        warn!(
            receiver = self.receiver,
            account,
            error,
            remembered = known.is_some(),
            "registry lookup failed; judging with what it said last, if anything"
        );
        known
    }
}
