//! On-call: who is on duty ([`rota`]) and how an unanswered incident climbs its escalation
//! chain ([`escalation`]). Pure like the rest of the core: every instant is passed in, time
//! zones are values (`jiff::tz::TimeZone`) the shell looked up, nothing is sent from here.

pub mod escalation;
pub mod rota;

pub use escalation::{
    Action, Chain, Directory, Escalation, Reason, RotaId, State, Step, Target, TeamId,
};
pub use rota::{
    Cover, Layer, OnCall, Override, PersonId, Rota, Segment, Shift, ShiftLength, Window,
};
