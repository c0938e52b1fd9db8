//! Which answer is owed to which frame, and when it is too late to send it: the pure
//! bookkeeping behind `serve` (no I/O, no clock; time is passed in).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use time::OffsetDateTime;

use crate::record::Outcome;

/// When the bytes of one read arrived.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadTime {
    /// The last moment an answer to a frame completed by this read may leave.
    pub(super) reply_by: tokio::time::Instant,
    pub(super) arrived: Instant,
    pub(super) received_at: OffsetDateTime,
}

/// Identifies one write in the [`Ledger`].
pub(super) type WriteId = u64;

/// How a write ended, as the answer it earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Done {
    pub(super) reply: u8,
    pub(super) outcome: Option<Outcome>,
    /// The write failed: nothing is durable, and a resend must be written afresh.
    pub(super) failed: bool,
}

/// What [`Ledger::frame`] made of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// A new frame: start this write.
    New(WriteId),
    /// A retransmission of the previous frame: its write (done or not) answers it.
    Again,
}

/// What the loop has to do about the oldest answer owed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Settled {
    /// Send `byte` now.
    Reply {
        byte: u8,
        outcome: Option<Outcome>,
        arrived: Instant,
    },
    /// The frame was not durable within its window; it gets no answer.
    Late { arrived: Instant },
}

/// The answer owed to one frame.
#[derive(Debug)]
struct Owed {
    due: Due,
    reply_by: tokio::time::Instant,
    arrived: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The answer is whatever this write earns.
    Write(WriteId),
    /// The answer is known already.
    Now(u8),
}

/// The previous frame, kept to recognise its retransmission.
#[derive(Debug)]
struct Last {
    raw: Vec<u8>,
    write: WriteId,
}

/// Which answer is owed to whom, and when it is too late to send it. No I/O and no clock:
/// `serve` passes the time in.
///
/// The receiver is stop-and-wait and resends a frame it got no answer to within its window.
/// So:
///
/// * answers leave in frame order, and only while `now < reply_by` (the frame's last byte
///   plus `ack_window - ack_margin`). A frame whose write is not done by then gets no answer
///   at all (`Late`). Silence rather than NAK: a NAK would make the receiver resend at once,
///   into the same slow commit, and use up its few attempts (Sur-Gard: 4) within
///   milliseconds, after which it treats the computer as away and holds its whole buffer
///   for its retry interval (about 30 s). Silence lets each attempt wait its full window
///   while the first write carries on, so a stall shorter than about `attempts × window`
///   (16 s) costs resends but no give-up; and a NAK tells the receiver "corrupt, send
///   again", which is not what happened.
/// * a frame byte-identical to the previous frame is a retransmission while that frame has
///   not been answered (the receiver only moves on after an ACK). It starts no write: it
///   takes over the answer of the original (whose own answer, if still owed, is dropped, so
///   the receiver hears one answer per transmission it waits on) and is answered when the
///   original's write is done, within its own window.
/// * the match is forgotten once an answer for the frame has left, once its write failed
///   (nothing is durable, so a resend must be written afresh), or when a different frame
///   arrives. After an ACK the same bytes are a new signal: two identical alarms in a row
///   are only possible after an ACK, and heartbeats are always byte-identical.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    next: WriteId,
    owed: VecDeque<Owed>,
    done: HashMap<WriteId, Done>,
    last: Option<Last>,
}

impl Ledger {
    /// A complete frame arrived. `key` is its bytes when they identify it (a resend carries
    /// the same bytes).
    pub(super) fn frame(&mut self, key: Option<&[u8]>, at: ReadTime) -> Seen {
        if let (Some(raw), Some(last)) = (key, &self.last)
            && last.raw == raw
        {
            let write = last.write;
            self.owed.retain(|o| o.due != Due::Write(write));
            self.owe(Due::Write(write), at);
            return Seen::Again;
        }
        let id = self.new_id();
        let previous = match key {
            Some(raw) => self.last.replace(Last {
                raw: raw.to_vec(),
                write: id,
            }),
            None => self.last.take(),
        };
        if let Some(previous) = previous {
            self.forget(previous.write);
        }
        self.owe(Due::Write(id), at);
        Seen::New(id)
    }

    /// A write that owes nothing (the head of an oversized frame, answered at its end).
    pub(super) fn unanswered(&mut self) -> WriteId {
        self.new_id()
    }

    /// A frame whose answer is known without writing anything.
    pub(super) fn immediate(&mut self, byte: u8, at: ReadTime) {
        if let Some(previous) = self.last.take() {
            self.forget(previous.write);
        }
        self.owe(Due::Now(byte), at);
    }

