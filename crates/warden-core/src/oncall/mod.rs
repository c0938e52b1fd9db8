//! On-call: who is on duty ([`rota`]), how an unanswered incident climbs its escalation
//! chain ([`escalation`]), and what in that configuration would fail someone ([`lint`]).
//! Pure like the rest of the core: every instant is passed in, time zones are values
//! (`jiff::tz::TimeZone`) the shell looked up, nothing is sent from here.

pub mod escalation;
pub mod lint;
pub mod rota;

pub use escalation::{
    Action, Chain, Directory, Escalation, Reason, RotaId, State, Step, Target, TeamId,
};
pub use lint::{ChainId, Finding, Setup};
pub use rota::{
    Cover, Layer, OnCall, Override, PersonId, Rota, Segment, Shift, ShiftLength, Window,
};
