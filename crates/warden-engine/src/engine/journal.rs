//! The operators' command journal: what keeps a claim, a note or a resolution made during a
//! database outage through a crash.
//!
//! While the engine defers its batches (see `degraded`), an operator's command is carried out
//! from memory and answered; before it is answered it is appended to a journal on disk
//! (`commands.journal` in the spool's directory, fsynced), with who, what and when, and the
//! incident named by its signal of origin. Once every kept batch is committed the journal is
//! emptied. When a process dies first, the next one finds the entries on start and, once it
//! has caught up (spool drained, untriaged signals replayed, so the incidents of the outage
//! exist again, under ids that may differ), applies each again at its original time, unless
//! it was committed before the crash: the incident records when an operator's command last
//! changed it (`last_command_at`), and an entry no later than that is already in.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use warden_core::{Effect, IncidentId, Input, SignalId, Timestamp};
use warden_store::Journal;
use warden_telemetry as m;

use super::{Engine, Item, Mode};

/// One operator's command as carried out while the database was away.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// When it was carried out (its history line's time, and the core's `now` when applied
    /// again).
    at: Timestamp,
    /// The command, with the incident id this process knew.
    input: Input,
    /// The incident's signal of origin (ids of incidents opened during an outage may differ
    /// after a crash; this does not).
    first_signal: Option<SignalId>,
    /// When the incident was opened: with the id, names an incident without a signal of
    /// origin (a fail-to-report).
    raised_at: Timestamp,
}

/// The journal and what an earlier process left in it.
#[derive(Debug)]
pub(crate) struct Commands {
    journal: Journal<Entry>,
    /// Entries found on start, applied once the engine has caught up.
    pending: Vec<Entry>,
}

impl Commands {
    /// Opens the journal at `path`. A journal that cannot be opened is logged and counted:
    /// the engine then runs without one (commands during an outage are held in memory only).
    pub(crate) fn open(path: &Path) -> Option<Commands> {
        match Journal::<Entry>::open(path) {
            Ok(opened) => {
                if opened.corrupt {
                    metrics::counter!(m::ENGINE_JOURNAL_ERRORS, "op" => "corrupt").increment(1);
                }
                if !opened.entries.is_empty() {
                    tracing::warn!(
                        entries = opened.entries.len(),
                        "operators' commands left in the journal by a process that stopped before committing them; applied once triage has caught up"
                    );
                }
                let c = Commands {
                    journal: opened.journal,
                    pending: opened.entries,
                };
                c.gauge();
                Some(c)
            }
            Err(e) => {
                metrics::counter!(m::ENGINE_JOURNAL_ERRORS, "op" => "open").increment(1);
                tracing::error!(error = %e, "cannot open the operators' command journal; commands during an outage are held in memory only");
                None
            }
        }
    }

    fn gauge(&self) {
        #[allow(clippy::cast_precision_loss)] // gauge value
        metrics::gauge!(m::ENGINE_JOURNAL_ENTRIES).set(self.journal.len() as f64);
    }
}

/// The incident an operator's command is about; `None` for every other input.
fn incident_of(input: &Input) -> Option<IncidentId> {
    match input {
        Input::Claim { incident, .. }
        | Input::Release { incident, .. }
        | Input::Note { incident, .. }
        | Input::Resolve { incident, .. }
        | Input::TakeOver { incident, .. } => Some(*incident),
        _ => None,
    }
}

/// `input` about incident `id` instead.
fn retarget(mut input: Input, id: IncidentId) -> Input {
    match &mut input {
        Input::Claim { incident, .. }
        | Input::Release { incident, .. }
        | Input::Note { incident, .. }
        | Input::Resolve { incident, .. }
        | Input::TakeOver { incident, .. } => *incident = id,
        _ => {}
    }
    input
}

/// Whether a command's effects say it was carried out (not refused).
pub(super) fn carried_out(effects: &[Effect]) -> bool {
    !effects.is_empty() && !effects.iter().any(|e| matches!(e, Effect::Rejected { .. }))
}

impl Engine {
    /// The journal entry of `input` carried out at `at`, if it is an operator's command
    /// about an incident the core holds and there is a journal.
    pub(super) fn journal_entry(&self, input: &Input, at: Timestamp) -> Option<Entry> {
        self.journal.as_ref()?;
        let inc = self.core.incident(incident_of(input)?)?;
        Some(Entry {
            at,
            input: input.clone(),
            first_signal: inc.first_signal,
            raised_at: inc.raised_at,
        })
    }

    /// Makes `entries` durable before their operators are answered. A failure is logged and
    /// counted; the commands stand in memory and are committed after the drain unless the
    /// process dies first.
    pub(super) fn journal_keep(&mut self, entries: &[Entry]) {
        let Some(c) = &mut self.journal else {
            return;
        };
        if let Err(e) = c.journal.append(entries) {
            metrics::counter!(m::ENGINE_JOURNAL_ERRORS, "op" => "append").increment(1);
            tracing::error!(error = %e, commands = entries.len(), "cannot write operators' commands to the journal; they are held in memory only until the database is back");
        }
        c.gauge();
    }

    /// Empties the journal once everything in it is committed: nothing deferred, nothing
    /// left by an earlier process still to apply.
    pub(super) fn journal_settle(&mut self) {
        if self.deferring() {
            return;
        }
        let Some(c) = &mut self.journal else {
            return;
        };
        if c.journal.is_empty() || !c.pending.is_empty() {
            return;
        }
        if let Err(e) = c.journal.clear() {
            metrics::counter!(m::ENGINE_JOURNAL_ERRORS, "op" => "clear").increment(1);
            tracing::error!(error = %e, "cannot empty the operators' command journal; its committed entries would be checked again on the next start");
        }
        c.gauge();
    }

    /// Applies the entries an earlier process left, each at its original time, skipping those
    /// committed before it died. Runs once triage has caught up and the writer is direct.
    pub(super) async fn apply_journal(&mut self, shutdown: &CancellationToken) {
        if self.deferring() {
            return;
        }
        let Some(entries) = self
            .journal
            .as_mut()
            .map(|c| std::mem::take(&mut c.pending))
        else {
            return;
        };
        for entry in entries {
            let outcome = match self.find_incident(&entry) {
                None => "gone",
                Some(inc) if inc.1.is_some_and(|last| entry.at <= last) => "already",
                Some((id, _)) => {
                    let item = Item {
                        input: retarget(entry.input, id),
                        reply: None,
                        mark: None,
                        at: Some(entry.at),
                    };
                    self.process(vec![item], Mode::Replay, shutdown).await;
                    "applied"
                }
            };
            metrics::counter!(m::ENGINE_JOURNAL_RECOVERED, "outcome" => outcome).increment(1);
            tracing::info!(
                outcome,
                at = %entry.at.to_offset(),
                "operator's command from the journal"
            );
        }
        self.await_background().await;
        self.journal_settle();
    }

    /// The open incident an entry is about, and when a command last changed it.
    fn find_incident(&self, entry: &Entry) -> Option<(IncidentId, Option<Timestamp>)> {
        let found = match entry.first_signal {
            Some(sig) => self
                .core
                .open_incidents()
                .into_iter()
                .find(|i| i.first_signal == Some(sig)),
            None => self
                .core
                .incident(incident_of(&entry.input)?)
                .filter(|i| i.first_signal.is_none() && i.raised_at == entry.raised_at),
        }?;
        Some((found.id, found.last_command_at))
    }
}