    /// A write is done.
    pub(super) fn finished(&mut self, id: WriteId, done: Done) {
        if done.failed && self.last.as_ref().is_some_and(|l| l.write == id) {
            self.last = None;
        }
        if self.referenced(id) {
            self.done.insert(id, done);
        }
    }

    /// The oldest owed answer when it can be settled at `now`: sent, or given up.
    pub(super) fn settle(&mut self, now: tokio::time::Instant) -> Option<Settled> {
        let head = self.owed.front()?;
        let in_time = now < head.reply_by;
        let reply = match head.due {
            Due::Now(byte) => Some((byte, None)),
            Due::Write(id) => match self.done.get(&id) {
                Some(d) => Some((d.reply, d.outcome)),
                None if in_time => return None,
                None => None,
            },
        };
        let head = self.owed.pop_front()?;
        let settled = match reply {
            Some((byte, outcome)) if in_time => {
                if let Due::Write(id) = head.due
                    && self.last.as_ref().is_some_and(|l| l.write == id)
                {
                    // Answered: the same bytes from now on are a new frame.
                    self.last = None;
                }
                Settled::Reply {
                    byte,
                    outcome,
                    arrived: head.arrived,
                }
            }
            _ => Settled::Late {
                arrived: head.arrived,
            },
        };
        if let Due::Write(id) = head.due {
            self.forget(id);
        }
        Some(settled)
    }

    /// When the oldest owed answer runs out of time.
    pub(super) fn wake_at(&self) -> Option<tokio::time::Instant> {
        self.owed.front().map(|o| o.reply_by)
    }

    fn new_id(&mut self) -> WriteId {
        self.next += 1;
        self.next
    }

    fn owe(&mut self, due: Due, at: ReadTime) {
        self.owed.push_back(Owed {
            due,
            reply_by: at.reply_by,
            arrived: at.arrived,
        });
    }

    fn referenced(&self, id: WriteId) -> bool {
        self.last.as_ref().is_some_and(|l| l.write == id)
            || self.owed.iter().any(|o| o.due == Due::Write(id))
    }

    /// Drops a write's result once nothing can be answered with it any more.
    fn forget(&mut self, id: WriteId) {
        if !self.referenced(id) {
            self.done.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant as Tick;
    use warden_protocol::{ACK, NAK};

    const WINDOW: Duration = Duration::from_millis(3_500);
    const HEARTBEAT: &[u8] = b"1011           @    \x14";
    const ALARM: &[u8] = b"5011 181234E10101001\x14";
    const STORED: Done = Done {
        reply: ACK,
        outcome: Some(Outcome::Stored {
            id: uuid::Uuid::nil(),
            duplicate: false,
        }),
        failed: false,
    };
    const FAILED: Done = Done {
        reply: NAK,
        outcome: None,
        failed: true,
    };

    fn at(t0: Tick, ms: u64) -> (ReadTime, Tick) {
        let now = t0 + Duration::from_millis(ms);
        let a = ReadTime {
            reply_by: now + WINDOW,
            arrived: Instant::now(),
            received_at: OffsetDateTime::UNIX_EPOCH,
        };
        (a, now)
    }

    fn reply(s: Option<Settled>) -> Option<u8> {
        match s {
            Some(Settled::Reply { byte, .. }) => Some(byte),
            _ => None,
        }
    }

    fn is_late(s: Option<Settled>) -> bool {
        matches!(s, Some(Settled::Late { .. }))
    }

    fn new_write(l: &mut Ledger, raw: &[u8], a: ReadTime) -> WriteId {
        match l.frame(Some(raw), a) {
            Seen::New(id) => id,
            Seen::Again => panic!("{} taken for a retransmission", printable(raw)),
        }
    }

    use warden_protocol::printable;

    #[test]
    fn a_frame_durable_in_time_is_acked_once_and_its_bytes_are_new_again_afterwards() {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, now) = at(t0, 0);
        let id = new_write(&mut l, ALARM, a);
        assert_eq!(l.settle(now), None, "nothing to say before the commit");
        l.finished(id, STORED);
        assert_eq!(reply(l.settle(now + Duration::from_millis(5))), Some(ACK));
        assert_eq!(l.settle(now), None);
        // After the ACK the receiver moved on: the same bytes are a new alarm.
        let (a, _) = at(t0, 100);
        assert!(matches!(l.frame(Some(ALARM), a), Seen::New(_)));
    }

    #[test]
    fn a_frame_not_durable_within_its_window_gets_silence_and_its_resend_is_acked_from_the_first_write()
     {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, now) = at(t0, 0);
        let id = new_write(&mut l, ALARM, a);
        assert_eq!(l.wake_at(), Some(now + WINDOW));
        assert_eq!(l.settle(now + WINDOW - Duration::from_millis(1)), None);
        assert!(
            is_late(l.settle(now + WINDOW)),
            "no answer once the window is over"
        );
        // The receiver times out after 4 s and resends; the first write is still pending.
        let (a, resent) = at(t0, 4_000);
        assert_eq!(l.frame(Some(ALARM), a), Seen::Again);
        assert_eq!(l.settle(resent), None);
        l.finished(id, STORED);
        assert_eq!(
            reply(l.settle(resent + Duration::from_millis(500))),
            Some(ACK)
        );
        assert_eq!(
            l.settle(resent + Duration::from_secs(1)),
            None,
            "answered once"
        );
    }

