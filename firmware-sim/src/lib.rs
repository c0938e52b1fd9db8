//! Simulated alarm receivers and device fleets.