    #[test]
    fn a_resend_after_the_write_finished_late_is_acked_at_once_without_a_new_write() {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, now) = at(t0, 0);
        let id = new_write(&mut l, HEARTBEAT, a);
        l.finished(id, STORED);
        // The commit finished but the loop only got to it after the window.
        assert!(is_late(l.settle(now + WINDOW + Duration::from_millis(1))));
        let (a, resent) = at(t0, 4_000);
        assert_eq!(l.frame(Some(HEARTBEAT), a), Seen::Again);
        assert_eq!(reply(l.settle(resent)), Some(ACK));
        // Thirty seconds on, the next heartbeat is a new signal.
        let (a, _) = at(t0, 34_000);
        assert!(matches!(l.frame(Some(HEARTBEAT), a), Seen::New(_)));
    }

    #[test]
    fn a_resend_inside_the_window_takes_over_the_answer_so_the_receiver_hears_only_one() {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, _) = at(t0, 0);
        let id = new_write(&mut l, ALARM, a);
        // A receiver with a shorter timeout than ours resends before we gave up.
        let (a, resent) = at(t0, 2_000);
        assert_eq!(l.frame(Some(ALARM), a), Seen::Again);
        l.finished(id, STORED);
        assert_eq!(reply(l.settle(resent)), Some(ACK));
        assert_eq!(l.settle(resent + Duration::from_secs(10)), None);
    }

    #[test]
    fn a_failed_write_is_nakked_and_the_resend_is_written_afresh() {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, now) = at(t0, 0);
        let id = new_write(&mut l, ALARM, a);
        l.finished(id, FAILED);
        assert_eq!(reply(l.settle(now)), Some(NAK));
        let (a, _) = at(t0, 50);
        assert!(matches!(l.frame(Some(ALARM), a), Seen::New(_)));
    }

    #[test]
    fn a_failed_write_not_answered_in_time_does_not_answer_the_resend() {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, now) = at(t0, 0);
        let id = new_write(&mut l, ALARM, a);
        assert!(is_late(l.settle(now + WINDOW)));
        l.finished(id, FAILED);
        let (a, _) = at(t0, 4_000);
        assert!(
            matches!(l.frame(Some(ALARM), a), Seen::New(_)),
            "nothing durable, so the resend must be written"
        );
    }

    #[test]
    fn answers_leave_in_frame_order_and_a_different_frame_ends_the_match() {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, now) = at(t0, 0);
        let first = new_write(&mut l, ALARM, a);
        let second = new_write(&mut l, HEARTBEAT, a);
        l.immediate(NAK, a);
        l.finished(second, STORED);
        assert_eq!(l.settle(now), None, "the first frame's answer goes first");
        l.finished(first, STORED);
        let answers: Vec<_> = std::iter::from_fn(|| reply(l.settle(now))).collect();
        assert_eq!(answers, [ACK, ACK, NAK]);
        // The heartbeat was answered, and the NAKed chunk came after it: neither is a
        // retransmission candidate any more.
        let (a, _) = at(t0, 10);
        assert!(matches!(l.frame(Some(HEARTBEAT), a), Seen::New(_)));
        assert!(l.done.is_empty(), "{:?}", l.done);
    }

    #[test]
    fn results_are_not_kept_once_nothing_can_be_answered_with_them() {
        let t0 = Tick::now();
        let mut l = Ledger::default();
        let (a, now) = at(t0, 0);
        let orphan = l.unanswered();
        l.finished(orphan, STORED);
        let id = new_write(&mut l, ALARM, a);
        l.finished(id, STORED);
        assert_eq!(reply(l.settle(now)), Some(ACK));
        assert!(l.done.is_empty() && l.owed.is_empty() && l.last.is_none());
    }
}
